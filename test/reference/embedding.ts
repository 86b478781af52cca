/**
 * Twins of src/ops/embedding.ts: the frequency table and the argument t·f are rounded to float32 exactly as
 * the torch references do (that rounding is part of what the fixtures hold); sin/cos are float64.
 */
import { guidanceFreqs, timestepFreqs } from '../../src/ops/embedding.js';

function table(args: (n: number, i: number) => number, N: number, dim: number, sinFirst: boolean): Float64Array {
  const half = Math.floor(dim / 2);
  const y = new Float64Array(N * dim);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < half; i++) {
      const a = args(n, i);
      y[n * dim + i] = sinFirst ? Math.sin(a) : Math.cos(a);
      y[n * dim + half + i] = sinFirst ? Math.cos(a) : Math.sin(a);
    }
  }
  return y;
}

export function timestepEmbeddingRef(t: ArrayLike<number>, dim: number, flipSinToCos = true, shift = 0): Float64Array {
  const f = timestepFreqs(Math.floor(dim / 2), shift);
  return table((n, i) => Math.fround(Math.fround(t[n]!) * f[i]!), t.length, dim, !flipSinToCos);
}

export function guidanceEmbeddingRef(w: ArrayLike<number>, dim: number): Float64Array {
  const f = guidanceFreqs(Math.floor(dim / 2));
  return table((n, i) => Math.fround(Math.fround(w[n]! * 1000) * f[i]!), w.length, dim, true);
}
