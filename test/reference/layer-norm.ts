/** Float64 twin of src/ops/layer-norm.ts. */
export function layerNormRef(x: ArrayLike<number>, D: number, weight: ArrayLike<number>, bias: ArrayLike<number>, eps: number): Float64Array {
  const R = x.length / D;
  const y = new Float64Array(x.length);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += x[r * D + d]!;
    const mean = s / D;
    let q = 0;
    for (let d = 0; d < D; d++) q += (x[r * D + d]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / D + eps);
    for (let d = 0; d < D; d++) y[r * D + d] = (x[r * D + d]! - mean) * rstd * weight[d]! + bias[d]!;
  }
  return y;
}
