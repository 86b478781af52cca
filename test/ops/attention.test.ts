import { beforeAll, describe, expect, it } from 'vitest';
import { multiHeadAttention, scaledDotProductAttention } from '../../src/ops/attention.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { ATTENTION_TOL as TOL, expectFixture, runAttention } from '../helpers/attention.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { randn } from '../helpers/random.js';
import { multiHeadAttentionRef, scaledDotProductAttentionRef } from '../reference/attention.js';
import { attentionChecks } from '../shared/fixtures-attention.js';

let rt: Runtime;
beforeAll(async () => {
  rt = await testRuntime();
});

describe('scaledDotProductAttention', () => {
  async function check(B: number, H: number, Lq: number, Lk: number, D: number, opts: { causal?: boolean; scale?: number } = {}, seed = 1, mag = 1) {
    const q = randn(B * H * Lq * D, seed, mag);
    const k = randn(B * H * Lk * D, seed + 1, mag);
    const v = randn(B * H * Lk * D, seed + 2);
    const want = scaledDotProductAttentionRef(q, k, v, [B, H, Lq, Lk, D], opts);
    const got = await runAttention(rt, [[q, [B, H, Lq, D]], [k, [B, H, Lk, D]], [v, [B, H, Lk, D]]], [B, H, Lq, D], (...t) =>
      scaledDotProductAttention(rt, t[0]!, t[1]!, t[2]!, opts),
    );
    return expectClose(got, want, TOL, `sdpa B${B} H${H} Lq${Lq} Lk${Lk} D${D}${opts.causal ? ' causal' : ''}`);
  }

  it.each([
    [1, 1, 1, 1, 8],
    [1, 1, 1, 37, 8],
    [2, 3, 17, 29, 8],
    [1, 2, 130, 7, 40],
    [2, 1, 33, 150, 64],
    [1, 1, 5, 300, 80],
    [1, 2, 21, 45, 160],
    [1, 1, 9, 70, 512],
    [1, 1, 3, 5, 3],
  ])('matches the float64 twin for B=%i H=%i Lq=%i Lk=%i D=%i', async (B, H, Lq, Lk, D) => {
    await check(B, H, Lq, Lk, D);
  });

  it.each([
    [1, 2, 9, 9, 8],
    [2, 3, 77, 77, 64],
    [1, 1, 150, 150, 40],
    [1, 1, 20, 33, 96],
    [1, 1, 33, 20, 8],
  ])('causal B=%i H=%i Lq=%i Lk=%i D=%i', async (B, H, Lq, Lk, D) => {
    await check(B, H, Lq, Lk, D, { causal: true });
  });

  it('honours an explicit scale and large logits without overflow', async () => {
    await check(1, 2, 19, 40, 8, { scale: 0.7 }, 5);
    await check(1, 1, 23, 64, 16, {}, 9, 12);
  });

  it('rejects bad inputs with typed errors before GPU work', () => {
    const q = rt.zeros([1, 2, 3, 8]);
    const k = rt.zeros([1, 2, 4, 8]);
    const k2 = rt.zeros([1, 2, 4, 7]);
    const before = rt.dispatches;
    expect(() => scaledDotProductAttention(rt, q, k2, k2)).toThrow(ShapeError);
    expect(() => scaledDotProductAttention(rt, q, k, k2)).toThrow(ShapeError);
    expect(() => scaledDotProductAttention(rt, q.reshape([2, 3, 8]), k, k)).toThrow(ShapeError);
    expect(() => scaledDotProductAttention(rt, q, k, k, { scale: NaN })).toThrow(ArgumentError);
    expect(() => scaledDotProductAttention(rt, q, rt.zeros([1, 2, 0, 8]), rt.zeros([1, 2, 0, 8]))).toThrow(ShapeError);
    expect(() => multiHeadAttention(rt, rt.zeros([1, 3, 10]), rt.zeros([1, 4, 10]), rt.zeros([1, 4, 10]), 3)).toThrow(ShapeError);
    expect(() => multiHeadAttention(rt, rt.zeros([1, 3, 10]), rt.zeros([1, 4, 10]), rt.zeros([1, 4, 10]), 0)).toThrow(ArgumentError);
    expect(() => multiHeadAttention(rt, rt.zeros([1, 3, 10]), rt.zeros([2, 4, 10]), rt.zeros([2, 4, 10]), 2)).toThrow(ShapeError);
    expect(() => scaledDotProductAttention(rt, q, k, rt.upload(new Float32Array(64), [1, 2, 4, 8], { dtype: 'f16' }))).toThrow(ShapeError);
    expect(rt.dispatches).toBe(before);
  });
});

describe('multiHeadAttention (token-major)', () => {
  it.each([
    [2, 13, 77, 8, 8, false],
    [1, 77, 77, 4, 16, true],
    [1, 1, 5, 1, 40, false],
    [2, 31, 31, 2, 160, false],
  ])('B=%i Lq=%i Lk=%i heads=%i D=%i causal=%s', async (B, Lq, Lk, H, D, causal) => {
    const C = H * D;
    const q = randn(B * Lq * C, 11);
    const k = randn(B * Lk * C, 12);
    const v = randn(B * Lk * C, 13);
    const want = multiHeadAttentionRef(q, k, v, [B, Lq, Lk, H, D], { causal });
    const got = await runAttention(rt, [[q, [B, Lq, C]], [k, [B, Lk, C]], [v, [B, Lk, C]]], [B, Lq, C], (...t) => multiHeadAttention(rt, t[0]!, t[1]!, t[2]!, H, { causal }));
    expectClose(got, want, TOL, 'mha');
  });
});

describe('real shapes', () => {
  it('SD self-attention 8 heads × 1024 tokens × 40 (token-major, as after to_q/to_k/to_v)', async () => {
    const [B, L, H, D] = [1, 1024, 8, 40];
    const C = H * D;
    const q = randn(B * L * C, 21);
    const k = randn(B * L * C, 22);
    const v = randn(B * L * C, 23);
    const got = await runAttention(rt, [[q, [B, L, C]], [k, [B, L, C]], [v, [B, L, C]]], [B, L, C], (...t) => multiHeadAttention(rt, t[0]!, t[1]!, t[2]!, H));
    // The float64 twin over the full problem costs seconds; check a spread of rows of every head.
    const want = multiHeadAttentionRef(q, k, v, [B, L, L, H, D]);
    expectClose(got, want, TOL, 'sd self-attention');
  });

  it('VAE mid-block attention 1 head × 1024 tokens × 512', async () => {
    const [L, D] = [1024, 512];
    const q = randn(L * D, 31, 0.3);
    const k = randn(L * D, 32, 0.3);
    const v = randn(L * D, 33);
    const got = await runAttention(rt, [[q, [1, 1, L, D]], [k, [1, 1, L, D]], [v, [1, 1, L, D]]], [1, 1, L, D], (...t) => scaledDotProductAttention(rt, t[0]!, t[1]!, t[2]!));
    const want = scaledDotProductAttentionRef(q, k, v, [1, 1, L, L, D]);
    expectClose(got, want, TOL, 'vae attention');
  });
});

describe('ops fixtures: sdpa, sdpa_causal', () => {
  it.each(attentionChecks.filter((c) => c.name.startsWith('ops/sdpa')).map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await expectFixture(rt, c);
  });
});
