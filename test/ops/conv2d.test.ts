import { beforeAll, describe, expect, it } from 'vitest';
import { conv2d, type Conv2dOptions } from '../../src/ops/conv2d.js';
import type { GemmTiles } from '../../src/ops/matmul.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import { f16ToF32, f32ToF16 } from '../../src/runtime/dtype.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { conv2dRef } from '../reference/conv2d.js';
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

  // The device picks one kernel variant; the other is forced here so both stay right on any machine.
  const variants: [string, GemmTiles][] = [
    ['workgroup tiles 16x16', { WG_M: 16, WG_N: 16, TILE_K: 16, entry: 'main', per: 4 }],
    ['direct 8x8', { WG_M: 8, WG_N: 8, TILE_K: 16, entry: 'main_direct', per: 8 }],
  ];
  it.each(variants)('forced variant %s: stride-2 asym, upsample2x, 1x1, f16 match the twin', async (_n, tiles) => {
    const runs: [number[], number[], Conv2dOptions & { f16?: boolean }][] = [
      [[2, 5, 10, 9], [9, 5, 3, 3], { stride: 2, padding: [0, 1, 0, 1] }],
      [[1, 3, 5, 6], [10, 3, 3, 3], { padding: 1, upsample2x: true, f16: true }],
      [[1, 7, 5, 5], [6, 7, 1, 1], {}],
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
      const y = conv2d(rt, x, w, b, { ...geo(o), residual: r, tiles });
      expectClose(await rt.read(y), withRes.data, F32, `[${xs}] * [${ws}]`);
      for (const t of [x, w, b, r, y]) t.dispose();
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
