/** Float64 twins of src/ops/group-norm.ts (two-pass statistics, biased variance). */

export interface GroupNormRefOptions {
  silu?: boolean;
  scale?: ArrayLike<number>; // [N, C]
  shift?: ArrayLike<number>; // [N, C]
  stats?: ArrayLike<number>; // [N, G, 2] (mean, rstd)
}

/** (mean, rstd) per (n, g) over the whole group: [N·G·2]. */
export function groupNormStatsRef(x: ArrayLike<number>, shape: readonly number[], G: number, eps: number): Float64Array {
  const [N, C] = shape as [number, number];
  const HW = shape.slice(2).reduce((a, b) => a * b, 1);
  const len = (C / G) * HW;
  const out = new Float64Array(N * G * 2);
  for (let ng = 0; ng < N * G; ng++) {
    const base = ng * len;
    let s = 0;
    for (let j = 0; j < len; j++) s += x[base + j]!;
    const mean = s / len;
    let q = 0;
    for (let j = 0; j < len; j++) q += (x[base + j]! - mean) ** 2;
    out[2 * ng] = mean;
    out[2 * ng + 1] = 1 / Math.sqrt(q / len + eps);
  }
  return out;
}

/** silu((GN(x)·w + b)·(1 + scale) + shift) in float64. */
export function groupNormRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  G: number,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  eps: number,
  o: GroupNormRefOptions = {},
): Float64Array {
  const [N, C] = shape as [number, number];
  const HW = shape.slice(2).reduce((a, b) => a * b, 1);
  const Cg = C / G;
  const st = o.stats ?? groupNormStatsRef(x, shape, G, eps);
  const y = new Float64Array(N * C * HW);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const sidx = (n * G + Math.floor(c / Cg)) * 2;
      const mean = st[sidx]!;
      const rstd = st[sidx + 1]!;
      const nc = n * C + c;
      for (let s = 0; s < HW; s++) {
        let v = (x[nc * HW + s]! - mean) * rstd * weight[c]! + bias[c]!;
        if (o.scale) v *= 1 + o.scale[nc]!;
        if (o.shift) v += o.shift[nc]!;
        if (o.silu) v = v / (1 + Math.exp(-v));
        y[nc * HW + s] = v;
      }
    }
  }
  return y;
}

/** (count, mean, M2) per (n, g) over a spatial region of [N, C, H, W]: [N·G·3]. */
export function groupNormMomentsRef(
  x: ArrayLike<number>,
  shape: readonly [number, number, number, number],
  G: number,
  region: { y0: number; y1: number; x0: number; x1: number },
): Float64Array {
  const [N, C, H, W] = shape;
  const Cg = C / G;
  const out = new Float64Array(N * G * 3);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const vals: number[] = [];
      for (let c = g * Cg; c < (g + 1) * Cg; c++) {
        for (let yy = region.y0; yy < region.y1; yy++) for (let xx = region.x0; xx < region.x1; xx++) vals.push(x[((n * C + c) * H + yy) * W + xx]!);
      }
      const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
      const m2 = vals.reduce((a, b) => a + (b - mean) ** 2, 0);
      out.set([vals.length, mean, m2], (n * G + g) * 3);
    }
  }
  return out;
}
