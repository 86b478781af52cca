import { beforeAll, describe, expect, it } from 'vitest';
import { guidanceEmbedding, timestepEmbedding } from '../../src/ops/embedding.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { fx, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { guidanceEmbeddingRef, timestepEmbeddingRef } from '../reference/embedding.js';
import { miscChecks } from '../shared/fixtures-misc.js';

const TOL = { atol: 1e-6, rtol: 1e-5 };

describe('embedding', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('timestep embedding: SD (t up to 999, 320), fm-boosting (t in [0,1], 128), odd dim, sin first, shift 1', async () => {
    const ts = [0, 1, 19, 259, 499.5, 759, 981, 999];
    const cases: [number[], number, { flipSinToCos?: boolean; downscaleFreqShift?: number }][] = [
      [ts, 320, {}],
      [[0, 0.25, 0.5, 0.999], 128, {}],
      [ts, 33, { flipSinToCos: false, downscaleFreqShift: 1 }],
    ];
    for (const [t, dim, o] of cases) {
      const got = await rt.scopeAsync(async () => rt.read(timestepEmbedding(rt, rt.upload(t, [t.length]), dim, o)));
      expectClose(got, timestepEmbeddingRef(t, dim, o.flipSinToCos ?? true, o.downscaleFreqShift ?? 0), TOL, `timestep dim ${dim}`);
    }
    // REFERENCE.md §2.2 test values for e(0.25), dim 128.
    const e = await rt.scopeAsync(async () => rt.read(timestepEmbedding(rt, rt.upload([0.25], [1]), 128)));
    expect(e[0]).toBeCloseTo(0.96891242, 6);
    expect(e[64]).toBeCloseTo(0.24740396, 6);
    expect(e[63]).toBeCloseTo(1.0, 6);
    expect(e[127]).toBeCloseTo(2.88695e-5, 9);
  });

  it('guidance embedding (LCM): w·1000, sin first, odd dim padded', async () => {
    const w = [0, 1.5, 7, 14];
    for (const dim of [256, 32, 17]) {
      const got = await rt.scopeAsync(async () => rt.read(guidanceEmbedding(rt, rt.upload(w, [4]), dim)));
      expectClose(got, guidanceEmbeddingRef(w, dim), { atol: 2e-6, rtol: 1e-5 }, `guidance dim ${dim}`);
      if (dim % 2) for (let n = 0; n < 4; n++) expect(got[n * dim + dim - 1]).toBe(0);
    }
  });

  it('guidance embedding matches unet_lcm timestep_cond (float32 arguments reproduced)', async () => {
    const g = fx('unet_lcm.io.safetensors', 'guidance_scale');
    const want = fx('unet_lcm.io.safetensors', 'timestep_cond');
    const w = Float32Array.from(g.data, (v) => v - 1);
    const got = await rt.scopeAsync(async () => rt.read(guidanceEmbedding(rt, rt.upload(w, [w.length]), want.shape[1]!)));
    const rep = expectClose(got, want.data, tolerance('unet_lcm', 'timestep_cond'), 'timestep_cond');
    console.info(`unet_lcm timestep_cond: max abs err ${rep.maxAbs.toExponential(2)}`);
  });

  it('rejects bad inputs with typed errors', () => {
    rt.scope(() => {
      expect(() => timestepEmbedding(rt, rt.zeros([2, 1]), 8)).toThrow(ShapeError);
      expect(() => timestepEmbedding(rt, rt.zeros([2]), 0)).toThrow(ArgumentError);
      expect(() => timestepEmbedding(rt, rt.zeros([2]), 8, { downscaleFreqShift: 4 })).toThrow(ArgumentError);
      expect(() => guidanceEmbedding(rt, rt.zeros([2]), 3)).toThrow(ArgumentError);
    });
  });

  it('fixtures: timestep_embedding_diffusers, timestep_embedding_fmboost', async () => {
    const checks = miscChecks.filter((c) => c.name.startsWith('ops/timestep_embedding'));
    expect(checks).toHaveLength(2);
    for (const c of checks) {
      const r = (await c.run(rt, nodeLoader)) as { actual: Float32Array; expected: Float32Array; atol: number; rtol: number };
      console.info(`${c.name}: max abs err ${expectClose(r.actual, r.expected, r, c.name).maxAbs.toExponential(2)}`);
    }
  });
});
