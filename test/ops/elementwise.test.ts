import { beforeAll, describe, expect, it } from 'vitest';
import { add, addPerChannel, axpby, concat, geglu, gelu, geluTanh, mul, quickGelu, scale, silu, transpose } from '../../src/ops/elementwise.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { concatRef } from '../reference/concat.js';
import { addPerChannelRef, gegluRef, geluRef, geluTanhRef, mapRef, quickGeluRef, siluRef } from '../reference/elementwise.js';
import { transposeRef } from '../reference/transpose.js';
import { miscChecks } from '../shared/fixtures-misc.js';

const TOL = { atol: 1e-5, rtol: 1e-4 };
// erf approximation (A&S 7.1.26, |Δerf| ≤ 1.5e-7) times 0.5·|x| ≤ 5 for |x| ≤ 12·… : absolute error ≤ ~1e-6.
const GELU_TOL = { atol: 2e-6, rtol: 1e-5 };

describe('elementwise', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  const read = (f: () => Tensor): Promise<Float32Array> => rt.scopeAsync(async () => rt.read(f()));

  it('add, mul, axpby, scale on awkward sizes', async () => {
    for (const n of [1, 3, 7, 1001, 4099]) {
      const a = randn(n, n);
      const b = randn(n, n + 1);
      const up = (v: Float32Array): Tensor => rt.upload(v, [n]);
      expectClose(await read(() => add(rt, up(a), up(b))), Float64Array.from(a, (v, i) => v + b[i]!), TOL, `add ${n}`);
      expectClose(await read(() => mul(rt, up(a), up(b))), Float64Array.from(a, (v, i) => v * b[i]!), TOL, `mul ${n}`);
      expectClose(await read(() => axpby(rt, 0.7, up(a), -1.3, up(b))), Float64Array.from(a, (v, i) => 0.7 * v - 1.3 * b[i]!), TOL, `axpby ${n}`);
      expectClose(await read(() => scale(rt, up(a), 2.5)), Float64Array.from(a, (v) => 2.5 * v), TOL, `scale ${n}`);
    }
  });

  it('activations match the float64 twins over a wide range (incl. ±30)', async () => {
    const n = 2003;
    const x = Float32Array.from({ length: n }, (_, i) => -30 + (60 * i) / (n - 1));
    x.set(randn(400, 5, 3), 800);
    const xt = (): Tensor => rt.upload(x, [n]);
    expectClose(await read(() => silu(rt, xt())), mapRef(x, siluRef), TOL, 'silu');
    expectClose(await read(() => gelu(rt, xt())), mapRef(x, geluRef), GELU_TOL, 'gelu');
    expectClose(await read(() => geluTanh(rt, xt())), mapRef(x, geluTanhRef), TOL, 'geluTanh');
    expectClose(await read(() => quickGelu(rt, xt())), mapRef(x, quickGeluRef), TOL, 'quickGelu');
  });

  it('addPerChannel (H·W % 4 == 0 and not) and geglu (F % 4 == 0 and not)', async () => {
    for (const shape of [[2, 3, 4, 4], [2, 5, 3, 3], [1, 7]]) {
      const [N, C] = shape as [number, number];
      const HW = shape.slice(2).reduce((a, b) => a * b, 1);
      const x = randn(N * C * HW, 9);
      const b = randn(N * C, 10);
      expectClose(await read(() => addPerChannel(rt, rt.upload(x, shape), rt.upload(b, [N, C]))), addPerChannelRef(x, b, HW), TOL, `addPerChannel [${shape}]`);
    }
    for (const [R, F] of [[3, 8], [5, 7], [1, 1280]]) {
      const x = randn(R! * 2 * F!, 12);
      expectClose(await read(() => geglu(rt, rt.upload(x, [R!, 2 * F!]))), gegluRef(x, F!), GELU_TOL, `geglu [${R}, ${2 * F!}]`);
    }
  });

  it('folds grids beyond 65,535 workgroups (addPerChannel scalar path, 16.8 M elements)', async () => {
    const HW = 65_536 * 256 + 3;
    const x = new Float32Array(HW).map((_, i) => (i % 1000) * 0.001);
    const got = await read(() => addPerChannel(rt, rt.upload(x, [1, 1, HW]), rt.upload([2], [1, 1])));
    for (const i of [0, 1, 65_535 * 256, 65_536 * 256, HW - 1]) expect(got[i]).toBeCloseTo(x[i]! + 2, 5);
    expectClose(got, Float64Array.from(x, (v) => v + 2), TOL, 'folded');
  });

  it('concat along every dim (buffer-copy and kernel paths) and transpose', async () => {
    const shapes = [[2, 3, 4, 5], [2, 1, 4, 5], [2, 6, 4, 5]];
    const datas = shapes.map((s, i) => randn(s.reduce((a, b) => a * b, 1), 30 + i));
    const got = await read(() => concat(rt, shapes.map((s, i) => rt.upload(datas[i]!, s)), 1));
    expectClose(got, concatRef(shapes.map((s, i) => ({ data: datas[i]!, shape: s })), 1), { atol: 0, rtol: 0 }, 'concat dim 1 (copies)');
    for (const dim of [0, 2, -1]) {
      const d = dim < 0 ? 4 + dim : dim;
      const sh = [0, 1].map((k) => [3, 4, 5, 6].map((v, j) => (j === d ? v + k : v)));
      const ds = sh.map((s, i) => randn(s.reduce((a, b) => a * b, 1), 40 + i));
      const g = await read(() => concat(rt, sh.map((s, i) => rt.upload(ds[i]!, s)), dim));
      expectClose(g, concatRef(sh.map((s, i) => ({ data: ds[i]!, shape: s })), d), { atol: 0, rtol: 0 }, `concat dim ${dim}`);
    }
    for (const [B, M, N] of [[1, 1, 1], [2, 33, 47], [1, 320, 64 * 64 / 16]]) {
      const x = randn(B! * M! * N!, 50);
      expectClose(await read(() => transpose(rt, rt.upload(x, [B!, M!, N!]))), transposeRef(x, B!, M!, N!), { atol: 0, rtol: 0 }, `transpose [${B}, ${M}, ${N}]`);
    }
  });

  it('rejects bad inputs with typed errors', () => {
    rt.scope(() => {
      const a = rt.zeros([4]);
      expect(() => add(rt, a, rt.zeros([5]))).toThrow(ShapeError);
      expect(() => axpby(rt, NaN, a, 1, a)).toThrow(ArgumentError);
      expect(() => scale(rt, a, Infinity)).toThrow(ArgumentError);
      expect(() => silu(rt, rt.zeros([4], 'f16'))).toThrow(ShapeError);
      expect(() => geglu(rt, rt.zeros([2, 5]))).toThrow(ShapeError);
      expect(() => addPerChannel(rt, rt.zeros([2, 3, 4]), rt.zeros([3]))).toThrow(ShapeError);
      expect(() => concat(rt, [], 0)).toThrow(ArgumentError);
      expect(() => concat(rt, [rt.zeros([2, 3]), rt.zeros([3, 3])], 1)).toThrow(ShapeError);
      expect(() => concat(rt, [a], 1)).toThrow(ArgumentError);
      expect(() => transpose(rt, rt.zeros([2, 3]))).toThrow(ShapeError);
    });
  });

  it('fixtures: silu, gelu_erf, gelu_tanh, quick_gelu, geglu', async () => {
    const names = ['ops/silu', 'ops/gelu_erf', 'ops/gelu_tanh', 'ops/quick_gelu', 'ops/geglu'];
    for (const c of miscChecks.filter((c) => names.includes(c.name))) {
      const r = (await c.run(rt, nodeLoader)) as { actual: Float32Array; expected: Float32Array; atol: number; rtol: number };
      console.info(`${c.name}: max abs err ${expectClose(r.actual, r.expected, r, c.name).maxAbs.toExponential(2)}`);
    }
    expect(miscChecks.filter((c) => names.includes(c.name))).toHaveLength(5);
  });
});
