/**
 * sampleFlow against flow.io: every trajectory point of euler / midpoint / rk4 (torchdiffeq's 3/8 rule) at 3, 5 and 10
 * grid points, the evaluation counts of flow.json, the float32 time grid, lincomb, abort, buffer hygiene and typed errors.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CfmUNet } from '../../src/models/cfm-unet.js';
import { lincomb, sampleFlow } from '../../src/pipelines/flow-matching.js';
import { AbortError, ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { nodeGPU } from '../../src/node/gpu.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import { FIXTURES, fx, loadFixture, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { flowRun, loadTinyCfm } from '../shared/fixtures-cfm.js';

// dawn.node (webgpu 0.6.2) crashes once the GPU object that made a device is garbage-collected, and
// testRuntime() keeps only the device: this file holds the GPU for as long as it runs.
let gpu: GPU | undefined;
let shared: Promise<Runtime> | undefined;
function testRuntime(): Promise<Runtime> {
  shared ??= nodeGPU().then((g) => createRuntime({ gpu: (gpu = g), log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }));
  return shared;
}


const FLOW = JSON.parse(readFileSync(FIXTURES + 'flow.json', 'utf8')) as { runs: Record<string, { method: 'euler' | 'midpoint' | 'rk4'; num_steps: number; net_evals: number }> };

describe('sampleFlow on flow.io', () => {
  let rt: Runtime;
  let net: CfmUNet;
  beforeAll(async () => {
    rt = await testRuntime();
    net = await loadTinyCfm(rt, nodeLoader);
    return () => net.dispose();
  });

  it.each(Object.entries(FLOW.runs))('%s: every grid point, NFE and t grid', async (name, run) => {
    const io = loadFixture('flow.io.safetensors');
    const { traj, nfe, times } = await flowRun(rt, net, io, run.method, run.num_steps);
    expect(nfe).toBe(run.net_evals);
    expect(times).toEqual([...fx('flow.io.safetensors', `${name}.t_grid`).data]);
    const want = fx('flow.io.safetensors', `${name}.traj`).data;
    expect(traj.length).toBe(run.num_steps);
    const per = want.length / run.num_steps;
    const tol = tolerance('flow', `${name}.x1`);
    traj.forEach((x, i) => expectClose(x, want.subarray(i * per, (i + 1) * per), tol, `${name} traj[${i}]`));
    expectClose(traj[traj.length - 1]!, fx('flow.io.safetensors', `${name}.x1`).data, tol, `${name} x1`);
  });

  it('leaves no buffers behind and does not dispose its inputs', async () => {
    const x0 = fx('flow.io.safetensors', 'x0');
    const ctx = fx('flow.io.safetensors', 'context');
    const a = rt.upload(x0.data, x0.shape);
    const c = rt.upload(ctx.data, ctx.shape);
    (await sampleFlow(rt, net, a, c, { method: 'euler', numSteps: 2 })).dispose(); // warm-up (kernels, tables)
    await rt.sync();
    const before = rt.memory().liveBytes;
    const x1 = await sampleFlow(rt, net, a, c, { method: 'midpoint', numSteps: 3 });
    x1.dispose();
    await rt.sync();
    expect(rt.memory().liveBytes).toBe(before);
    expect(a.isDisposed || c.isDisposed).toBe(false);
    a.dispose();
    c.dispose();
  });

  it('aborts between network evaluations with an AbortError and frees its buffers', async () => {
    const x0 = fx('flow.io.safetensors', 'x0');
    const a = rt.upload(x0.data, x0.shape);
    const c = rt.upload(x0.data, x0.shape);
    await rt.sync();
    const before = rt.memory().liveBytes;
    const ctl = new AbortController();
    const p = sampleFlow(rt, net, a, c, { method: 'euler', numSteps: 10, signal: ctl.signal, onProgress: (k) => k === 3 && ctl.abort() });
    await expect(p).rejects.toThrow(AbortError);
    await rt.sync();
    expect(rt.memory().liveBytes).toBe(before);
    a.dispose();
    c.dispose();
  });

  it('typed errors for bad arguments, before any GPU work', async () => {
    const x = rt.upload(new Float32Array(4 * 256), [1, 4, 16, 16]);
    const before = rt.dispatches;
    await expect(sampleFlow(rt, net, x, x, { numSteps: 1 })).rejects.toThrow(ArgumentError);
    await expect(sampleFlow(rt, net, x, x, { numSteps: 2.5 })).rejects.toThrow(ArgumentError);
    await expect(sampleFlow(rt, net, x, x, { numSteps: 5, method: 'heun' as 'euler' })).rejects.toThrow(ArgumentError);
    await expect(sampleFlow(rt, net, rt.upload(new Float32Array(3 * 256), [1, 3, 16, 16]), x, { numSteps: 5 })).rejects.toThrow(ShapeError);
    await expect(sampleFlow(rt, net, x, rt.upload(new Float32Array(4 * 64), [1, 4, 8, 8]), { numSteps: 5 })).rejects.toThrow(ShapeError);
    await expect(sampleFlow(rt, net, x, rt.upload(new Float32Array(2 * 256), [1, 2, 16, 16]), { numSteps: 5 })).rejects.toThrow(ShapeError);
    expect(rt.dispatches).toBe(before);
  });
});

describe('lincomb', () => {
  it('Σ cᵢ·xᵢ for 1 to 5 terms', async () => {
    const rt = await testRuntime();
    const xs = [1, 2, 3, 4, 5].map((k) => Float32Array.from({ length: 37 }, (_, i) => Math.sin(k * 0.3 + i)));
    const cs = [0.5, -1.25, 3, 0.125, -2];
    for (let n = 1; n <= 5; n++) {
      const got = await rt.scopeAsync(async () => rt.read(lincomb(rt, xs.slice(0, n).map((x, i) => [cs[i]!, rt.upload(x, [37])] as [number, ReturnType<Runtime['upload']>]))));
      const want = Float32Array.from({ length: 37 }, (_, i) => xs.slice(0, n).reduce((s, x, k) => s + cs[k]! * x[i]!, 0));
      expectClose(got, want, { atol: 1e-6, rtol: 1e-6 }, `${n} terms`);
    }
    expect(() => lincomb(rt, [])).toThrow(ArgumentError);
  });
});
