import { conv2d, convEntry } from '../../src/ops/conv2d.js';
import { describeCompute, gemmCompute } from '../../src/ops/gemm-compute.js';
import { describeTiles, gemmTiles, matmul } from '../../src/ops/matmul.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { BenchCase } from './types.js';

function fill(n: number, scale: number): Float32Array {
  // Cheap deterministic values; the kernels' speed does not depend on them.
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (((i * 2654435761) >>> 0) / 2 ** 32 - 0.5) * scale;
  return v;
}

function matmulCase(M: number, K: number, N: number): BenchCase {
  return {
    name: `matmul ${M}x${K}x${N}`,
    flops: 2 * M * K * N,
    setup(rt: Runtime) {
      const a = rt.upload(fill(M * K, 1), [M, K]);
      const b = rt.upload(fill(K * N, 1 / Math.sqrt(K)), [K, N], { persistent: true });
      let y: ReturnType<typeof matmul> | null = null;
      const t = gemmTiles(rt, M, N, K);
      return {
        variant: `${describeTiles(t)}${describeCompute(gemmCompute(rt, 'matmul', t.entry))}`,
        run() {
          y?.dispose();
          y = matmul(rt, a, b);
        },
        dispose() {
          for (const t of [a, b, y]) t?.dispose();
        },
      };
    },
  };
}

function convCase(Cin: number, H: number, W: number, Cout: number): BenchCase {
  return {
    name: `conv3x3 1x${Cin}x${H}x${W}->${Cout}`,
    flops: 2 * Cout * H * W * Cin * 9,
    setup(rt: Runtime) {
      const x = rt.upload(fill(Cin * H * W, 1), [1, Cin, H, W]);
      const w = rt.upload(fill(Cout * Cin * 9, 1 / Math.sqrt(Cin * 9)), [Cout, Cin, 3, 3], { persistent: true });
      const b = rt.upload(fill(Cout, 0.1), [Cout], { persistent: true });
      let y: ReturnType<typeof conv2d> | null = null;
      const t = gemmTiles(rt, Cout, H * W, Cin * 9);
      return {
        variant: `implicit GEMM, ${describeTiles(t)}${convEntry(t, 3, 3, 1, W) === 'main_sg3' ? ' (main_sg3: 3x3 sliding window)' : ''}${describeCompute(gemmCompute(rt, 'conv2d', t.entry))}`,
        run() {
          y?.dispose();
          y = conv2d(rt, x, w, b, { padding: 1 });
        },
        dispose() {
          for (const t of [x, w, b, y]) t?.dispose();
        },
      };
    },
  };
}

export const cases: BenchCase[] = [
  matmulCase(1024, 1024, 1024),
  matmulCase(4096, 320, 320),
  convCase(128, 64, 64, 128),
  convCase(320, 32, 32, 320),
  convCase(4, 64, 64, 320),
];
