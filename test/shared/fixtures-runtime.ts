/**
 * Runtime smoke checks: fixture bytes → upload → a tiny kernel → read, against the same arithmetic on the
 * CPU. They prove the whole path (loader, reflected Params, 2-D grid, f16 weight unpacking) in Node and in
 * the page, independent of any op.
 */
import { f16ArrayToF32, f32ArrayToF16 } from '../../src/runtime/dtype.js';
import { get, type FixtureCheck } from './fixture-check.js';

const WG_SIZE = 64;

// y = alpha·x + beta · loadW(i): exercises a uniform Params slice and both weight storage formats.
const AXPBW = /* wgsl */ `
override WG_SIZE: u32 = 64;
override W_F16: bool = false;
struct Params { N: u32, alpha: f32, beta: f32, }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
fn loadW(i: u32) -> f32 {
  if (W_F16) {
    let pair = unpack2x16float(w[i / 2u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
  }
  return bitcast<f32>(w[i]);
}
@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (i >= params.N) { return; }
  y[i] = params.alpha * x[i] + params.beta * loadW(i);
}`;

function axpbwCheck(dtype: 'f32' | 'f16'): FixtureCheck {
  return {
    name: `runtime/axpbw-${dtype}`,
    async run(rt, load) {
      const ops = await load('ops.io.safetensors');
      // An odd length exercises the half-filled last u32 of f16 storage.
      const x = get(ops, 'silu.x').data.subarray(0, 149) as Float32Array;
      const w = get(ops, 'gelu_erf.x').data.subarray(0, 149) as Float32Array;
      const n = x.length;
      const alpha = 0.75;
      const beta = -1.25;
      const wStored = dtype === 'f16' ? f16ArrayToF32(f32ArrayToF16(w)) : w;
      const expected = new Float32Array(n);
      for (let i = 0; i < n; i++) expected[i] = alpha * x[i]! + beta * wStored[i]!;
      return rt.scopeAsync(async () => {
        const xt = rt.upload(x, [n]);
        const wt = rt.upload(w, [n], { dtype });
        const yt = rt.empty([n]);
        const k = rt.kernel('runtime-axpbw', AXPBW, { WG_SIZE, W_F16: dtype === 'f16' });
        rt.dispatch(k, [xt, wt, yt], { N: n, alpha, beta }, rt.grid(Math.ceil(n / WG_SIZE)));
        // One f32 multiply-add each side: a few ulp of |y| ≤ ~10.
        return { actual: await rt.read(yt), expected, atol: 1e-6, rtol: 1e-6 };
      });
    },
  };
}

export const runtimeChecks: FixtureCheck[] = [axpbwCheck('f32'), axpbwCheck('f16')];
