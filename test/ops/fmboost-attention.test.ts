import { beforeAll, describe, expect, it } from 'vitest';
import { fmboostAttention } from '../../src/ops/fmboost-attention.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { ATTENTION_TOL as TOL, expectFixture, runAttention } from '../helpers/attention.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { randn } from '../helpers/random.js';
import { fmboostAttentionRef } from '../reference/fmboost-attention.js';
import { attentionChecks } from '../shared/fixtures-attention.js';

let rt: Runtime;
beforeAll(async () => {
  rt = await testRuntime();
});

describe('fmboostAttention (raw-reshape layout)', () => {
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
    const got = await runAttention(rt, [[qkv, [B, 3 * heads * d, L]]], [B, heads * d, L], (t) => fmboostAttention(rt, t, heads, d));
    expectClose(got, want, TOL, `fmboost B${B} heads${heads} d${d} L${L}`);
  });

  it('released config at a 128² CFM input: 4 heads × 64, L = 256', async () => {
    const [B, heads, d, L] = [1, 4, 64, 256];
    const qkv = randn(B * 3 * heads * d * L, 99);
    const want = fmboostAttentionRef(qkv, B, heads, d, L);
    const got = await runAttention(rt, [[qkv, [B, 3 * heads * d, L]]], [B, heads * d, L], (t) => fmboostAttention(rt, t, heads, d));
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
    await expectFixture(rt, attentionChecks.find((x) => x.name === 'ops/fmboost_attention')!, ['q', 'k', 'v', 'y']);
  });
});
