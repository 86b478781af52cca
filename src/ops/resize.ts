import resizeWgsl from '../../shaders/resize.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const WG_SIZE = 256;

function planes(op: string, x: Tensor): [number, number, number] {
  if (x.dtype !== 'f32') throw new ShapeError(op, `x must be f32 storage, got ${x.dtype}`);
  if (x.shape.length !== 4) throw new ShapeError(op, `x must be [N, C, H, W], got [${x.shape}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  if (H === 0 || W === 0) throw new ShapeError(op, `x [${x.shape}] has an empty spatial size`);
  return [N * C, H, W];
}

/** F.interpolate(x, scale_factor=2, mode='nearest'): [N,C,H,W] → [N,C,2H,2W]. */
export function upsampleNearest2x(rt: Runtime, x: Tensor): Tensor {
  const [P, H, W] = planes('upsampleNearest2x', x);
  const y = rt.empty([x.shape[0]!, x.shape[1]!, 2 * H, 2 * W], 'f32', 'upsampleNearest2x');
  const count = P * H * W;
  if (count === 0) return y;
  const k = rt.kernel('resize', resizeWgsl, { WG_SIZE }, 'main_nearest2x');
  rt.dispatch(k, [x, y], { count, H, W, Ho: 2 * H, Wo: 2 * W, scaleH: 0.5, scaleW: 0.5 }, rt.grid(Math.ceil(count / WG_SIZE)));
  return y;
}

/**
 * F.interpolate(x, size=[Ho, Wo], mode='bilinear') with align_corners=False, antialias=False (also for
 * downsampling: no prefilter). The per-axis scale is I/O rounded to float32, as torch computes it.
 */
export function interpolateBilinear(rt: Runtime, x: Tensor, size: readonly [number, number]): Tensor {
  const op = 'interpolateBilinear';
  const [P, H, W] = planes(op, x);
  if (!Array.isArray(size) || size.length !== 2 || !size.every((s) => Number.isInteger(s) && s > 0)) {
    throw new ArgumentError(op, `size must be [Ho, Wo] with positive integers, got [${String(size)}]`);
  }
  const [Ho, Wo] = size;
  const y = rt.empty([x.shape[0]!, x.shape[1]!, Ho, Wo], 'f32', op);
  const count = P * Ho * Wo;
  if (count === 0) return y;
  const k = rt.kernel('resize', resizeWgsl, { WG_SIZE }, 'main_bilinear');
  rt.dispatch(k, [x, y], { count, H, W, Ho, Wo, scaleH: H / Ho, scaleW: W / Wo }, rt.grid(Math.ceil(count / WG_SIZE)));
  return y;
}
