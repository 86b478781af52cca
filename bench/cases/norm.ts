import { groupNorm } from '../../src/ops/group-norm.js';
import { layerNorm } from '../../src/ops/layer-norm.js';
import { silu } from '../../src/ops/elementwise.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import type { BenchCase } from './types.js';

function randomUpload(rt: Runtime, shape: number[], seed: number): Tensor {
  let s = seed >>> 0;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return rt.upload(data, shape);
}

/** Memory-bound ops: bytes = one read of the input + one write of the output (f32), the minimum traffic. */
export const cases: BenchCase[] = [
  {
    // SD/VAE ResNet block input norm at 64² latent width (REFERENCE §6.1, §7.3).
    name: 'group norm + SiLU 1x512x64x64 (32 groups)',
    bytes: 2 * 4 * 512 * 64 * 64,
    setup(rt) {
      const x = randomUpload(rt, [1, 512, 64, 64], 1);
      const w = randomUpload(rt, [512], 2);
      const b = randomUpload(rt, [512], 3);
      return {
        variant: 'per-invocation moments, Chan merge, vec4 apply',
        run: () => groupNorm(rt, x, 32, w, b, 1e-6, { silu: true }).dispose(),
        dispose: () => [x, w, b].forEach((t) => t.dispose()),
      };
    },
  },
  {
    name: 'group norm + FiLM + SiLU 2x256x32x32',
    bytes: 2 * 4 * 2 * 256 * 32 * 32,
    setup(rt) {
      const x = randomUpload(rt, [2, 256, 32, 32], 4);
      const [w, b] = [5, 6].map((s) => randomUpload(rt, [256], s)) as [Tensor, Tensor];
      const [scale, shift] = [7, 8].map((s) => randomUpload(rt, [2, 256], s)) as [Tensor, Tensor];
      return {
        variant: 'FiLM folded into the per-channel affine',
        run: () => groupNorm(rt, x, 32, w, b, 1e-5, { silu: true, scale, shift }).dispose(),
        dispose: () => [x, w, b, scale, shift].forEach((t) => t.dispose()),
      };
    },
  },
  {
    name: 'layer norm 2x4096x320',
    bytes: 2 * 4 * 2 * 4096 * 320,
    setup(rt) {
      const x = randomUpload(rt, [2, 4096, 320], 9);
      const [w, b] = [10, 11].map((s) => randomUpload(rt, [320], s)) as [Tensor, Tensor];
      return {
        variant: 'one invocation per row, two-pass',
        run: () => layerNorm(rt, x, w, b, 1e-5).dispose(),
        dispose: () => [x, w, b].forEach((t) => t.dispose()),
      };
    },
  },
  {
    name: 'silu 1x512x64x64',
    bytes: 2 * 4 * 512 * 64 * 64,
    setup(rt) {
      const x = randomUpload(rt, [1, 512, 64, 64], 12);
      return { variant: 'vec4', run: () => silu(rt, x).dispose(), dispose: () => x.dispose() };
    },
  },
];
