/** Float64 twin of src/ops/transpose.ts: [B,M,N] → [B,N,M]. */
export function transposeRef(x: ArrayLike<number>, B: number, M: number, N: number): Float64Array {
  const y = new Float64Array(B * M * N);
  for (let b = 0; b < B; b++) for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) y[(b * N + n) * M + m] = x[(b * M + m) * N + n]!;
  return y;
}
