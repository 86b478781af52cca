import { beforeAll, describe, expect, it } from 'vitest';
import { conv2d, conv2dWgslFor, type Conv2dOptions } from '../../src/ops/conv2d.js';
import { gemmCompute, setF16Compute, type GemmCompute } from '../../src/ops/gemm-compute.js';
import { hasQuadSubgroups, tiles, type GemmTiles } from '../../src/ops/matmul.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import { f16ToF32, f32ToF16 } from '../../src/runtime/dtype.js';
import { reflectShader } from '../../src/runtime/params.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { abs, expectWithinF16Bound, F16_BOUND, F16_BOUND_FAITHFUL, maxAbsDiff, roundF16, U16 } from '../helpers/f16-compute.js';
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

// The fixture cases of ops.io.safetensors through every forced variant (tolerances.json ops.<name>, as in
// test/shared/fixtures-gemm.ts); the default variant runs them below.
const fixtures: [string, { atol: number; rtol: number }, Conv2dOptions][] = [
  ['conv3x3', { atol: 2e-5, rtol: 1e-3 }, { padding: 1 }],
  ['conv3x3_s2_asym', { atol: 1e-5, rtol: 1e-3 }, { stride: 2, padding: [0, 1, 0, 1] }],
  ['conv3x3_s2_pad1', { atol: 1e-5, rtol: 1e-3 }, { stride: 2, padding: 1 }],
  ['conv1x1', { atol: 5e-6, rtol: 1e-3 }, { padding: 0 }],
];

describe('conv2d', () => {
  beforeAll(async () => {
    rt = await testRuntime();
    // These tests hold the f32 path to f32 tolerances on every device; f16 compute (the default for entry
    // 'main' where the device has shader-f16) has its own tests below, with tolerances for f16 operands.
    setF16Compute(rt, false);
  });

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

// f16 compute: entry 'main' with f16 operand tiles and registers, f32 products and accumulation (see
// test/helpers/f16-compute.ts for the error model and bounds). SwiftShader has no shader-f16, so the kernel
// runs here as its emulation ('f16-emulated': the same operand rounding on f32 tiles); where the device has
// shader-f16 the real f16 kernel runs too. The selection itself is tested in test/ops/matmul.test.ts.
describe('conv2d f16 compute', () => {
  beforeAll(async () => {
    rt = await testRuntime();
  });

  /** The instantiations to run: the emulation everywhere, the f16 kernel where the device has shader-f16. */
  const computes = (): GemmCompute[] => (rt.hasF16 ? ['f16-emulated', 'f16'] : ['f16-emulated']);
  /** Bound factor on S = Σ|w·x| per instantiation (the hardware may round conversions either way). */
  const bound = (c: GemmCompute) => (c === 'f16' ? F16_BOUND_FAITHFUL : F16_BOUND);

  it('the f16 kernel text enables f16 first and reflects the bindings, Params and overrides of the f32 one', () => {
    const f32 = conv2dWgslFor('f32');
    const f16 = conv2dWgslFor('f16');
    expect(f16.startsWith('enable f16;\n')).toBe(true);
    expect(f16).toMatch(/^alias ct = f16;$/m);
    expect(f32).toMatch(/^alias ct = f32;$/m);
    expect(f32).not.toMatch(/^\s*enable f16;/m);
    expect(f16).toMatch(/var<workgroup> bTile: array<vec4<ct>, B_LEN>/);
    const want = reflectShader('conv2d', f32);
    for (const [name, code] of [['conv2d+f16', f16], ['conv2d+f16-emulated', conv2dWgslFor('f16-emulated')]] as const) {
      const got = reflectShader(name, code);
      expect(got.storage, name).toEqual(want.storage);
      expect(got.params, name).toEqual(want.params);
      expect([...got.overrides].sort(), name).toEqual([...want.overrides].sort());
      expect(got.entryPoints, name).toEqual(want.entryPoints);
    }
  });

  it('the device compiles the f16 text where it has shader-f16; elsewhere it rejects only the f16 extension', async () => {
    rt.device.pushErrorScope('validation');
    const module = rt.device.createShaderModule({ label: 'conv2d+f16', code: conv2dWgslFor('f16') });
    await rt.device.popErrorScope();
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
    if (rt.hasF16) expect(errors.map((m) => m.message)).toEqual([]);
    else {
      expect(errors.length).toBeGreaterThan(0);
      for (const m of errors) expect(`${m.lineNum}: ${m.message}`).toMatch(/^1: .*'f16'/);
    }
  });

  it('selects f16 for entry main with shader-f16, and rejects a bad forced instantiation before any GPU work', () => {
    expect(gemmCompute({ hasF16: true }, 'conv2d', 'main')).toBe('f16');
    expect(gemmCompute({ hasF16: true }, 'conv2d', 'main_sg')).toBe('f32');
    expect(gemmCompute({ hasF16: false }, 'conv2d', 'main')).toBe('f32');
    const x = rt.zeros([1, 4, 8, 8]);
    const w = rt.zeros([6, 4, 3, 3]);
    const before = rt.dispatches;
    expect(() => conv2d(rt, x, w, undefined, { tiles: tiles(8, 8, 'main_direct'), compute: 'f16-emulated' })).toThrow(ArgumentError);
    expect(() => conv2d(rt, x, w, undefined, { tiles: tiles(16, 16, 'main'), compute: 'bf16' as GemmCompute })).toThrow(ArgumentError);
    if (!rt.hasF16) expect(() => conv2d(rt, x, w, undefined, { tiles: tiles(16, 16, 'main'), compute: 'f16' })).toThrow(ArgumentError);
    expect(rt.dispatches).toBe(before);
    x.dispose();
    w.dispose();
  });

  const mains: [string, GemmTiles][] = [
    ['16x16', tiles(16, 16, 'main')],
    ['4x32', tiles(4, 32, 'main')],
  ];

  it.each(mains)('main %s: the twin cases match the twin on f16-rounded operands (f32 tol) and the unrounded twin (f16 bound)', async (_n, t) => {
    // the geometry table of the float64-twin tests above, and the forced-variant runs
    const runs: [number[], number[], Conv2dOptions & { f16?: boolean; bias?: boolean; res?: boolean }][] = [
      ...cases.map(([, xs, ws, o]) => [xs, ws, o] as [number[], number[], Conv2dOptions & { f16?: boolean; bias?: boolean; res?: boolean }]),
      [[2, 5, 10, 9], [9, 5, 3, 3], { stride: 2, padding: [0, 1, 0, 1], bias: true, res: true }],
      [[1, 3, 5, 6], [10, 3, 3, 3], { padding: 1, upsample2x: true, f16: true, bias: true }],
      [[2, 5, 6, 16], [18, 5, 3, 3], { padding: [0, 1, 2, 0], res: true }],
      [[1, 3, 10, 10], [17, 3, 3, 3], {}],
    ];
    for (const c of computes()) {
      let worst = 0;
      for (const [xs, ws, o] of runs) {
        const label = `${c} [${xs}] * [${ws}]`;
        const xv = randn(xs.reduce((p, d) => p * d, 1), 50, 2);
        let wv = randn(ws.reduce((p, d) => p * d, 1), 51, 1 / Math.sqrt(ws[1]! * ws[2]! * ws[3]!));
        if (o.f16) wv = roundF16(wv);
        const bv = o.bias ? randn(ws[0]!, 52, 0.1) : undefined;
        const S = conv2dRef(abs(xv), xs, abs(wv), ws, undefined, geo(o));
        const rv = o.res ? randn(S.data.length, 53) : undefined;
        const x = rt.upload(xv, xs);
        const w = rt.upload(wv, ws, { dtype: o.f16 ? 'f16' : 'f32' });
        const b = bv ? rt.upload(bv, [ws[0]!]) : undefined;
        const r = rv ? rt.upload(rv, S.shape) : undefined;
        const y = conv2d(rt, x, w, b, { ...geo(o), residual: r, tiles: t, compute: c });
        const got = await rt.read(y);
        if (c === 'f16-emulated') {
          expectClose(got, conv2dRef(roundF16(xv), xs, roundF16(wv), ws, bv, { ...geo(o), residual: rv }).data, F32, label);
        }
        const want = conv2dRef(xv, xs, wv, ws, bv, { ...geo(o), residual: rv }).data;
        worst = Math.max(worst, expectWithinF16Bound(got, want, S.data, F32, bound(c), label));
        for (const v of [x, w, b, r, y]) v?.dispose();
      }
      // The operands were rounded: the error relative to S is far above f32's ~2^-24 scale.
      expect(worst).toBeGreaterThan(2 ** -16);
    }
  });

  it.each(mains)('main %s: fixtures ops/conv* within the f16 bound, and as the twin on f16-rounded operands', async (_n, t) => {
    const f = await nodeLoader('ops.io.safetensors');
    for (const [name, tol, o] of fixtures) {
      const [xt, wt, bt] = ['x', 'w', 'b'].map((k) => get(f, `${name}.${k}`));
      const [xv, wv, bv] = [xt, wt, bt].map((v) => v!.data as Float32Array) as [Float32Array, Float32Array, Float32Array];
      const [x, w, b] = [xt, wt, bt].map((v) => rt.upload(v!.data as Float32Array, v!.shape)) as [Tensor, Tensor, Tensor];
      const y32 = conv2d(rt, x, w, b, { ...o, tiles: t, compute: 'f32' });
      const got32 = await rt.read(y32);
      const S = conv2dRef(abs(xv), xt!.shape, abs(wv), wt!.shape, undefined, geo(o)).data;
      for (const c of computes()) {
        const y = conv2d(rt, x, w, b, { ...o, tiles: t, compute: c });
        const got = await rt.read(y);
        // tolerances.json ops.<name> (the fixture's f32 tolerance), as in test/shared/fixtures-gemm.ts
        if (c === 'f16-emulated') expectClose(got, conv2dRef(roundF16(xv), xt!.shape, roundF16(wv), wt!.shape, bv, geo(o)).data, tol, `${c} ${name}`);
        expectWithinF16Bound(got, get(f, `${name}.y`).data, S, tol, bound(c), `${c} ${name}`);
        // f16 operands change the result (the emulation is not the f32 kernel)
        expect(maxAbsDiff(got, got32), `${c} ${name}`).toBeGreaterThan(U16 / 64);
        y.dispose();
      }
      for (const v of [x, w, b, y32]) v.dispose();
    }
  });
});
