import { beforeAll, describe, expect, it } from 'vitest';
import { nodeGPU } from '../../src/node/gpu.js';
import { fmboostAttention } from '../../src/ops/fmboost-attention.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { fmboostAttentionRef } from '../reference/fmboost-attention.js';
import { attentionChecks } from '../shared/fixtures-attention.js';

const TOL = { atol: 1e-5, rtol: 1e-4 };

// dawn.node segfaults once the GPU object that made a device is garbage-collected; hold it for the file's life.
let gpu: GPU | null = null;
let shared: Promise<Runtime> | null = null;
function testRuntime(): Promise<Runtime> {
  shared ??= nodeGPU().then((g) => createRuntime({ gpu: (gpu = g), log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }));
  return shared;
}

describe('fmboostAttention (raw-reshape layout)', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it.each([
    [1, 1, 8, 5],
    [2, 2, 8, 20],
    [1, 3, 6, 7],
    [2, 4, 16, 33],
    [1, 4, 64, 64], // released config (4 heads × 64) at a 64² CFM input: L = 64
    [1, 1, 80, 9],
  ])('B=%i heads=%i d=%i L=%i matches the float64 twin', async (B, heads, d, L) => {
    const qkv = randn(B * 3 * heads * d * L, 7 + L);
    const want = fmboostAttentionRef(qkv, B, heads, d, L);
    const got = await rt.scopeAsync(async () => {
      const y = fmboostAttention(rt, rt.upload(qkv, [B, 3 * heads * d, L]), heads, d);
      expect(y.shape).toEqual([B, heads * d, L]);
      return rt.read(y);
    });
    expectClose(got, want, TOL, `fmboost B${B} heads${heads} d${d} L${L}`);
  });

  it('released config at a 128² CFM input: 4 heads × 64, L = 256', async () => {
    const [B, heads, d, L] = [1, 4, 64, 256];
    const qkv = randn(B * 3 * heads * d * L, 99);
    const want = fmboostAttentionRef(qkv, B, heads, d, L);
    const got = await rt.scopeAsync(async () => rt.read(fmboostAttention(rt, rt.upload(qkv, [B, 3 * heads * d, L]), heads, d)));
    expectClose(got, want, TOL, 'fmboost 4×64×256');
  });

  it('rejects bad inputs with typed errors before GPU work', () => {
    const before = rt.dispatches;
    expect(() => fmboostAttention(rt, rt.zeros([1, 47, 5]), 2, 8)).toThrow(ShapeError);
    expect(() => fmboostAttention(rt, rt.zeros([48, 5]), 2, 8)).toThrow(ShapeError);
    expect(() => fmboostAttention(rt, rt.zeros([1, 48, 0]), 2, 8)).toThrow(ShapeError);
    expect(() => fmboostAttention(rt, rt.zeros([1, 48, 5]), 0, 8)).toThrow(ArgumentError);
    expect(() => fmboostAttention(rt, rt.zeros([1, 48, 5]), 2, 8.5)).toThrow(ArgumentError);
    expect(rt.dispatches).toBe(before);
  });
});

describe('ops fixture: fmboost_attention', () => {
  it('GroupNorm → qkv → core (GPU) → proj_out + residual, and the debug q/k/v addressing', async () => {
    const rt = await testRuntime();
    const c = attentionChecks.find((x) => x.name === 'ops/fmboost_attention')!;
    const results = [await c.run(rt, nodeLoader)].flat();
    expect(results).toHaveLength(4);
    for (const [i, r] of results.entries()) {
      const rep = expectClose(r.actual, r.expected, r, ['q', 'k', 'v', 'y'][i]);
      console.info(`fmboost_attention.${['q', 'k', 'v', 'y'][i]}: max abs err ${rep.maxAbs.toExponential(2)}`);
    }
  });
});
