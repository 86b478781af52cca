/**
 * Checks of f16 compute in the GEMM kernels (src/ops/gemm-compute.ts), shared by the matmul and conv2d tests.
 *
 * Error model. The f16 instantiation rounds every operand a, b to f16 (unit roundoff u = 2^-11, round to
 * nearest) and multiplies in f32, where the product of two f16 values is exact; it accumulates in f32. So
 *   |ŷ − y| ≤ (2u + u²)·Σ_k |a_k·b_k| + γ_K(f32)·Σ_k |a_k·b_k|,  γ_K(f32) ≈ K·2^-24.
 * The bound scales with S = Σ|a·b| (the same GEMM on |a| and |b|), not with |y|: with cancellation the
 * relative error to |y| is unbounded, which is why a plain rtol would be wrong. The worst case relative to S
 * is ~2u independent of K, because the accumulator is f32 (an f16 accumulator would give ~K·u). The f32 term
 * is ≤ 0.07·2u for K ≤ 1152, and is already inside the fixtures' own f32 tolerances. Hardware may round a
 * conversion to either neighbour (faithful rounding) instead of to nearest: then each operand is off by up to
 * 2u, so the real-f16 bound doubles. F16_BOUND (2u·1.25: a quarter of margin over the operand rounding,
 * for the f32 accumulation) applies to the emulation, which rounds to nearest like most f16 hardware;
 * F16_BOUND_FAITHFUL to any f16 hardware. (Operands in the f16 subnormal range, below 2^-14, have an absolute
 * error ≤ 2^-25 rather than a relative one; the fixtures' atol covers their share.)
 */
import { expect } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../src/runtime/dtype.js';

/** Unit roundoff of f16 (11 significant bits). */
export const U16 = 2 ** -11;
/** Bound factor on S = Σ|a·b| for round-to-nearest operands (the emulation). */
export const F16_BOUND = 1.25 * (2 * U16 + U16 * U16);
/** Bound factor on S for operands rounded to either neighbour. */
export const F16_BOUND_FAITHFUL = 2 * F16_BOUND;

/** Values rounded through f16 (round to nearest even), as the f16 kernels see their operands. */
export function roundF16(v: ArrayLike<number>): Float32Array {
  return Float32Array.from(v, (x) => f16ToF32(f32ToF16(x)));
}

export function abs(v: ArrayLike<number>): Float32Array {
  return Float32Array.from(v, Math.abs);
}

/**
 * Asserts |got − want| ≤ atol + rtol·|want| + c·S_i at every element, where want is the unrounded f32
 * reference (a fixture, or the float64 twin), S = Σ|a·b| per output and c the bound factor.
 * Returns the largest |got − want| / S_i seen, for a check that rounding did happen.
 */
export function expectWithinF16Bound(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  S: ArrayLike<number>,
  tol: { atol: number; rtol: number },
  c: number,
  label: string,
): number {
  expect(got.length, label).toBe(want.length);
  let bad = 0;
  let worst = 0;
  const first: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (S[i]! > 0) worst = Math.max(worst, d / S[i]!);
    if (!(d <= tol.atol + tol.rtol * Math.abs(want[i]!) + c * S[i]!)) {
      bad++;
      if (first.length < 5) first.push(`[${i}] got ${got[i]}, want ${want[i]}, S ${S[i]}`);
    }
  }
  expect(bad, `${label}: ${bad} outside the f16 bound (worst |err|/S ${worst}); ${first.join('; ')}`).toBe(0);
  return worst;
}

/** The largest |a − b|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
