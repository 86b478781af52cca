/**
 * Float64 CPU twin of the fm-boosting SpatialSelfAttention core (REFERENCE.md §2.4): per batch item the
 * [3·heads·d, L] block is reinterpreted row-major as [heads][L][3d] (q = j∈[0,d), k = [d,2d), v = [2d,3d)),
 * attention per head with scale 1/sqrt(d), and the [heads][L][d] result is reinterpreted as [heads·d][L].
 */
import { scaledDotProductAttentionRef } from './attention.js';

/** The q, k, v the reinterpretation yields, each [B, heads, L, d] (the fixture's debug tensors). */
export function fmboostSplitRef(qkv: ArrayLike<number>, B: number, heads: number, d: number, L: number): [Float64Array, Float64Array, Float64Array] {
  const n = B * heads * L * d;
  const out: [Float64Array, Float64Array, Float64Array] = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  for (let b = 0; b < B; b++)
    for (let m = 0; m < heads; m++)
      for (let r = 0; r < L; r++)
        for (let j = 0; j < 3 * d; j++) {
          const src = b * 3 * heads * d * L + m * L * 3 * d + r * 3 * d + j;
          out[Math.floor(j / d)]![((b * heads + m) * L + r) * d + (j % d)] = qkv[src]!;
        }
  return out;
}

/** qkv [B, 3·heads·d, L] → [B, heads·d, L]. */
export function fmboostAttentionRef(qkv: ArrayLike<number>, B: number, heads: number, d: number, L: number): Float64Array {
  const [q, k, v] = fmboostSplitRef(qkv, B, heads, d, L);
  // [B, heads, L, d] contiguous is already the flat order of [B, heads·d, L].
  return scaledDotProductAttentionRef(q, k, v, [B, heads, L, L, d]);
}
