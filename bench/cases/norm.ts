import { groupNorm } from '../../src/ops/group-norm.js';
import { layerNorm } from '../../src/ops/layer-norm.js';
import { silu } from '../../src/ops/elementwise.js';
import { setSubgroupKernels, subgroupKernels } from '../../src/ops/subgroups.js';
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

/** Runs `f` with the portable (no subgroups) kernels, then restores the runtime's choice. */
function portable(rt: Runtime, f: () => void): void {
  const was = subgroupKernels(rt);
  setSubgroupKernels(rt, false);
  try {
    f();
  } finally {
    if (was) setSubgroupKernels(rt, true);
  }
}

const statsPath = (rt: Runtime) => (subgroupKernels(rt) ? 'subgroups' : 'portable');

/**
 * Memory-bound ops: bytes = one read of the input + one write of the output (f32). Group norm also reads
 * its input a second time for the statistics (3 passes of traffic in all), which these bytes leave out:
 * its % of copy bandwidth is against the 2-pass count, so 67 % would mean full speed on all 3 passes.
 */
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
        variant: `moments 64 vec4s/invocation, Chan merge (${statsPath(rt)}), plane apply 4 vec4s/invocation`,
        run: () => groupNorm(rt, x, 32, w, b, 1e-6, { silu: true }).dispose(),
        dispose: () => [x, w, b].forEach((t) => t.dispose()),
      };
    },
  },
  {
    // The same without subgroups (as on devices that lack them).
    name: 'group norm + SiLU (portable merge)',
    bytes: 2 * 4 * 512 * 64 * 64,
    setup(rt) {
      const x = randomUpload(rt, [1, 512, 64, 64], 1);
      const w = randomUpload(rt, [512], 2);
      const b = randomUpload(rt, [512], 3);
      return {
        variant: 'moments 64 vec4s/invocation, Chan merge (portable), plane apply 4 vec4s/invocation',
        run: () => portable(rt, () => groupNorm(rt, x, 32, w, b, 1e-6, { silu: true }).dispose()),
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
        variant: `FiLM folded into the affine, merge (${statsPath(rt)}), plane apply 1 vec4/invocation`,
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
        variant: `one-pass shifted row stats (${subgroupKernels(rt) ? 'subgroups: each row read by a whole subgroup' : 'portable: row per invocation'}), apply 4 rows/invocation`,
        run: () => layerNorm(rt, x, w, b, 1e-5).dispose(),
        dispose: () => [x, w, b].forEach((t) => t.dispose()),
      };
    },
  },
  {
    name: 'layer norm 2x4096x320 (portable)',
    bytes: 2 * 4 * 2 * 4096 * 320,
    setup(rt) {
      const x = randomUpload(rt, [2, 4096, 320], 9);
      const [w, b] = [10, 11].map((s) => randomUpload(rt, [320], s)) as [Tensor, Tensor];
      return {
        variant: 'one-pass shifted row stats (portable: row per invocation), apply 4 rows/invocation',
        run: () => portable(rt, () => layerNorm(rt, x, w, b, 1e-5).dispose()),
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
