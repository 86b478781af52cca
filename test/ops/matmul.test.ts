import { beforeAll, describe, expect, it } from 'vitest';
import { F16_COMPUTE_WGSL, f16Compute, gemmCompute, gemmComputeWgsl, setF16Compute, type GemmCompute } from '../../src/ops/gemm-compute.js';
import { gemmTiles, hasQuadSubgroups, isCpuAdapter, linear, matmul, matmulWgslFor, tiles, type Activation, type GemmTiles } from '../../src/ops/matmul.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import { reflectShader } from '../../src/runtime/params.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { abs, expectWithinF16Bound, F16_BOUND, F16_BOUND_FAITHFUL, maxAbsDiff, roundF16, U16 } from '../helpers/f16-compute.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { activationRef, erfRef, matmulRef } from '../reference/matmul.js';
import { get } from '../shared/fixture-check.js';
import { gemmChecks } from '../shared/fixtures-gemm.js';

const F32 = { atol: 1e-4, rtol: 1e-4 };

let rt: Runtime;

describe('matmul', () => {
  beforeAll(async () => {
    rt = await testRuntime();
    // These tests hold the f32 path to f32 tolerances on every device; f16 compute (the default for entry
    // 'main' where the device has shader-f16) has its own tests below, with tolerances for f16 operands.
    setF16Compute(rt, false);
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

// f16 compute: entry 'main' with f16 operand tiles and registers, f32 products and accumulation (see
// test/helpers/f16-compute.ts for the error model and bounds). SwiftShader has no shader-f16, so the kernel
// runs here as its emulation ('f16-emulated': the same operand rounding on f32 tiles); where the device has
// shader-f16 the real f16 kernel runs too.
describe('matmul f16 compute', () => {
  beforeAll(async () => {
    rt = await testRuntime();
  });

  /** The instantiations to run: the emulation everywhere, the f16 kernel where the device has shader-f16. */
  const computes = (): GemmCompute[] => (rt.hasF16 ? ['f16-emulated', 'f16'] : ['f16-emulated']);
  /** Bound factor on S = Σ|a·b| per instantiation (the hardware may round conversions either way). */
  const bound = (c: GemmCompute) => (c === 'f16' ? F16_BOUND_FAITHFUL : F16_BOUND);

  it('the f16 kernel text enables f16 first and reflects the bindings, Params and overrides of the f32 one', () => {
    const f32 = matmulWgslFor('f32');
    const f16 = matmulWgslFor('f16');
    expect(f16.startsWith('enable f16;\n')).toBe(true);
    expect(f16).toMatch(/^alias ct = f16;$/m);
    expect(f32).toMatch(/^alias ct = f32;$/m);
    expect(f32).not.toMatch(/^\s*enable f16;/m);
    // the operand tiles are vec4<ct>: f16 in the f16 text
    expect(f16).toMatch(/var<workgroup> aTile: array<vec4<ct>, A_LEN>/);
    const want = reflectShader('matmul', f32);
    for (const [name, code] of [['matmul+f16', f16], ['matmul+f16-emulated', matmulWgslFor('f16-emulated')]] as const) {
      const got = reflectShader(name, code);
      expect(got.storage, name).toEqual(want.storage);
      expect(got.params, name).toEqual(want.params);
      expect([...got.overrides].sort(), name).toEqual([...want.overrides].sort());
      expect(got.entryPoints, name).toEqual(want.entryPoints);
    }
  });

  it('the device compiles the f16 text where it has shader-f16; elsewhere it rejects only the f16 extension', async () => {
    rt.device.pushErrorScope('validation');
    const module = rt.device.createShaderModule({ label: 'matmul+f16', code: matmulWgslFor('f16') });
    await rt.device.popErrorScope();
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
    if (rt.hasF16) expect(errors.map((m) => m.message)).toEqual([]);
    else {
      expect(errors.length).toBeGreaterThan(0);
      for (const m of errors) expect(`${m.lineNum}: ${m.message}`).toMatch(/^1: .*'f16'/);
    }
  });

  it('selection: f16 for entry main where the device has shader-f16 and the switch allows it', () => {
    const gpu = { hasF16: true };
    const noF16 = { hasF16: false };
    // default on with shader-f16, and only for the workgroup-tiled entry point
    expect(f16Compute(gpu)).toBe(true);
    expect(gemmCompute(gpu, 'matmul', 'main')).toBe('f16');
    expect(gemmComputeWgsl(gemmCompute(gpu, 'matmul', 'main'))).toBe(F16_COMPUTE_WGSL);
    expect(matmulWgslFor(gemmCompute(gpu, 'matmul', 'main')).startsWith('enable f16;')).toBe(true);
    expect(gemmCompute(gpu, 'matmul', 'main_direct')).toBe('f32');
    expect(gemmCompute(gpu, 'matmul', 'main_sg')).toBe('f32');
    setF16Compute(gpu, false);
    expect(gemmCompute(gpu, 'matmul', 'main')).toBe('f32');
    expect(matmulWgslFor(gemmCompute(gpu, 'matmul', 'main'))).toBe(matmulWgslFor('f32'));
    setF16Compute(gpu, true);
    expect(gemmCompute(gpu, 'matmul', 'main')).toBe('f16');
    // without shader-f16: f32, and the switch refuses to turn f16 on
    expect(f16Compute(noF16)).toBe(false);
    expect(gemmCompute(noF16, 'matmul', 'main')).toBe('f32');
    expect(() => setF16Compute(noF16, true)).toThrow(ArgumentError);
    setF16Compute(noF16, false);
    expect(() => setF16Compute(gpu, 1 as unknown as boolean)).toThrow(ArgumentError);
    // forced instantiations are checked against the device and the entry point
    expect(gemmCompute(noF16, 'matmul', 'main', 'f16-emulated')).toBe('f16-emulated');
    expect(gemmCompute(gpu, 'matmul', 'main_sg', 'f32')).toBe('f32');
    expect(() => gemmCompute(noF16, 'matmul', 'main', 'f16')).toThrow(ArgumentError);
    expect(() => gemmCompute(gpu, 'matmul', 'main_direct', 'f16')).toThrow(ArgumentError);
    expect(() => gemmCompute(gpu, 'matmul', 'main', 'f64' as GemmCompute)).toThrow(ArgumentError);
    // this device
    if (rt.hasF16) {
      setF16Compute(rt, true);
      expect(gemmCompute(rt, 'matmul', 'main')).toBe('f16');
      setF16Compute(rt, false);
    } else {
      expect(gemmCompute(rt, 'matmul', 'main')).toBe('f32');
      expect(() => setF16Compute(rt, true)).toThrow(ArgumentError);
    }
  });

  it('matmul and linear reject a bad forced instantiation with typed errors before any GPU work', () => {
    const a = rt.zeros([4, 6]);
    const b = rt.zeros([6, 5]);
    const before = rt.dispatches;
    expect(() => matmul(rt, a, b, { tiles: tiles(8, 8, 'main_direct'), compute: 'f16-emulated' })).toThrow(ArgumentError);
    expect(() => matmul(rt, a, b, { tiles: tiles(16, 16, 'main'), compute: 'half' as GemmCompute })).toThrow(ArgumentError);
    expect(() => linear(rt, a, rt.zeros([5, 6]), undefined, { tiles: tiles(8, 8, 'main_direct'), compute: 'f16-emulated' })).toThrow(ArgumentError);
    if (!rt.hasF16) expect(() => matmul(rt, a, b, { tiles: tiles(16, 16, 'main'), compute: 'f16' })).toThrow(ArgumentError);
    expect(rt.dispatches).toBe(before);
    a.dispose();
    b.dispose();
  });

  const mains: [string, GemmTiles][] = [
    ['16x16', tiles(16, 16, 'main')],
    ['4x32', tiles(4, 32, 'main')],
    ['32x4', tiles(32, 4, 'main')],
  ];
  /** gelu's derivative is below 1.13: the bound on S passes through the epilogue scaled by |alpha| · 1.13. */
  const GELU_LIPSCHITZ = 1.13;

  it.each(mains)('main %s: the twin cases match the twin on f16-rounded operands (f32 tol) and the unrounded twin (f16 bound)', async (_n, t) => {
    const runs: [number, number, number, number, boolean, boolean, boolean][] = [
      // Z, M, K, N, transB, f16-stored b, epilogue (bias + gelu + residual, alpha 0.5)
      [2, 37, 19, 70, false, false, true],
      [1, 70, 33, 45, true, true, true],
      [3, 5, 1, 9, false, false, true],
      [1, 133, 9, 70, true, false, true],
      [1, 1, 1, 1, false, false, false],
      [1, 33, 17, 65, false, false, false],
      [1, 67, 29, 30, true, false, false],
      [2, 70, 130, 9, true, false, false],
      [1, 3, 45, 131, true, false, false],
      [1, 21, 75, 33, false, true, false],
    ];
    for (const c of computes()) {
      let worst = 0;
      for (const [Z, M, K, N, transB, f16, epi] of runs) {
        const label = `${c} [${Z},${M},${K}]x${N}${transB ? 'ᵀ' : ''}`;
        const bShape = transB ? [N, K] : [K, N];
        const av = randn(Z * M * K, 40, 2);
        let bv = randn(K * N, 41, 1 / Math.sqrt(K));
        if (f16) bv = roundF16(bv);
        const bias = randn(N, 42);
        const res = randn(Z * M * N, 43);
        const alpha = epi ? 0.5 : 1;
        const ref = epi ? { transB, bias, residual: res, activation: 'gelu' as const, alpha } : { transB };
        const a = rt.upload(av, [Z, M, K]);
        const b = rt.upload(bv, bShape, { dtype: f16 ? 'f16' : 'f32' });
        const bt = rt.upload(bias, [N]);
        const rs = rt.upload(res, [Z, M, N]);
        const o = epi ? { transB, bias: bt, residual: rs, activation: 'gelu' as const, alpha } : { transB };
        const y = matmul(rt, a, b, { ...o, tiles: t, compute: c });
        const got = await rt.read(y);
        if (c === 'f16-emulated') expectClose(got, matmulRef(roundF16(av), [Z, M, K], roundF16(bv), bShape, ref), F32, label);
        const S = matmulRef(abs(av), [Z, M, K], abs(bv), bShape, { transB }).map((s) => s * alpha * (epi ? GELU_LIPSCHITZ : 1));
        worst = Math.max(worst, expectWithinF16Bound(got, matmulRef(av, [Z, M, K], bv, bShape, ref), S, F32, bound(c), label));
        for (const x of [a, b, bt, rs, y]) x.dispose();
      }
      // The operands were rounded: the error relative to S is far above f32's ~2^-24 scale.
      expect(worst).toBeGreaterThan(2 ** -16);
    }
  });

  it.each(mains)('main %s: fixture ops/linear within the f16 bound, and as the twin on f16-rounded operands', async (_n, t) => {
    const f = await nodeLoader('ops.io.safetensors');
    const [xv, wv, bv] = ['x', 'w', 'b'].map((k) => get(f, `linear.${k}`).data as Float32Array) as [Float32Array, Float32Array, Float32Array];
    const [x, w, b] = ['x', 'w', 'b'].map((k) => rt.upload(get(f, `linear.${k}`).data as Float32Array, get(f, `linear.${k}`).shape)) as [Tensor, Tensor, Tensor];
    const [N, K] = get(f, 'linear.w').shape as [number, number];
    const R = xv.length / K;
    // tolerances.json ops.linear (the f32 tolerance of the fixture), as in test/shared/fixtures-gemm.ts
    const tol = { atol: 5e-6, rtol: 1e-3 };
    const y32 = linear(rt, x, w, b, { tiles: t, compute: 'f32' });
    const got32 = await rt.read(y32);
    for (const c of computes()) {
      const y = linear(rt, x, w, b, { tiles: t, compute: c });
      const got = await rt.read(y);
      if (c === 'f16-emulated') expectClose(got, matmulRef(roundF16(xv), [R, K], roundF16(wv), [N, K], { transB: true, bias: bv }), tol, c);
      const S = matmulRef(abs(xv), [R, K], abs(wv), [N, K], { transB: true });
      expectWithinF16Bound(got, get(f, 'linear.y').data, S, tol, bound(c), `${c} ops/linear`);
      // f16 operands change the result (the emulation is not the f32 kernel)
      expect(maxAbsDiff(got, got32)).toBeGreaterThan(U16 / 64);
      y.dispose();
    }
    for (const v of [x, w, b, y32]) v.dispose();
  });
});
