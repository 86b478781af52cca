import { beforeAll, describe, expect, it } from 'vitest';
import { layerNorm } from '../../src/ops/layer-norm.js';
import { softmax } from '../../src/ops/softmax.js';
import { setSubgroupKernels, subgroupKernels } from '../../src/ops/subgroups.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { layerNormRef } from '../reference/layer-norm.js';
import { miscChecks } from '../shared/fixtures-misc.js';

const TOL = { atol: 1e-5, rtol: 1e-4 };

// Every case runs on both row-statistics kernels: with subgroups (SwiftShader has them) and the portable one.
describe.each(['subgroups', 'portable'] as const)('layerNorm (%s)', (path) => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
    expect(rt.hasSubgroups, 'the test device has subgroups').toBe(true);
    setSubgroupKernels(rt, path === 'subgroups');
    expect(subgroupKernels(rt)).toBe(path === 'subgroups');
  });

  it('matches the float64 twin on awkward shapes, a large offset and CLIP/SD widths', async () => {
    // Row counts that are not multiples of the subgroup or workgroup size; D odd, D % 4 == 0, D = 1; rows
    // a multiple of 4 (the vec4 apply then takes 4 rows per invocation) and not.
    const cases: [number[], number][] = [
      [[3, 5], 0], [[2, 7, 37], 0], [[1, 77, 768], 0], [[2, 9, 320], 100], [[4, 1], 0], [[1, 130, 12], 0], [[2, 33, 1280], 3],
      [[3, 32, 320], 0], [[8, 12], 5], [[2, 64, 768], 0],
    ];
    for (const [shape, offset] of cases) {
      const D = shape[shape.length - 1]!;
      const x = randn(shape.reduce((a, b) => a * b, 1), D).map((v) => v + offset);
      const w = randn(D, 2, 0.1).map((v) => 1 + v);
      const b = randn(D, 3, 0.1);
      const got = await rt.scopeAsync(async () => rt.read(layerNorm(rt, rt.upload(x, shape), rt.upload(w, [D]), rt.upload(b, [D]), 1e-5)));
      expectClose(got, layerNormRef(x, D, w, b, 1e-5), offset ? { atol: 2e-4, rtol: 1e-4 } : TOL, `layerNorm [${shape}]`);
    }
  });

  it('keeps its precision when the row starts with an outlier (the one-pass statistics are shifted by it)', async () => {
    for (const D of [320, 37]) {
      const shape = [6, D];
      const x = randn(6 * D, 9).map((v, i) => (i % D === 0 ? 40 : 0) + v + 100);
      const w = randn(D, 2, 0.1).map((v) => 1 + v);
      const b = randn(D, 3, 0.1);
      const got = await rt.scopeAsync(async () => rt.read(layerNorm(rt, rt.upload(x, shape), rt.upload(w, [D]), rt.upload(b, [D]), 1e-5)));
      expectClose(got, layerNormRef(x, D, w, b, 1e-5), { atol: 2e-4, rtol: 1e-4 }, `layerNorm outlier first [${shape}]`);
    }
  });

  it('rejects bad inputs with typed errors', () => {
    rt.scope(() => {
      const x = rt.zeros([2, 4]);
      expect(() => layerNorm(rt, x, rt.zeros([3]), rt.zeros([4]), 1e-5)).toThrow(ShapeError);
      expect(() => layerNorm(rt, x, rt.zeros([4]), rt.zeros([4]), -1)).toThrow(ArgumentError);
      expect(() => softmax(rt, rt.zeros([2, 0]))).toThrow(ShapeError);
    });
  });

  it('fixture: layer_norm', async () => {
    const [c] = miscChecks.filter((c) => c.name === 'ops/layer_norm');
    const r = (await c!.run(rt, nodeLoader)) as { actual: Float32Array; expected: Float32Array; atol: number; rtol: number };
    console.info(`${c!.name}: max abs err ${expectClose(r.actual, r.expected, r, c!.name).maxAbs.toExponential(2)}`);
  });
});
