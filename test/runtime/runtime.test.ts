import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, OutOfMemoryError, ShaderCompileError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { freshRuntime, testRuntime } from '../helpers/device.js';

const AXPY = /* wgsl */ `
override WG_SIZE: u32 = 64;
struct Params { N: u32, alpha: f32, }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (i >= params.N) { return; }
  y[i] = params.alpha * x[i] + y[i];
}`;

describe('Runtime', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('dispatches with reflected Params and reads back', async () => {
    const n = 1000;
    const x = rt.upload(Float32Array.from({ length: n }, (_, i) => i), [n]);
    const y = rt.upload(Float32Array.from({ length: n }, () => 1), [n]);
    const k = rt.kernel('axpy', AXPY, { WG_SIZE: 64 });
    rt.dispatch(k, [x, y], { N: n, alpha: 2 }, rt.grid(Math.ceil(n / 64)));
    rt.dispatch(k, [x, y], { N: n, alpha: 0.5 }, rt.grid(Math.ceil(n / 64)));
    const out = await rt.read(y);
    for (let i = 0; i < n; i++) expect(out[i]).toBe(1 + 2.5 * i);
    expect(rt.kernel('axpy', AXPY, { WG_SIZE: 64 })).toBe(k);
    x.dispose();
    y.dispose();
  });

  it('many dispatches across uniform chunks and auto-flushes keep their own params', async () => {
    const y = rt.zeros([4]);
    const x = rt.upload([1, 1, 1, 1], [4]);
    const k = rt.kernel('axpy', AXPY, { WG_SIZE: 64 });
    for (let i = 1; i <= 700; i++) rt.dispatch(k, [x, y], { N: 4, alpha: i }, [1]);
    const out = await rt.read(y);
    expect(Array.from(out)).toEqual([245350, 245350, 245350, 245350]);
    x.dispose();
    y.dispose();
  });

  it('folds large grids into 2-D', () => {
    expect(rt.grid(10)).toEqual([10, 1, 1]);
    const [gx, gy] = rt.grid(200_000);
    expect(gx).toBeLessThanOrEqual(65535);
    expect(gx * gy).toBeGreaterThanOrEqual(200_000);
  });

  it('rejects unknown overrides, missing params and wrong binding counts with typed errors', () => {
    expect(() => rt.kernel('axpy', AXPY, { NOPE: 1 })).toThrow(ShaderCompileError);
    const k = rt.kernel('axpy', AXPY);
    const x = rt.zeros([4]);
    expect(() => rt.dispatch(k, [x], { N: 4, alpha: 1 }, [1])).toThrow(ShapeError);
    expect(() => rt.dispatch(k, [x, x], { N: 4 }, [1])).toThrow(ShaderCompileError);
    expect(() => rt.dispatch(k, [x, x], { N: -1, alpha: 1 }, [1])).toThrow(ShaderCompileError);
    expect(() => rt.dispatch(k, [x, x], { N: 4, alpha: 1, beta: 2 }, [1])).toThrow(/no field 'beta'/);
    x.dispose();
  });

  it('scopes free intermediates and keep results; the pool reuses buffers', () => {
    const before = rt.memory().liveBytes;
    const kept = rt.scope(() => {
      rt.zeros([1024]);
      rt.zeros([1024]);
      return rt.zeros([16]);
    });
    expect(rt.memory().liveBytes).toBe(before + 256);
    const buffers = rt.memory().bufferCount;
    rt.scope(() => {
      rt.zeros([1024]);
    });
    expect(rt.memory().bufferCount).toBe(buffers);
    kept.dispose();
    expect(rt.memory().liveBytes).toBe(before);
  });

  it('views share buffers; the buffer returns when the last view is disposed', () => {
    const before = rt.memory().liveBytes;
    const a = rt.zeros([2, 8]);
    const b = a.reshape([16]);
    a.dispose();
    expect(rt.memory().liveBytes).toBe(before + 256);
    b.dispose();
    expect(rt.memory().liveBytes).toBe(before);
    expect(() => a.buffer).toThrow();
  });

  it('f16 storage round-trips through upload and read', async () => {
    const v = [0, 1, -2, 0.5, 65504, 1e-3, 3.14159];
    const t = rt.upload(v, [v.length], { dtype: 'f16' });
    const out = await rt.read(t);
    expect(out[4]).toBe(65504);
    expect(Math.abs(out[6]! - 3.14159)).toBeLessThan(2e-3);
    t.dispose();
  });
});

describe('exclusive jobs', () => {
  it('runs jobs one at a time in FIFO order, even when one fails', async () => {
    const rt = await testRuntime();
    const log: string[] = [];
    const job = (name: string, ms: number, fail = false) =>
      rt.exclusive(name, async () => {
        log.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`end ${name}`);
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([job('a', 30), job('b', 5, true), job('c', 1)]);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });

  it('an abort while queued rejects with AbortError and does not disturb the others', async () => {
    const rt = await testRuntime();
    const ac = new AbortController();
    let ran = false;
    const first = rt.exclusive('first', () => new Promise((r) => setTimeout(() => r('first'), 30)));
    const second = rt.exclusive('second', async () => {
      ran = true;
    }, ac.signal);
    const third = rt.exclusive('third', async () => 'third');
    ac.abort();
    await expect(second).rejects.toBeInstanceOf(AbortError);
    expect(await first).toBe('first');
    expect(await third).toBe('third');
    expect(ran).toBe(false);
  });
});

describe('memory budget', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await freshRuntime({ memoryBudgetBytes: 1 << 20 });
  });
  afterAll(() => rt.destroy());

  it('refuses to exceed the budget with OutOfMemoryError and stays usable', async () => {
    const a = rt.empty([200_000]);
    let err: unknown;
    try {
      rt.empty([200_000]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as OutOfMemoryError).requestedBytes).toBe(800_000);
    a.dispose();
    const b = rt.upload([1, 2, 3], [3]);
    expect(Array.from(await rt.read(b))).toEqual([1, 2, 3]);
    b.dispose();
  });

  it('refuses a single buffer over the binding limit', () => {
    expect(() => rt.empty([2 ** 31])).toThrow(OutOfMemoryError);
  });
});
