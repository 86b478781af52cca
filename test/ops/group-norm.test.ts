import { beforeAll, describe, expect, it } from 'vitest';
import { groupNorm, groupNormMoments, groupNormStatsFromMoments } from '../../src/ops/group-norm.js';
import { setSubgroupKernels, subgroupKernels } from '../../src/ops/subgroups.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { groupNormMomentsRef, groupNormRef, groupNormStatsRef } from '../reference/group-norm.js';
import { miscChecks } from '../shared/fixtures-misc.js';

const TOL = { atol: 1e-5, rtol: 1e-4 };

// Every case runs on both statistics merges: with subgroups (SwiftShader has them) and the portable one.
describe.each(['subgroups', 'portable'] as const)('groupNorm (%s)', (path) => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
    expect(rt.hasSubgroups, 'the test device has subgroups').toBe(true);
    setSubgroupKernels(rt, path === 'subgroups');
    expect(subgroupKernels(rt)).toBe(path === 'subgroups');
  });

  async function run(shape: number[], G: number, o: { silu?: boolean; film?: boolean; offset?: number; eps?: number } = {}, seed = 1): Promise<void> {
    const [N, C] = shape as [number, number];
    const n = shape.reduce((a, b) => a * b, 1);
    const x = randn(n, seed).map((v) => v + (o.offset ?? 0));
    const w = randn(C, seed + 1, 0.1).map((v) => 1 + v);
    const b = randn(C, seed + 2, 0.1);
    const scale = o.film ? randn(N * C, seed + 3, 0.2) : undefined;
    const shift = o.film ? randn(N * C, seed + 4, 0.2) : undefined;
    const eps = o.eps ?? 1e-5;
    const got = await rt.scopeAsync(async () =>
      rt.read(
        groupNorm(rt, rt.upload(x, shape), G, rt.upload(w, [C]), rt.upload(b, [C]), eps, {
          silu: o.silu,
          scale: scale && rt.upload(scale, [N, C]),
          shift: shift && rt.upload(shift, [N, C]),
        }),
      ),
    );
    expectClose(got, groupNormRef(x, shape, G, w, b, eps, { silu: o.silu, scale, shift }), TOL, `groupNorm [${shape}] G=${G}`);
  }

  it('matches the float64 twin on awkward shapes (vec4 and scalar paths)', async () => {
    await run([2, 6, 5, 7], 3); // H·W = 35: scalar path
    await run([1, 8, 4, 4], 8, { silu: true }); // Cg = 1
    await run([3, 4, 3], 2, { silu: true }); // 1-D spatial
    await run([2, 12], 4); // no spatial dims
    await run([1, 6, 9, 8], 2, { film: true, silu: true, offset: 3 });
  });

  it('groups larger than one workgroup chunk (several chunks + multi-level merge), vec4 and scalar', async () => {
    await run([2, 4, 97, 101], 2, { film: true, silu: true }); // 19,594 per group, H·W odd
    await run([1, 16, 64, 72], 4, { silu: true, offset: 2.5 }, 7); // 18,432 per group, 2 chunks
  });

  it('keeps its precision with a large common offset (no Σx² − (Σx)²)', async () => {
    // Offset 100: f32 inputs still resolve ~1e-5 there, while Σx² − (Σx)² in f32 would lose the variance.
    await run([1, 8, 31, 33], 2, { offset: 100 }, 3);
    await run([1, 4, 12, 12], 2, { offset: 100, eps: 1e-6 }, 4);
    await run([1, 16, 64, 72], 4, { offset: 100, silu: true }, 5); // split path
  });

  it('plane-chunked apply: 1, 2 and 4 vec4s per invocation, several workgroups per plane', async () => {
    await run([2, 8, 32, 32], 4, { silu: true, film: true }, 13); // H·W = 1024: 1 vec4 per invocation
    await run([1, 4, 32, 64], 2, { offset: 50 }, 14); // H·W = 2048: 2 per invocation
    await run([1, 6, 64, 128], 3, { silu: true }, 15); // H·W = 8192: 4 per invocation, 2 workgroups per plane
    await run([1, 4, 40, 40], 2, { silu: true }, 16); // H·W = 1600: not a multiple of 1024, per-vec4 apply
  });

  it('real SD shape [1, 320, 64, 64], 32 groups, SiLU', async () => {
    await run([1, 320, 64, 64], 32, { silu: true }, 11);
  });

  it('large split reduction [1, 64, 256, 256], 32 groups (131,072 per group)', async () => {
    await run([1, 64, 256, 256], 32, { silu: true }, 12);
  });

  it('normalises with supplied stats', async () => {
    const shape = [2, 6, 5, 6];
    const n = 2 * 6 * 30;
    const x = randn(n, 21);
    const w = randn(6, 22);
    const b = randn(6, 23);
    const stats = Float32Array.from([0.1, 2, -0.3, 0.5, 0.2, 1.5, 0, 1, 1, 0.25, -1, 3]);
    const got = await rt.scopeAsync(async () =>
      rt.read(groupNorm(rt, rt.upload(x, shape), 3, rt.upload(w, [6]), rt.upload(b, [6]), 1e-5, { stats: rt.upload(stats, [2, 3, 2]), silu: true })),
    );
    expectClose(got, groupNormRef(x, shape, 3, w, b, 1e-5, { stats, silu: true }), TOL, 'stats path');
  });

  it('moments over sub-regions merge to the whole-image statistics', async () => {
    const shape = [2, 8, 13, 11] as const;
    const G = 4;
    const x = randn(2 * 8 * 13 * 11, 31).map((v, i) => v + (i % 7) * 0.5 + 2.5);
    const regions = [
      { y0: 0, y1: 6, x0: 0, x1: 5 },
      { y0: 0, y1: 6, x0: 5, x1: 11 },
      { y0: 6, y1: 13, x0: 0, x1: 11 },
    ];
    const { moments, stats } = await rt.scopeAsync(async () => {
      const xt = rt.upload(x, [...shape]);
      const ms = regions.map((r) => groupNormMoments(rt, xt, G, r));
      const st = groupNormStatsFromMoments(rt, ms, 1e-6);
      return { moments: await Promise.all(ms.map((m) => rt.read(m))), stats: await rt.read(st) };
    });
    regions.forEach((r, i) => expectClose(moments[i]!, groupNormMomentsRef(x, shape, G, r), { atol: 1e-4, rtol: 1e-5 }, `moments ${JSON.stringify(r)}`));
    expectClose(stats, groupNormStatsRef(x, shape, G, 1e-6), TOL, 'merged stats');
  });

  it('moments of a huge region split across workgroups; whole-image moments → stats', async () => {
    const shape = [1, 4, 150, 130] as const;
    const x = randn(4 * 150 * 130, 41, 2).map((v) => v - 1.5);
    const { part, whole, stats } = await rt.scopeAsync(async () => {
      const xt = rt.upload(x, [...shape]);
      const p = groupNormMoments(rt, xt, 1, { y0: 1, y1: 149, x0: 3, x1: 129 }); // 74,592 elements
      const m = groupNormMoments(rt, xt, 2);
      return { part: await rt.read(p), whole: await rt.read(m), stats: await rt.read(groupNormStatsFromMoments(rt, [m], 1e-5)) };
    });
    expectClose(part, groupNormMomentsRef(x, shape, 1, { y0: 1, y1: 149, x0: 3, x1: 129 }), { atol: 1e-3, rtol: 1e-5 }, 'region moments');
    expectClose(whole, groupNormMomentsRef(x, shape, 2, { y0: 0, y1: 150, x0: 0, x1: 130 }), { atol: 1e-3, rtol: 1e-5 }, 'whole moments');
    expectClose(stats, groupNormStatsRef(x, shape, 2, 1e-5), TOL, 'stats');
  });

  it('rejects bad inputs with typed errors before any GPU work', () => {
    rt.scope(() => {
      const x = rt.zeros([1, 6, 4, 4]);
      const w = rt.zeros([6]);
      expect(() => groupNorm(rt, x, 4, w, w, 1e-5)).toThrow(ShapeError);
      expect(() => groupNorm(rt, x, 0, w, w, 1e-5)).toThrow(ArgumentError);
      expect(() => groupNorm(rt, x, 3, rt.zeros([5]), w, 1e-5)).toThrow(ShapeError);
      expect(() => groupNorm(rt, x, 3, w, w, NaN)).toThrow(ArgumentError);
      expect(() => groupNorm(rt, x, 3, w, w, 1e-5, { scale: rt.zeros([6]) })).toThrow(ShapeError);
      expect(() => groupNorm(rt, x, 3, w, w, 1e-5, { stats: rt.zeros([1, 3, 3]) })).toThrow(ShapeError);
      expect(() => groupNorm(rt, rt.zeros([6]), 3, w, w, 1e-5)).toThrow(ShapeError);
      expect(() => groupNorm(rt, rt.zeros([1, 6, 2, 2], 'f16'), 3, w, w, 1e-5)).toThrow(ShapeError);
      expect(() => groupNormMoments(rt, x, 3, { y0: 2, y1: 2, x0: 0, x1: 4 })).toThrow(ArgumentError);
      expect(() => groupNormMoments(rt, x, 3, { y0: 0, y1: 5, x0: 0, x1: 4 })).toThrow(ArgumentError);
      expect(() => groupNormStatsFromMoments(rt, [], 1e-5)).toThrow(ArgumentError);
      expect(() => groupNormStatsFromMoments(rt, [rt.zeros([1, 3, 3]), rt.zeros([1, 2, 3])], 1e-5)).toThrow(ShapeError);
    });
  });

  it('fixtures: group_norm_eps1e-5, group_norm_eps1e-6', async () => {
    for (const c of miscChecks.filter((c) => c.name.startsWith('ops/group_norm'))) {
      const r = (await c.run(rt, nodeLoader)) as { actual: Float32Array; expected: Float32Array; atol: number; rtol: number };
      const rep = expectClose(r.actual, r.expected, r, c.name);
      console.info(`${c.name}: max abs err ${rep.maxAbs.toExponential(2)}`);
    }
  });
});
