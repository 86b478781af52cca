import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, ShaderCompileError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { freshRuntime } from '../helpers/device.js';

// y = alpha * x + y
const AXPY = /* wgsl */ `
struct Params { N: u32, alpha: f32, }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= params.N) { return; }
  y[g.x] = params.alpha * x[g.x] + y[g.x];
}`;

// out = a * s + b (same binding kinds as AXPY plus one read-only input: another bind layout)
const SCALE_ADD = /* wgsl */ `
struct Params { N: u32, s: f32, }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= params.N) { return; }
  out[g.x] = a[g.x] * params.s + b[g.x];
}`;

// y = x + 1 over 64 elements, with the Params binding first: same kinds as AXPY in another order
const ADD1_FIRST = /* wgsl */ `
struct Params { N: u32, }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= params.N) { return; }
  y[g.x] = x[g.x] + 1.0;
}`;

// No Params: doubles 64 values in place.
const DOUBLE = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  y[g.x] = 2.0 * y[g.x];
}`;

const N = 64;
const ramp = (f: number) => Float32Array.from({ length: N }, (_, i) => f * (i + 1));

/** CPU twin of one `step`: ((x·s + b) then y = alpha·t + y, y starting at b). */
function stepCpu(x: Float32Array, b: Float32Array, s: number, alpha: number): Float32Array {
  return Float32Array.from(x, (v, i) => alpha * (v * s + b[i]!) + b[i]!);
}

describe('bind-group cache', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await freshRuntime();
  });
  afterAll(() => rt.destroy());

  /** A two-dispatch "network call" on pooled intermediates, as models make them. */
  const step = (x: Tensor, b: Tensor, s: number, alpha: number): Tensor =>
    rt.scope(() => {
      const t = rt.empty([N], 'f32', 't');
      rt.dispatch(rt.kernel('scale_add', SCALE_ADD), [x, b, t], { N, s }, [1]);
      const y = rt.clone(b, 'y');
      rt.dispatch(rt.kernel('axpy', AXPY), [t, y], { N, alpha }, [1]);
      return y;
    });

  it('repeated identical calls reuse every bind group (pooled buffers recur) and keep their own Params', async () => {
    const xd = ramp(0.5);
    const bd = ramp(-0.25);
    const x = rt.upload(xd, [N]);
    const b = rt.upload(bd, [N]);
    const first = step(x, b, 3, 2);
    expect(Array.from(await rt.read(first))).toEqual(Array.from(stepCpu(xd, bd, 3, 2)));
    first.dispose();
    const s0 = rt.bindGroupStats;
    for (let i = 1; i <= 5; i++) {
      const y = step(x, b, 3 + i, 2 - i);
      expect(Array.from(await rt.read(y))).toEqual(Array.from(stepCpu(xd, bd, 3 + i, 2 - i)));
      y.dispose();
    }
    const s1 = rt.bindGroupStats;
    expect(s1.created).toBe(s0.created);
    expect(s1.hits - s0.hits).toBe(10);
    x.dispose();
    b.dispose();
  });

  it('the pool hands out the oldest free buffer of a size, whatever order buffers were freed in', () => {
    const a = rt.empty([N]);
    const b = rt.empty([N]);
    const c = rt.empty([N]);
    const [ba, bb, bc] = [a.buffer, b.buffer, c.buffer];
    b.dispose();
    c.dispose();
    a.dispose();
    const got = [rt.empty([N]), rt.empty([N]), rt.empty([N])];
    expect(got.map((t) => t.buffer)).toEqual([ba, bb, bc]);
    for (const t of got.reverse()) t.dispose();
    const again = [rt.empty([N]), rt.empty([N])];
    expect(again.map((t) => t.buffer)).toEqual([ba, bb]);
    for (const t of again) t.dispose();
  });

  it('kernels with the same binding kinds share a bind layout, and so their bind groups', async () => {
    const axpy = rt.kernel('axpy', AXPY);
    const axpyOther = rt.kernel('axpy2', AXPY.replace('params.alpha * x[g.x]', 'params.alpha * x[g.x] * 2.0'));
    expect(axpyOther.bindLayout).toBe(axpy.bindLayout);
    expect(rt.kernel('add1_first', ADD1_FIRST).bindLayout).not.toBe(axpy.bindLayout);
    expect(rt.kernel('scale_add', SCALE_ADD).bindLayout).not.toBe(axpy.bindLayout);
    const x = rt.upload(ramp(1), [N]);
    const y = rt.zeros([N]);
    rt.dispatch(axpy, [x, y], { N, alpha: 1 }, [1]);
    const s0 = rt.bindGroupStats;
    rt.dispatch(axpyOther, [x, y], { N, alpha: 1 }, [1]);
    expect(rt.bindGroupStats.hits).toBe(s0.hits + 1);
    rt.dispatch(rt.kernel('add1_first', ADD1_FIRST), [x, y], { N }, [1]);
    expect(rt.bindGroupStats.created).toBe(s0.created + 1);
    expect(Array.from(await rt.read(y))).toEqual(Array.from(ramp(1), (v) => v + 1));
    x.dispose();
    y.dispose();
  });

  it('a kernel without Params binds no uniform', async () => {
    const y = rt.upload(ramp(1), [N]);
    const k = rt.kernel('double', DOUBLE);
    for (let i = 0; i < 3; i++) rt.dispatch(k, [y], null, [1]);
    expect(Array.from(await rt.read(y))).toEqual(Array.from(ramp(8)));
    y.dispose();
  });

  it('a destroyed weight buffer drops its bind groups; a new buffer in its place is bound, not the old one', async () => {
    const k = rt.kernel('axpy', AXPY);
    const y = rt.zeros([N]);
    // Persistent tensors are destroyed on dispose: the next one of the same size may get the same memory.
    const w1 = rt.upload(ramp(1), [N], { persistent: true });
    rt.dispatch(k, [w1, y], { N, alpha: 1 }, [1]);
    await rt.sync();
    const s0 = rt.bindGroupStats;
    w1.dispose();
    const s1 = rt.bindGroupStats;
    expect(s1.invalidated).toBe(s0.invalidated + 1);
    expect(s1.size).toBe(s0.size - 1);
    const w2 = rt.upload(ramp(10), [N], { persistent: true });
    rt.dispatch(k, [w2, y], { N, alpha: 1 }, [1]);
    expect(rt.bindGroupStats.created).toBe(s1.created + 1);
    expect(Array.from(await rt.read(y))).toEqual(Array.from(ramp(11)));
    w2.dispose();
    y.dispose();
  });

  it('trimming the pool drops the bind groups of the destroyed buffers; results stay right', async () => {
    const k = rt.kernel('axpy', AXPY);
    const x = rt.upload(ramp(1), [N]);
    const run = async (alpha: number) => {
      const y = rt.zeros([N]);
      rt.dispatch(k, [x, y], { N, alpha }, [1]);
      const out = await rt.read(y);
      y.dispose();
      return out;
    };
    expect(Array.from(await run(2))).toEqual(Array.from(ramp(2)));
    const s0 = rt.bindGroupStats;
    rt.allocator.trim();
    const s1 = rt.bindGroupStats;
    expect(s1.invalidated).toBeGreaterThan(s0.invalidated);
    expect(Array.from(await run(3))).toEqual(Array.from(ramp(3)));
    expect(rt.bindGroupStats.created).toBeGreaterThan(s1.created);
    x.dispose();
  });

  it('Params larger than one uniform slice are refused with ShaderCompileError', () => {
    const fields = Array.from({ length: 80 }, (_, i) => `f${i}: u32,`).join(' ');
    const big = `struct Params { ${fields} }
@group(0) @binding(0) var<storage, read_write> y: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;
@compute @workgroup_size(1) fn main() { y[0] = params.f0; }`;
    expect(() => rt.kernel('big_params', big)).toThrow(ShaderCompileError);
  });
});

describe('bind-group cache under a small budget and a small cap', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await freshRuntime({ memoryBudgetBytes: 64 * 1024, maxCachedBindGroups: 4 });
  });
  afterAll(() => rt.destroy());

  it('stays within its cap (least recently used dropped first)', async () => {
    const k = rt.kernel('axpy', AXPY);
    const x = rt.upload(ramp(1), [N]);
    const ys = Array.from({ length: 10 }, () => rt.zeros([N]));
    ys.forEach((y, i) => rt.dispatch(k, [x, y], { N, alpha: i }, [1]));
    const s = rt.bindGroupStats;
    expect(s.size).toBe(4);
    expect(s.evicted).toBe(6);
    // The most recent four are still cached; the first one is made again.
    rt.dispatch(k, [x, ys[9]!], { N, alpha: 1 }, [1]);
    expect(rt.bindGroupStats.hits).toBe(s.hits + 1);
    rt.dispatch(k, [x, ys[0]!], { N, alpha: 1 }, [1]);
    expect(rt.bindGroupStats.created).toBe(s.created + 1);
    for (let i = 0; i < 10; i++) {
      const out = await rt.read(ys[i]!);
      const alpha = i + (i === 0 || i === 9 ? 1 : 0);
      expect(Array.from(out)).toEqual(Array.from(ramp(alpha)));
    }
    x.dispose();
    for (const y of ys) y.dispose();
  });

  it('budget trimming (pooled buffers destroyed to fit a new size) drops their bind groups', async () => {
    const k = rt.kernel('axpy', AXPY);
    const M = 4096; // 16 KiB per tensor; the budget holds four
    const big = (f: number) => Float32Array.from({ length: M }, (_, i) => f * (i % 97));
    const x = rt.upload(big(1), [M]);
    const ys = [rt.zeros([M]), rt.zeros([M])];
    for (const y of ys) rt.dispatch(k, [x, y], { N: M, alpha: 1 }, rt.grid(M / 64));
    await rt.sync();
    for (const y of ys) y.dispose(); // 32 KiB pooled
    const s0 = rt.bindGroupStats;
    // A different size that only fits once pooled buffers are destroyed.
    const z = rt.zeros([2 * M]);
    const s1 = rt.bindGroupStats;
    expect(s1.invalidated).toBeGreaterThan(s0.invalidated);
    rt.dispatch(k, [x, z], { N: M, alpha: 2 }, rt.grid(M / 64));
    const out = await rt.read(z);
    for (let i = 0; i < 2 * M; i++) expect(out[i]).toBe(i < M ? 2 * (i % 97) : 0);
    x.dispose();
    z.dispose();
  });
});

describe('bind-group cache off', () => {
  it('maxCachedBindGroups 0 makes a bind group per dispatch and keeps none; a bad cap is an ArgumentError', async () => {
    const rt = await freshRuntime({ maxCachedBindGroups: 0 });
    try {
      const k = rt.kernel('axpy', AXPY);
      const x = rt.upload(ramp(1), [N]);
      const y = rt.zeros([N]);
      for (let i = 0; i < 3; i++) rt.dispatch(k, [x, y], { N, alpha: i + 1 }, [1]);
      expect(Array.from(await rt.read(y))).toEqual(Array.from(ramp(6)));
      const s = rt.bindGroupStats;
      expect(s.created).toBe(3);
      expect(s.hits).toBe(0);
      expect(s.size).toBe(0);
      x.dispose();
      y.dispose();
    } finally {
      rt.destroy();
    }
    await expect(freshRuntime({ maxCachedBindGroups: -1 })).rejects.toBeInstanceOf(ArgumentError);
    await expect(freshRuntime({ maxCachedBindGroups: Number.NaN })).rejects.toBeInstanceOf(ArgumentError);
  });
});
