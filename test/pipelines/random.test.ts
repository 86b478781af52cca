import { describe, expect, it } from 'vitest';
import { NOISE_STREAM, philox4x32, randn } from '../../src/pipelines/random.js';
import { ArgumentError } from '../../src/runtime/errors.js';

describe('Philox4x32-10', () => {
  it('matches the published known-answer vectors (Random123 kat_vectors)', () => {
    const o = new Uint32Array(4);
    const hex = (): string[] => Array.from(o, (v) => v.toString(16).padStart(8, '0'));
    philox4x32(0, 0, 0, 0, 0, 0, o);
    expect(hex()).toEqual(['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
    philox4x32(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, o);
    expect(hex()).toEqual(['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
    philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, o);
    expect(hex()).toEqual(['d16cfe09', '94fdcceb', '5001e420', '24126ea1']);
  });
});

/** The documented algorithm with the engine's Math.log/cos/sin (an independent re-implementation). */
function randnWithMath(seed: number, n: number, stream: number): Float32Array {
  const out = new Float32Array(n);
  const x = new Uint32Array(4);
  for (let b = 0; 2 * b < n; b++) {
    philox4x32(b, 0, stream, 0, seed >>> 0, Math.floor(seed / 2 ** 32), x);
    const a = (x[0]! >>> 5) * 2 ** 26 + (x[1]! >>> 6);
    const c = (x[2]! >>> 5) * 2 ** 26 + (x[3]! >>> 6);
    const r = Math.sqrt(-2 * Math.log((a + 1) / 2 ** 53));
    out[2 * b] = r * Math.cos((2 * Math.PI * c) / 2 ** 53);
    if (2 * b + 1 < n) out[2 * b + 1] = r * Math.sin((2 * Math.PI * c) / 2 ** 53);
  }
  return out;
}

describe('randn', () => {
  it('golden values (also produced by an independent Python implementation of the documented algorithm)', () => {
    expect(Array.from(randn(42, 6))).toEqual([0.8864974975585938, 0.4393560588359833, -0.15660962462425232, -0.013718678615987301, -0.49410051107406616, -0.37216684222221375]);
    expect(Array.from(randn(0, 4, 1))).toEqual([1.0711733102798462, 0.41623812913894653, -0.6843032836914062, 0.026856856420636177]);
    expect(Array.from(randn(2n ** 63n + 5n, 3, NOISE_STREAM.step(2)))).toEqual([-0.3190392255783081, 0.09202581644058228, -0.12551471590995789]);
  });

  it('is deterministic, prefix-consistent, and number/bigint seeds agree', () => {
    const a = randn(1234, 1001, 3);
    expect(randn(1234, 1001, 3)).toEqual(a);
    expect(randn(1234, 10, 3)).toEqual(a.subarray(0, 10));
    expect(randn(1234n, 1001, 3)).toEqual(a);
    expect(randn(2 ** 40 + 7, 64)).toEqual(randn(2n ** 40n + 7n, 64));
    expect(randn(1235, 16, 3)).not.toEqual(a.subarray(0, 16));
    expect(randn(7, 0).length).toBe(0);
  });

  it('its own ln/sin/cos agree with the engine math after rounding to float32', () => {
    const ours = randn(99, 200_000, 5);
    const ref = randnWithMath(99, 200_000, 5);
    let diff = 0;
    for (let i = 0; i < ours.length; i++) if (ours[i] !== ref[i]) diff++;
    expect(diff).toBeLessThanOrEqual(2); // at most a float32 rounding-boundary tie, essentially never
  });

  it('has mean 0 and std 1 over 1e6 samples, Gaussian tails', () => {
    const z = randn(2024, 1_000_000, NOISE_STREAM.initial);
    let m = 0;
    let m2 = 0;
    let m4 = 0;
    let beyond3 = 0;
    for (const v of z) m += v;
    m /= z.length;
    for (const v of z) {
      const d = v - m;
      m2 += d * d;
      m4 += d ** 4;
      if (Math.abs(v) > 3) beyond3++;
    }
    m2 /= z.length;
    m4 /= z.length;
    expect(Math.abs(m)).toBeLessThan(5e-3); // 5σ of the sample mean
    expect(Math.abs(Math.sqrt(m2) - 1)).toBeLessThan(5e-3);
    expect(Math.abs(m4 / (m2 * m2) - 3)).toBeLessThan(0.05); // kurtosis
    expect(beyond3 / z.length).toBeGreaterThan(0.0024);
    expect(beyond3 / z.length).toBeLessThan(0.0030); // P(|z| > 3) = 0.0027
  });

  it('streams and seeds are uncorrelated', () => {
    const n = 200_000;
    const corr = (a: Float32Array, b: Float32Array): number => {
      let s = 0;
      for (let i = 0; i < n; i++) s += a[i]! * b[i]!;
      return s / n;
    };
    const init = randn(5, n, NOISE_STREAM.initial);
    const q = randn(5, n, NOISE_STREAM.qSample);
    const s0 = randn(5, n, NOISE_STREAM.step(0));
    const s1 = randn(5, n, NOISE_STREAM.step(1));
    const other = randn(6, n, NOISE_STREAM.initial);
    // 1/√n ≈ 2.2e-3; 5σ bound.
    for (const [a, b] of [[init, q], [init, s0], [s0, s1], [q, s1], [init, other]] as const) expect(Math.abs(corr(a, b))).toBeLessThan(0.012);
    // Neighbouring elements (the cos/sin pair of one Box–Muller draw) are uncorrelated too.
    let lag = 0;
    for (let i = 0; i + 1 < n; i += 2) lag += init[i]! * init[i + 1]!;
    expect(Math.abs(lag / (n / 2))).toBeLessThan(0.012);
    expect(new Set([NOISE_STREAM.initial, NOISE_STREAM.qSample, NOISE_STREAM.step(0), NOISE_STREAM.step(999)]).size).toBe(4);
  });

  it('rejects bad seeds, sizes and streams', () => {
    for (const seed of [-1, 1.5, NaN, Infinity, 2 ** 53, '1' as unknown as number, -1n, 2n ** 64n]) expect(() => randn(seed, 4), String(seed)).toThrow(ArgumentError);
    for (const n of [-1, 2.5, NaN, 2 ** 31 + 1]) expect(() => randn(1, n), String(n)).toThrow(ArgumentError);
    for (const st of [-1, 0.5, 2 ** 32, NaN]) expect(() => randn(1, 4, st), String(st)).toThrow(ArgumentError);
  });
});
