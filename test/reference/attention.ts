/**
 * Float64 CPU twin of scaled dot-product attention: y = softmax(q kᵀ · scale [+ causal mask]) v, per (batch, head).
 * Plain loops, two passes over the keys (max, then exp-sum); matches torch.nn.functional.scaled_dot_product_attention.
 */
export interface AttentionRefOptions {
  causal?: boolean;
  scale?: number;
}

/** q [B,H,Lq,D], k/v [B,H,Lk,D] row-major → [B,H,Lq,D]. Causal: query i attends keys j ≤ i (top-left aligned). */
export function scaledDotProductAttentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  [B, H, Lq, Lk, D]: [number, number, number, number, number],
  o: AttentionRefOptions = {},
): Float64Array {
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const y = new Float64Array(B * H * Lq * D);
  const s = new Float64Array(Lk);
  for (let bh = 0; bh < B * H; bh++) {
    const qb = bh * Lq * D;
    const kb = bh * Lk * D;
    for (let i = 0; i < Lq; i++) {
      const n = o.causal ? Math.min(Lk, i + 1) : Lk;
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let d = 0; d < D; d++) acc += q[qb + i * D + d]! * k[kb + j * D + d]!;
        s[j] = acc * scale;
        if (s[j]! > m) m = s[j]!;
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += s[j] = Math.exp(s[j]! - m);
      const yo = qb + i * D;
      for (let j = 0; j < n; j++) {
        const p = s[j]! / sum;
        for (let d = 0; d < D; d++) y[yo + d] += p * v[kb + j * D + d]!;
      }
    }
  }
  return y;
}

/** Token-major [B,L,H·D] → head-major [B,H,L,D] (for composing the multi-head twin). */
export function splitHeads(x: ArrayLike<number>, B: number, L: number, H: number, D: number): Float64Array {
  const out = new Float64Array(B * H * L * D);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < H; h++)
        for (let d = 0; d < D; d++) out[((b * H + h) * L + l) * D + d] = x[(b * L + l) * H * D + h * D + d]!;
  return out;
}

/** Head-major [B,H,L,D] → token-major [B,L,H·D]. */
export function mergeHeads(x: ArrayLike<number>, B: number, L: number, H: number, D: number): Float64Array {
  const out = new Float64Array(B * H * L * D);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < H; h++)
        for (let d = 0; d < D; d++) out[(b * L + l) * H * D + h * D + d] = x[((b * H + h) * L + l) * D + d]!;
  return out;
}

/** multiHeadAttention twin: q [B,Lq,H·D], k/v [B,Lk,H·D] → [B,Lq,H·D]. */
export function multiHeadAttentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  [B, Lq, Lk, H, D]: [number, number, number, number, number],
  o: AttentionRefOptions = {},
): Float64Array {
  const y = scaledDotProductAttentionRef(splitHeads(q, B, Lq, H, D), splitHeads(k, B, Lk, H, D), splitHeads(v, B, Lk, H, D), [B, H, Lq, Lk, D], o);
  return mergeHeads(y, B, Lq, H, D);
}
