import { multiHeadAttention, scaledDotProductAttention } from '../../src/ops/attention.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { BenchCase } from './types.js';

function randomUpload(rt: Runtime, shape: number[], seed: number) {
  let s = seed >>> 0;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return rt.upload(data, shape);
}

/** SD level-0 self-attention (token-major, after to_q/to_k/to_v) and the VAE mid-block's single 512-wide head. */
export const cases: BenchCase[] = [
  {
    name: 'attention 8x1024x40',
    flops: 4 * 8 * 1024 * 1024 * 40,
    setup(rt) {
      const [q, k, v] = [1, 2, 3].map((s) => randomUpload(rt, [1, 1024, 320], s)) as [ReturnType<typeof randomUpload>, ReturnType<typeof randomUpload>, ReturnType<typeof randomUpload>];
      return {
        variant: 'flash, 4 rows/invocation, main',
        run: () => multiHeadAttention(rt, q, k, v, 8).dispose(),
        dispose: () => [q, k, v].forEach((t) => t.dispose()),
      };
    },
  },
  {
    name: 'vae attention 1x4096x512',
    flops: 4 * 4096 * 4096 * 512,
    setup(rt) {
      const [q, k, v] = [1, 2, 3].map((s) => randomUpload(rt, [1, 1, 4096, 512], s)) as [ReturnType<typeof randomUpload>, ReturnType<typeof randomUpload>, ReturnType<typeof randomUpload>];
      return {
        variant: 'flash, split-D 8×64 (main_split)',
        run: () => scaledDotProductAttention(rt, q, k, v).dispose(),
        dispose: () => [q, k, v].forEach((t) => t.dispose()),
      };
    },
  },
];
