/** Float64 CPU twin of src/ops/conv2d.ts: direct loops over the (optionally upsampled) zero-padded input. */

export interface Conv2dRefOptions {
  stride?: number;
  padding?: number | [number, number, number, number];
  residual?: ArrayLike<number>;
  upsample2x?: boolean;
}

/** F.conv2d(up(x), w, bias, stride, padding) + residual; x [N, Cin, H, W], w [Cout, Cin, kh, kw]. Returns data and shape. */
export function conv2dRef(
  x: ArrayLike<number>,
  xShape: readonly number[],
  w: ArrayLike<number>,
  wShape: readonly number[],
  bias?: ArrayLike<number>,
  o: Conv2dRefOptions = {},
): { data: Float64Array; shape: number[] } {
  const [N, Cin, H0, W0] = xShape as [number, number, number, number];
  const [Cout, , KH, KW] = wShape as [number, number, number, number];
  const s = o.stride ?? 1;
  const p = typeof o.padding === 'number' || o.padding === undefined ? Array(4).fill(o.padding ?? 0) : o.padding;
  const [pt, pb, pl, pr] = p as [number, number, number, number];
  const u = o.upsample2x ? 2 : 1;
  const H = H0 * u;
  const W = W0 * u;
  const Ho = Math.floor((H + pt + pb - KH) / s) + 1;
  const Wo = Math.floor((W + pl + pr - KW) / s) + 1;
  const out = new Float64Array(N * Cout * Ho * Wo);
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          let acc = bias ? bias[co]! : 0;
          for (let ci = 0; ci < Cin; ci++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * s - pt + ky;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * s - pl + kx;
                if (ix < 0 || ix >= W) continue;
                const xv = x[((n * Cin + ci) * H0 + Math.floor(iy / u)) * W0 + Math.floor(ix / u)]!;
                acc += w[((co * Cin + ci) * KH + ky) * KW + kx]! * xv;
              }
            }
          }
          const i = ((n * Cout + co) * Ho + oy) * Wo + ox;
          out[i] = acc + (o.residual ? o.residual[i]! : 0);
        }
      }
    }
  }
  return { data: out, shape: [N, Cout, Ho, Wo] };
}
