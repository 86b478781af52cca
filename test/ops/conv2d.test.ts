import { beforeAll, describe, expect, it } from 'vitest';
import { conv2d, type Conv2dOptions } from '../../src/ops/conv2d.js';
import { hasQuadSubgroups, tiles, type GemmTiles } from '../../src/ops/matmul.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import { f16ToF32, f32ToF16 } from '../../src/runtime/dtype.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { conv2dRef } from '../reference/conv2d.js';
import { get } from '../shared/fixture-check.js';
import { gemmChecks } from '../shared/fixtures-gemm.js';

const F32 = { atol: 1e-4, rtol: 1e-4 };

let rt: Runtime;

/** The geometry options, which the twin shares with the op. */
const geo = (o: Conv2dOptions) => ({ stride: o.stride, padding: o.padding, upsample2x: o.upsample2x });

type Case = [string, [number, number, number, number], [number, number, number, number], Conv2dOptions & { f16?: boolean; bias?: boolean; res?: boolean }];

describe('conv2d', () => {
  beforeAll(async () => {
    rt = await testRuntime();
  });

  const cases: Case[] = [
    ['3x3 pad 1, odd sizes, bias + residual', [2, 5, 9, 11], [7, 5, 3, 3], { padding: 1, bias: true, res: true }],
    ['3x3 stride 2 pad 1, odd input', [1, 6, 9, 12], [10, 6, 3, 3], { stride: 2, padding: 1, bias: true }],
    ['3x3 stride 2 asymmetric (0,1,0,1)', [1, 4, 10, 12], [5, 4, 3, 3], { stride: 2, padding: [0, 1, 0, 1], bias: true }],
    ['1x1 (GEMM path), bias + residual', [2, 13, 7, 9], [70, 13, 1, 1], { bias: true, res: true }],
    ['1x1 stride 2', [1, 8, 9, 9], [6, 8, 1, 1], { stride: 2 }],
    ['5x5 pad 2, no bias', [1, 3, 11, 8], [9, 3, 5, 5], { padding: 2 }],
    ['upsample2x 3x3 pad 1, bias + residual', [1, 6, 5, 7], [11, 6, 3, 3], { padding: 1, upsample2x: true, bias: true, res: true }],
    ['Cin 1, 3x3 no pad', [1, 1, 6, 6], [3, 1, 3, 3], {}],
    ['f16 weights, 3x3 pad 1', [1, 9, 8, 10], [20, 9, 3, 3], { padding: 1, f16: true, bias: true }],
    ['f16 weights, 1x1', [1, 16, 6, 6], [12, 16, 1, 1], { f16: true }],
  ];
  it.each(cases)('%s: matches the float64 twin', async (_name, xs, ws, o) => {
    const xv = randn(xs.reduce((p, d) => p * d, 1), 1);
    const K = ws[1] * ws[2] * ws[3];
    let wv = randn(ws.reduce((p, d) => p * d, 1), 2, 1 / Math.sqrt(K));
    if (o.f16) wv = wv.map((v) => f16ToF32(f32ToF16(v)));
    const bv = o.bias ? randn(ws[0], 3, 0.1) : undefined;
    const ref0 = conv2dRef(xv, xs, wv, ws, bv, geo(o));
    const rv = o.res ? randn(ref0.data.length, 4) : undefined;
    const want = conv2dRef(xv, xs, wv, ws, bv, { ...geo(o), residual: rv });
    const x = rt.upload(xv, xs);
    const w = rt.upload(wv, ws, { dtype: o.f16 ? 'f16' : 'f32' });
    const b = bv ? rt.upload(bv, [ws[0]]) : undefined;
    const r = rv ? rt.upload(rv, want.shape) : undefined;
    const y = conv2d(rt, x, w, b, { ...geo(o), residual: r });
    expect(y.shape).toEqual(want.shape);
    expectClose(await rt.read(y), want.data, F32);
    for (const t of [x, w, b, r, y]) t?.dispose();
  });

  // The device picks one kernel variant; the others are forced here so all stay right on any machine.
  // 'main_sg' runs main_sg3 (3x3, stride 1, Wo a multiple of 8) or the generic main_sg, by geometry. It needs
  // 4-wide subgroups (SwiftShader has them); where the device lacks them, forcing it must throw.
  const variants: [string, GemmTiles][] = [
    ['workgroup tiles 16x16', tiles(16, 16, 'main')],
    ['direct 8x8', tiles(8, 8, 'main_direct')],
    ['subgroup 8x8 (16x8 per thread)', tiles(8, 8, 'main_sg')],
    ['subgroup 2x4 (16x8 per thread)', tiles(2, 4, 'main_sg')],
  ];
  /** False (after checking that forcing it throws) where the device cannot run the variant. */
  function runnable(t: GemmTiles, call: () => unknown): boolean {
    if (t.entry !== 'main_sg' || hasQuadSubgroups(rt)) return true;
    expect(call).toThrow(ArgumentError);
    return false;
  }
  it.each(variants)('forced variant %s: stride-2 asym, upsample2x, 1x1, f16, 3x3 sliding window match the twin', async (_n, t) => {
    const runs: [number[], number[], Conv2dOptions & { f16?: boolean }][] = [
      [[2, 5, 10, 9], [9, 5, 3, 3], { stride: 2, padding: [0, 1, 0, 1] }],
      [[1, 3, 5, 6], [10, 3, 3, 3], { padding: 1, upsample2x: true, f16: true }],
      [[1, 7, 5, 5], [6, 7, 1, 1], {}],
      // Wo a multiple of 8 (main_sg3): asymmetric padding, 18 channels (a partial 16-channel group), batch 2,
      // 80 pixels (a partial 64-pixel block: groups past the end are clamped and store nothing)
      [[2, 5, 6, 16], [18, 5, 3, 3], { padding: [0, 1, 2, 0] }],
      // Wo = 16 through the fused nearest-×2 input, f16 weights
      [[1, 4, 4, 8], [20, 4, 3, 3], { padding: 1, upsample2x: true, f16: true }],
      // no padding at all: Wo = 8 from a 10-wide input
      [[1, 3, 10, 10], [17, 3, 3, 3], {}],
    ];
    for (const [xs, ws, o] of runs) {
      const xv = randn(xs.reduce((p, d) => p * d, 1), 30);
      let wv = randn(ws.reduce((p, d) => p * d, 1), 31, 0.3);
      if (o.f16) wv = wv.map((v) => f16ToF32(f32ToF16(v)));
      const bv = randn(ws[0]!, 32, 0.1);
      const want = conv2dRef(xv, xs, wv, ws, bv, geo(o));
      const rv = randn(want.data.length, 33);
      const withRes = conv2dRef(xv, xs, wv, ws, bv, { ...geo(o), residual: rv });
      const x = rt.upload(xv, xs);
      const w = rt.upload(wv, ws, { dtype: o.f16 ? 'f16' : 'f32' });
      const b = rt.upload(bv, [ws[0]!]);
      const r = rt.upload(rv, withRes.shape);
      const opts = { ...geo(o), residual: r, tiles: t };
      if (runnable(t, () => conv2d(rt, x, w, b, opts))) {
        const y = conv2d(rt, x, w, b, opts);
        expectClose(await rt.read(y), withRes.data, F32, `[${xs}] * [${ws}]`);
        y.dispose();
      }
      for (const v of [x, w, b, r]) v.dispose();
    }
  });

  // The fixture cases of ops.io.safetensors through every forced variant (tolerances.json ops.<name>, as in
  // test/shared/fixtures-gemm.ts); the default variant runs them below.
  const fixtures: [string, { atol: number; rtol: number }, Conv2dOptions][] = [
    ['conv3x3', { atol: 2e-5, rtol: 1e-3 }, { padding: 1 }],
    ['conv3x3_s2_asym', { atol: 1e-5, rtol: 1e-3 }, { stride: 2, padding: [0, 1, 0, 1] }],
    ['conv3x3_s2_pad1', { atol: 1e-5, rtol: 1e-3 }, { stride: 2, padding: 1 }],
    ['conv1x1', { atol: 5e-6, rtol: 1e-3 }, { padding: 0 }],
  ];
  it.each(variants)('fixtures ops/conv* with forced variant %s', async (_n, t) => {
    const f = await nodeLoader('ops.io.safetensors');
    for (const [name, tol, o] of fixtures) {
      const [x, w, b] = ['x', 'w', 'b'].map((k) => rt.upload(get(f, `${name}.${k}`).data as Float32Array, get(f, `${name}.${k}`).shape)) as [Tensor, Tensor, Tensor];
      if (runnable(t, () => conv2d(rt, x, w, b, { ...o, tiles: t }))) {
        const y = conv2d(rt, x, w, b, { ...o, tiles: t });
        expectClose(await rt.read(y), get(f, `${name}.y`).data, tol, name);
        y.dispose();
      }
      for (const v of [x, w, b]) v.dispose();
    }
  });

  it('SD-1.5 shape: conv3x3 1x320x16x16 -> 320, pad 1, bias', async () => {
    const xs = [1, 320, 16, 16];
    const ws = [320, 320, 3, 3];
    const xv = randn(320 * 256, 5);
    const wv = randn(320 * 320 * 9, 6, 1 / Math.sqrt(320 * 9));
    const bv = randn(320, 7, 0.05);
    const x = rt.upload(xv, xs);
    const w = rt.upload(wv, ws);
    const b = rt.upload(bv, [320]);
    const y = conv2d(rt, x, w, b, { padding: 1 });
    expectClose(await rt.read(y), conv2dRef(xv, xs, wv, ws, bv, { padding: 1 }).data, F32);
    for (const t of [x, w, b, y]) t.dispose();
  });

  it('rejects bad inputs with typed errors before any GPU work', () => {
    const x = rt.zeros([1, 4, 8, 8]);
    const w = rt.zeros([6, 4, 3, 3]);
    const before = rt.dispatches;
    expect(() => conv2d(rt, rt.zeros([4, 8, 8]), w)).toThrow(ShapeError);
    expect(() => conv2d(rt, x, rt.zeros([6, 5, 3, 3]))).toThrow(ShapeError);
    expect(() => conv2d(rt, x, rt.zeros([6, 4, 9, 9]))).toThrow(ShapeError);
    expect(() => conv2d(rt, x, w, rt.zeros([5]))).toThrow(ShapeError);
    expect(() => conv2d(rt, x, w, undefined, { padding: 1, residual: rt.zeros([1, 6, 6, 6]) })).toThrow(ShapeError);
    expect(() => conv2d(rt, x, w, undefined, { stride: 0 })).toThrow(ArgumentError);
    expect(() => conv2d(rt, x, w, undefined, { padding: -1 })).toThrow(ArgumentError);
    expect(() => conv2d(rt, x, w, undefined, { padding: [1, 1, 1] as unknown as number })).toThrow(ArgumentError);
    expect(() => conv2d(rt, rt.zeros([1, 4, 8, 8], 'f16'), w)).toThrow(ShapeError);
    expect(rt.dispatches).toBe(before);
  });

  it.each(gemmChecks.filter((c) => c.name.startsWith('ops/conv')))('fixture $name', async (check) => {
    const results = await check.run(rt, nodeLoader);
    for (const r of Array.isArray(results) ? results : [results]) expectClose(r.actual, r.expected, r);
  });
});
