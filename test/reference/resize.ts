/** Float64 twins of src/ops/resize.ts (REFERENCE.md §0.1). */

export function upsampleNearest2xRef(x: ArrayLike<number>, P: number, H: number, W: number): Float64Array {
  const y = new Float64Array(P * 4 * H * W);
  for (let p = 0; p < P; p++) for (let i = 0; i < 2 * H; i++) for (let j = 0; j < 2 * W; j++) y[(p * 2 * H + i) * 2 * W + j] = x[(p * H + (i >> 1)) * W + (j >> 1)]!;
  return y;
}

/** Per-axis (i0, i1, λ) of PyTorch's align_corners=False bilinear; scale = I/O (float32 in torch). */
function axis(dst: number, I: number, O: number): [number, number, number] {
  const scale = Math.fround(I / O);
  const src = Math.max((dst + 0.5) * scale - 0.5, 0);
  const i0 = Math.min(Math.floor(src), I - 1);
  return [i0, Math.min(i0 + 1, I - 1), src - i0];
}

export function interpolateBilinearRef(x: ArrayLike<number>, P: number, H: number, W: number, Ho: number, Wo: number): Float64Array {
  const y = new Float64Array(P * Ho * Wo);
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < Ho; i++) {
      const [y0, y1, ly] = axis(i, H, Ho);
      for (let j = 0; j < Wo; j++) {
        const [x0, x1, lx] = axis(j, W, Wo);
        const at = (r: number, c: number): number => x[(p * H + r) * W + c]!;
        const top = (1 - lx) * at(y0, x0) + lx * at(y0, x1);
        const bot = (1 - lx) * at(y1, x0) + lx * at(y1, x1);
        y[(p * Ho + i) * Wo + j] = (1 - ly) * top + ly * bot;
      }
    }
  }
  return y;
}
