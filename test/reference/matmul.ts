/** Float64 CPU twins of src/ops/matmul.ts: plain loops, no tiling. */
import type { Activation } from '../../src/ops/matmul.js';

/** erf in float64: Taylor series below 3, continued fraction of erfc above (both converge to < 1e-13 there). */
export function erfRef(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = a;
  for (let n = 80; n >= 1; n--) f = a + n / 2 / f;
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export function activationRef(x: number, act: Activation): number {
  switch (act) {
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'gelu':
      return 0.5 * x * (1 + erfRef(x / Math.SQRT2));
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'quick_gelu':
      return x / (1 + Math.exp(-1.702 * x));
    default:
      return x;
  }
}

export interface MatmulRefOptions {
  transB?: boolean;
  bias?: ArrayLike<number>;
  activation?: Activation;
  residual?: ArrayLike<number>;
  alpha?: number;
}

/**
 * out[z,m,n] = act(alpha · Σ_k a[z,m,k] · b[z?,k,n] + bias[n]) + residual[z,m,n]; b is [N, K] per batch
 * with transB, and a 2-D b is shared by every batch. Shapes: a [Z?, M, K]; b [Z?, K, N] or [Z?, N, K].
 */
export function matmulRef(a: ArrayLike<number>, aShape: readonly number[], b: ArrayLike<number>, bShape: readonly number[], o: MatmulRefOptions = {}): Float64Array {
  const Z = aShape.length === 3 ? aShape[0]! : 1;
  const [M, K] = aShape.slice(-2) as [number, number];
  const N = o.transB ? bShape[bShape.length - 2]! : bShape[bShape.length - 1]!;
  const bBatched = bShape.length === 3;
  const alpha = o.alpha ?? 1;
  const out = new Float64Array(Z * M * N);
  for (let z = 0; z < Z; z++) {
    const bz = bBatched ? z * K * N : 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[(z * M + m) * K + k]! * b[bz + (o.transB ? n * K + k : k * N + n)]!;
        let v = alpha * s + (o.bias ? o.bias[n]! : 0);
        v = activationRef(v, o.activation ?? 'none');
        const i = (z * M + m) * N + n;
        out[i] = v + (o.residual ? o.residual[i]! : 0);
      }
    }
  }
  return out;
}

/** nn.Linear: x [R, K] (any leading shape flattened) @ wᵀ ([N, K]) + bias. */
export function linearRef(x: ArrayLike<number>, K: number, w: ArrayLike<number>, N: number, bias?: ArrayLike<number>): Float64Array {
  return matmulRef(x, [x.length / K, K], w, [N, K], { transB: true, bias });
}
