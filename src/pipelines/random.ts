/**
 * Seeded Gaussian noise that is bit-identical in every JavaScript engine (Node, Chrome, Firefox, Safari).
 *
 * Algorithm (enough to re-implement it elsewhere):
 * 1. Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): key = the 64-bit seed
 *    (k0 = low 32 bits, k1 = high 32 bits); counter = (block mod 2³², ⌊block / 2³²⌋, stream, 0).
 *    Round: (hi0, lo0) = 0xD2511F53·c0, (hi1, lo1) = 0xCD9E8D57·c2 (64-bit products);
 *    c ← (hi1 ⊕ c1 ⊕ k0, lo1, hi0 ⊕ c3 ⊕ k1, lo0); then k0 += 0x9E3779B9, k1 += 0xBB67AE85 (mod 2³²). 10 rounds.
 * 2. Block b gives outputs (x0, x1, x2, x3) → two 53-bit integers a = (x0 >>> 5)·2²⁶ + (x1 >>> 6),
 *    c = (x2 >>> 5)·2²⁶ + (x3 >>> 6); u1 = (a + 1)/2⁵³ ∈ (0, 1], u2 = c/2⁵³ ∈ [0, 1).
 * 3. Box–Muller in float64: r = √(−2 ln u1); element 2b = r·cos(2π u2), element 2b+1 = r·sin(2π u2); each rounded
 *    to float32. ln, sin and cos are evaluated here with +, −, ×, ÷ and √ only (all correctly rounded in IEEE-754),
 *    because `Math.log`/`Math.sin` may differ by an ulp between engines.
 * Element i depends only on (seed, stream, i), so any range can be generated independently.
 */
import { ArgumentError } from '../runtime/errors.js';

/** Streams that keep the pipeline's noise sources independent for one seed. */
export const NOISE_STREAM = {
  /** Initial latent of the diffusion sampler. */
  initial: 0,
  /** Forward-diffusion (q_sample) noise of the CFM source. */
  qSample: 1,
  /** Fresh noise of sampler step i (LCM, DDIM with η > 0). */
  step: (i: number): number => 16 + i,
} as const;

const MAX_ELEMENTS = 2 ** 31;
const TWO_POW_32 = 2 ** 32;

/** n standard-normal float32 samples for (seed, stream). */
export function randn(seed: number | bigint, n: number, stream = 0): Float32Array {
  const [k0, k1] = seedKey(seed);
  if (!Number.isInteger(n) || n < 0 || n > MAX_ELEMENTS) throw new ArgumentError('randn', `n must be an integer in [0, 2^31], got ${String(n)}`);
  if (!Number.isInteger(stream) || stream < 0 || stream >= TWO_POW_32) throw new ArgumentError('randn', `stream must be an integer in [0, 2^32), got ${String(stream)}`);
  const out = new Float32Array(n);
  const x = new Uint32Array(4);
  for (let b = 0; 2 * b < n; b++) {
    philox4x32(b % TWO_POW_32, Math.floor(b / TWO_POW_32), stream, 0, k0, k1, x);
    const a = (x[0]! >>> 5) * 67108864 + (x[1]! >>> 6);
    const c = (x[2]! >>> 5) * 67108864 + (x[3]! >>> 6);
    const r = Math.sqrt(-2 * lnUnit((a + 1) / 9007199254740992));
    const [cos, sin] = cosSinTurn(c / 9007199254740992);
    out[2 * b] = r * cos;
    if (2 * b + 1 < n) out[2 * b + 1] = r * sin;
  }
  return out;
}

function seedKey(seed: number | bigint): [number, number] {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 1n << 64n) throw new ArgumentError('randn', `a bigint seed must be in [0, 2^64), got ${seed}`);
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) throw new ArgumentError('randn', `seed must be a non-negative safe integer or a bigint, got ${String(seed)}`);
  return [seed % TWO_POW_32, Math.floor(seed / TWO_POW_32)];
}

/** High and low 32 bits of the 64-bit product of two uint32 (exact, from 16-bit halves). */
function mulhilo(a: number, b: number): [number, number] {
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const lh = aL * bH;
  const hl = aH * bL;
  const mid = ((aL * bL) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  const hi = (aH * bH + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
  return [hi, Math.imul(a, b) >>> 0];
}

/** Philox4x32-10 of counter (c0..c3) under key (k0, k1), written to out. */
export function philox4x32(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array): void {
  for (let round = 0; round < 10; round++) {
    const [hi0, lo0] = mulhilo(0xd2511f53, c0);
    const [hi1, lo1] = mulhilo(0xcd9e8d57, c2);
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

const LN2 = 0.6931471805599453;
const SQRT2 = 1.4142135623730951;

/** ln(u) for u ∈ (0, 1]: u = m·2^e with m ∈ [√½, √2], ln m = 2·atanh((m−1)/(m+1)) by its series. */
function lnUnit(u: number): number {
  let m = u;
  let e = 0;
  while (m < 1) {
    m *= 2;
    e--;
  }
  if (m > SQRT2) {
    m /= 2;
    e++;
  }
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  // |s| ≤ 0.1716: the 13th odd term is below 1e-20 relative.
  let sum = 0;
  for (let k = 25; k >= 1; k -= 2) sum = sum * s2 + 1 / k;
  return e * LN2 + 2 * s * sum;
}

const HALF_PI = 1.5707963267948966;

/** (cos 2πt, sin 2πt) for t ∈ [0, 1): exact reduction to a quadrant and an octant, then Taylor series. */
function cosSinTurn(t: number): [number, number] {
  const v = t * 4; // exact: t has at most 53 significant bits and ×4 only shifts the exponent
  const q = Math.floor(v);
  let f = v - q;
  const flip = f > 0.5;
  if (flip) f = 1 - f;
  const x = f * HALF_PI; // ≤ π/4
  const x2 = x * x;
  // Nested Taylor series to x¹⁹/19! and x¹⁸/18! (remainders below 1e-18 for x ≤ π/4).
  let s = 1;
  let c = 1;
  for (let k = 9; k >= 1; k--) {
    s = 1 - (x2 / (2 * k * (2 * k + 1))) * s;
    c = 1 - (x2 / ((2 * k - 1) * 2 * k)) * c;
  }
  s *= x;
  let sn = s;
  let cs = c;
  if (flip) [sn, cs] = [c, s];
  switch (q) {
    case 0:
      return [cs, sn];
    case 1:
      return [-sn, cs];
    case 2:
      return [-cs, -sn];
    default:
      return [sn, -cs];
  }
}
