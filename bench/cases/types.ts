import type { Runtime } from '../../src/runtime/runtime.js';

/** One benchmark case: `setup` allocates inputs once; `run` records one op (no sync); `dispose` frees. */
export interface BenchCase {
  /** e.g. 'matmul 1024x1024x1024' */
  name: string;
  /** Floating-point operations per run (multiply-add = 2) → GFLOP/s is printed. */
  flops?: number;
  /** Bytes read + written per run (for memory-bound ops) → GB/s is printed. */
  bytes?: number;
  setup(rt: Runtime): { run(): void; dispose(): void; variant?: string };
}
