/** Float64 twins of src/ops/elementwise.ts. */

/** erf to ~1e-15 (W. J. Cody's rational approximations are overkill here: a series/continued fraction suffices). */
export function erfRef(x: number): number {
  const z = Math.abs(x);
  let r: number;
  if (z < 2.5) {
    // Maclaurin series, converges fast for |x| < 2.5.
    let term = z;
    let sum = z;
    for (let n = 1; n < 100; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc continued fraction (Lentz), accurate for z ≥ 2.5.
    let f = z;
    let C = z;
    let D = 0;
    for (let n = 1; n < 200; n++) {
      const a = n / 2;
      D = z + a * D;
      D = 1 / D;
      C = z + a / C;
      const delta = C * D;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    r = 1 - Math.exp(-z * z) / (f * Math.sqrt(Math.PI));
  }
  return x < 0 ? -r : r;
}

export const siluRef = (x: number): number => x / (1 + Math.exp(-x));
export const geluRef = (x: number): number => 0.5 * x * (1 + erfRef(x / Math.SQRT2));
export const geluTanhRef = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
export const quickGeluRef = (x: number): number => x / (1 + Math.exp(-1.702 * x));

export function mapRef(x: ArrayLike<number>, f: (v: number) => number): Float64Array {
  return Float64Array.from(Array.from(x, f));
}

/** x[..., :F] · gelu_erf(x[..., F:]) for rows of 2F. */
export function gegluRef(x: ArrayLike<number>, F: number): Float64Array {
  const R = x.length / (2 * F);
  const y = new Float64Array(R * F);
  for (let r = 0; r < R; r++) for (let f = 0; f < F; f++) y[r * F + f] = x[r * 2 * F + f]! * geluRef(x[r * 2 * F + F + f]!);
  return y;
}

/** x[n, c, s] + b[n, c]. */
export function addPerChannelRef(x: ArrayLike<number>, b: ArrayLike<number>, HW: number): Float64Array {
  return Float64Array.from(Array.from(x, (v, i) => v + b[Math.floor(i / HW)]!));
}

/** y = x·Wᵀ + b (the Linear in front of GEGLU in the fixture). */
export function linearRef(x: ArrayLike<number>, K: number, w: ArrayLike<number>, b: ArrayLike<number>, Nout: number): Float64Array {
  const R = x.length / K;
  const y = new Float64Array(R * Nout);
  for (let r = 0; r < R; r++) {
    for (let o = 0; o < Nout; o++) {
      let s = b[o]!;
      for (let k = 0; k < K; k++) s += x[r * K + k]! * w[o * K + k]!;
      y[r * Nout + o] = s;
    }
  }
  return y;
}
