import { beforeAll, describe, expect, it } from 'vitest';
import { gemmTiles, hasQuadSubgroups, isCpuAdapter, linear, matmul, tiles, type Activation, type GemmTiles } from '../../src/ops/matmul.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import { f16ToF32, f32ToF16 } from '../../src/runtime/dtype.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { activationRef, erfRef, matmulRef } from '../reference/matmul.js';
import { get } from '../shared/fixture-check.js';
import { gemmChecks } from '../shared/fixtures-gemm.js';

const F32 = { atol: 1e-4, rtol: 1e-4 };

let rt: Runtime;

/** Values rounded through f16, as the GPU sees f16-stored weights. */
function roundF16(v: Float32Array): Float32Array {
  return v.map((x) => f16ToF32(f32ToF16(x)));
}

describe('matmul', () => {
  beforeAll(async () => {
    rt = await testRuntime();
  });

  const shapes: [string, number, number, number, number, boolean, boolean][] = [
    // name, Z, M, K, N, transB, batched b
    ['1x1x1', 1, 1, 1, 1, false, false],
    ['K=1', 1, 5, 1, 7, false, false],
    ['odd, not tile multiples', 1, 33, 17, 65, false, false],
    ['transB, odd', 1, 67, 29, 30, true, false],
    ['batched b', 3, 19, 37, 23, false, true],
    ['batched, broadcast 2-D b, transB', 2, 70, 130, 9, true, false],
    ['thin M', 1, 3, 45, 131, true, false],
  ];
  it.each(shapes)('%s: [%i,%i,%i]x[%i] matches the float64 twin', async (_n, Z, M, K, N, transB, batchedB) => {
    const aShape = Z > 1 ? [Z, M, K] : [M, K];
    const bShape = batchedB ? [Z, ...(transB ? [N, K] : [K, N])] : transB ? [N, K] : [K, N];
    const av = randn(Z * M * K, 1);
    const bv = randn(bShape.reduce((p, d) => p * d, 1), 2, 1 / Math.sqrt(K));
    const a = rt.upload(av, aShape);
    const b = rt.upload(bv, bShape);
    const y = matmul(rt, a, b, { transB });
    expect(y.shape).toEqual(Z > 1 ? [Z, M, N] : [M, N]);
    expectClose(await rt.read(y), matmulRef(av, aShape, bv, bShape, { transB }), F32);
    for (const t of [a, b, y]) t.dispose();
  });

  const acts: Activation[] = ['none', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'];
  it.each(acts)('bias + %s + residual + alpha epilogue', async (activation) => {
    const [Z, M, K, N] = [2, 37, 41, 50];
    const av = randn(Z * M * K, 3, 2);
    const bv = randn(K * N, 4, 1 / Math.sqrt(K));
    const bias = randn(N, 5);
    const res = randn(Z * M * N, 6);
    const a = rt.upload(av, [Z, M, K]);
    const b = rt.upload(bv, [K, N]);
    const bt = rt.upload(bias, [N]);
    const rs = rt.upload(res, [Z, M, N]);
    const y = matmul(rt, a, b, { bias: bt, activation, residual: rs, alpha: 1.5 });
    expectClose(await rt.read(y), matmulRef(av, [Z, M, K], bv, [K, N], { bias, activation, residual: res, alpha: 1.5 }), F32, activation);
    for (const t of [a, b, bt, rs, y]) t.dispose();
  });

  it('activations are accurate over a wide range (erf gelu within 2e-7 of float64)', async () => {
    // y = act(x · 1) through a K=1 matmul: isolates the epilogue functions.
    const n = 2001;
    const x = Float32Array.from({ length: n }, (_, i) => -10 + (20 * i) / (n - 1));
    const a = rt.upload(x, [n, 1]);
    const one = rt.upload([1], [1, 1]);
    for (const activation of acts) {
      const y = matmul(rt, a, one, { activation });
      const want = Float64Array.from(x, (v) => activationRef(v, activation));
      expectClose(await rt.read(y), want, { atol: activation === 'gelu' ? 2e-7 : 1e-6, rtol: 1e-6 }, activation);
      y.dispose();
    }
    expect(erfRef(0.5)).toBeCloseTo(0.5204998778130465, 15);
    expect(erfRef(3.5)).toBeCloseTo(0.9999992569016276, 15);
    a.dispose();
    one.dispose();
  });

  it('f16 weights ([N, K] and [K, N]) match the twin on the f16-rounded values', async () => {
    for (const transB of [true, false]) {
      const [M, K, N] = [21, 75, 33];
      const av = randn(M * K, 7);
      const bv = randn(K * N, 8, 1 / Math.sqrt(K));
      const a = rt.upload(av, [M, K]);
      const b = rt.upload(bv, transB ? [N, K] : [K, N], { dtype: 'f16' });
      const bias = randn(N, 9);
      const bt = rt.upload(bias, [N]);
      const y = matmul(rt, a, b, { transB, bias: bt, activation: 'silu' });
      expectClose(await rt.read(y), matmulRef(av, [M, K], roundF16(bv), transB ? [N, K] : [K, N], { transB, bias, activation: 'silu' }), F32);
      for (const t of [a, b, bt, y]) t.dispose();
    }
  });

  it('linear keeps leading dims; SD-1.5 shape [1, 77, 768] x [768, 768] with bias', async () => {
    const [L, K, N] = [77, 768, 768];
    const xv = randn(L * K, 10);
    const wv = randn(N * K, 11, 1 / Math.sqrt(K));
    const bias = randn(N, 12, 0.05);
    const x = rt.upload(xv, [1, L, K]);
    const w = rt.upload(wv, [N, K]);
    const bt = rt.upload(bias, [N]);
    const y = linear(rt, x, w, bt);
    expect(y.shape).toEqual([1, L, N]);
    expectClose(await rt.read(y), matmulRef(xv, [L, K], wv, [N, K], { transB: true, bias }), F32);
    for (const t of [x, w, bt, y]) t.dispose();
  });

  it('linear with f16 weight, gelu and residual on [2, 3, 5, 40]', async () => {
    const [R, K, N] = [30, 40, 19];
    const xv = randn(R * K, 13);
    const wv = randn(N * K, 14, 1 / Math.sqrt(K));
    const res = randn(R * N, 15);
    const x = rt.upload(xv, [2, 3, 5, K]);
    const w = rt.upload(wv, [N, K], { dtype: 'f16' });
    const rs = rt.upload(res, [2, 3, 5, N]);
    const y = linear(rt, x, w, undefined, { activation: 'gelu', residual: rs });
    expect(y.shape).toEqual([2, 3, 5, N]);
    expectClose(await rt.read(y), matmulRef(xv, [R, K], roundF16(wv), [N, K], { transB: true, activation: 'gelu', residual: res }), F32);
    for (const t of [x, w, rs, y]) t.dispose();
  });

  it('rejects bad inputs with typed errors before any GPU work', () => {
    const a = rt.zeros([4, 6]);
    const b = rt.zeros([6, 5]);
    const before = rt.dispatches;
    expect(() => matmul(rt, a, rt.zeros([7, 5]))).toThrow(ShapeError);
    expect(() => matmul(rt, a, b, { transB: true })).toThrow(ShapeError);
    expect(() => matmul(rt, rt.zeros([4]), b)).toThrow(ShapeError);
    expect(() => matmul(rt, a, rt.zeros([2, 6, 5]))).toThrow(ShapeError);
    expect(() => matmul(rt, rt.zeros([3, 4, 6]), rt.zeros([2, 6, 5]))).toThrow(ShapeError);
    expect(() => matmul(rt, a, b, { bias: rt.zeros([4]) })).toThrow(ShapeError);
    expect(() => matmul(rt, a, b, { residual: rt.zeros([5, 4]) })).toThrow(ShapeError);
    expect(() => matmul(rt, a, b, { activation: 'relu' as Activation })).toThrow(ArgumentError);
    expect(() => matmul(rt, a, b, { alpha: NaN })).toThrow(ArgumentError);
    expect(() => matmul(rt, rt.zeros([4, 6], 'f16'), b)).toThrow(ShapeError);
    expect(() => linear(rt, a, rt.zeros([5, 7]))).toThrow(ShapeError);
    expect(() => linear(rt, a, b, rt.zeros([6]))).toThrow(ShapeError);
    expect(rt.dispatches).toBe(before);
  });

  // The device picks one variant; all must be right everywhere, so each is forced over awkward shapes.
  // main_sg needs 4-wide subgroups (SwiftShader has them); where the device lacks them, forcing it must throw.
  const variants: [string, GemmTiles][] = [
    ['workgroup tiles 16x16', tiles(16, 16, 'main')],
    ['workgroup tiles 4x32', tiles(4, 32, 'main')],
    ['direct 8x8', tiles(8, 8, 'main_direct')],
    ['direct 1x32', tiles(1, 32, 'main_direct')],
    ['subgroup 8x8 (16x8 per thread)', tiles(8, 8, 'main_sg')],
    ['subgroup 2x4 (16x8 per thread)', tiles(2, 4, 'main_sg')],
  ];
  /** False (after checking that forcing it throws) where the device cannot run the variant. */
  function runnable(t: GemmTiles, call: () => unknown): boolean {
    if (t.entry !== 'main_sg' || hasQuadSubgroups(rt)) return true;
    expect(call).toThrow(ArgumentError);
    return false;
  }
  it.each(variants)('forced variant %s: transB/f16/batched/epilogue shapes match the twin', async (_n, t) => {
    const runs: [number, number, number, number, boolean, boolean][] = [
      [2, 37, 19, 70, false, false],
      [1, 70, 33, 45, true, true],
      [3, 5, 1, 9, false, false],
      // several blocks each way (K = 9: one unrolled step of 4 and a tail of 1 in main_sg)
      [1, 133, 9, 70, true, false],
    ];
    for (const [Z, M, K, N, transB, f16] of runs) {
      const av = randn(Z * M * K, 20);
      let bv = randn(K * N, 21, 1 / Math.sqrt(K));
      if (f16) bv = roundF16(bv);
      const bias = randn(N, 22);
      const res = randn(Z * M * N, 23);
      const a = rt.upload(av, [Z, M, K]);
      const b = rt.upload(bv, transB ? [N, K] : [K, N], { dtype: f16 ? 'f16' : 'f32' });
      const bt = rt.upload(bias, [N]);
      const rs = rt.upload(res, [Z, M, N]);
      const o = { transB, bias: bt, residual: rs, activation: 'gelu' as const, alpha: 0.5, tiles: t };
      if (runnable(t, () => matmul(rt, a, b, o))) {
        const y = matmul(rt, a, b, o);
        const want = matmulRef(av, [Z, M, K], bv, transB ? [N, K] : [K, N], { transB, bias, residual: res, activation: 'gelu', alpha: 0.5 });
        expectClose(await rt.read(y), want, F32, `[${Z},${M},${K}]x${N}`);
        y.dispose();
      }
      for (const x of [a, b, bt, rs]) x.dispose();
    }
  });

  it.each(variants)('fixture ops/linear with forced variant %s', async (_n, t) => {
    const f = await nodeLoader('ops.io.safetensors');
    const [x, w, b] = ['x', 'w', 'b'].map((k) => rt.upload(get(f, `linear.${k}`).data as Float32Array, get(f, `linear.${k}`).shape)) as [Tensor, Tensor, Tensor];
    if (runnable(t, () => linear(rt, x, w, b, { tiles: t }))) {
      const y = linear(rt, x, w, b, { tiles: t });
      // tolerances.json ops.linear, as in test/shared/fixtures-gemm.ts
      expectClose(await rt.read(y), get(f, 'linear.y').data, { atol: 5e-6, rtol: 1e-3 });
      y.dispose();
    }
    for (const v of [x, w, b]) v.dispose();
  });

  it('the CPU adapter gets the subgroup kernel where it can run and pays off, and a forced variant is checked', () => {
    const t = gemmTiles(rt, 4096, 320, 320);
    if (isCpuAdapter(rt)) {
      expect(t.entry).toBe(hasQuadSubgroups(rt) ? 'main_sg' : 'main_direct');
      // tiny problems (the test models) keep the kernel that compiles faster
      expect(gemmTiles(rt, 64, 64, 576).entry).toBe('main_direct');
    } else expect(t.entry).toBe('main');
    expect(gemmTiles(rt, 5, 320, 1 << 20).entry).not.toBe('main_sg');
    const a = rt.zeros([4, 6]);
    const b = rt.zeros([6, 5]);
    const before = rt.dispatches;
    expect(() => matmul(rt, a, b, { tiles: { ...tiles(8, 8, 'main_sg'), perM: 8 } })).toThrow(ArgumentError);
    expect(() => matmul(rt, a, b, { tiles: tiles(8, 2, 'main_sg') })).toThrow(ArgumentError);
    expect(rt.dispatches).toBe(before);
    a.dispose();
    b.dispose();
  });

  it.each(gemmChecks.filter((c) => c.name === 'ops/linear'))('fixture $name', async (check) => {
    const results = await check.run(rt, nodeLoader);
    for (const r of Array.isArray(results) ? results : [results]) expectClose(r.actual, r.expected, r);
  });
});
