/** Float64 twin of src/ops/softmax.ts (last dim L). */
export function softmaxRef(x: ArrayLike<number>, L: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / L; r++) {
    let m = -Infinity;
    for (let l = 0; l < L; l++) m = Math.max(m, x[r * L + l]!);
    let s = 0;
    for (let l = 0; l < L; l++) s += Math.exp(x[r * L + l]! - m);
    for (let l = 0; l < L; l++) y[r * L + l] = Math.exp(x[r * L + l]! - m) / s;
  }
  return y;
}
