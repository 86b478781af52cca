import { createNodeRuntime } from '../../src/node/gpu.js';
import { setF16Compute } from '../../src/ops/gemm-compute.js';
import type { Runtime } from '../../src/runtime/runtime.js';

let shared: Promise<Runtime> | null = null;

/**
 * One runtime per test file (vitest forks a process per file). Logs are silenced. f16 compute (GPUs with
 * shader-f16) is off: the fixture checks use f32 tolerances; test/ops/matmul and conv2d test f16 compute
 * with its own bound.
 */
export function testRuntime(): Promise<Runtime> {
  shared ??= createNodeRuntime({ log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }).then((rt) => {
    setF16Compute(rt, false);
    return rt;
  });
  return shared;
}

/** A fresh runtime, for tests that destroy or exhaust theirs. */
export function freshRuntime(options: Parameters<typeof createNodeRuntime>[0] = {}): Promise<Runtime> {
  return createNodeRuntime({ log: () => {}, ...options });
}
