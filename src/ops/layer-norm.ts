import layerNormWgsl from '../../shaders/layer-norm.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const WG_SIZE = 64;

/** torch.nn.functional.layer_norm over the last dim (biased variance, eps inside the sqrt, affine). */
export function layerNorm(rt: Runtime, x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
  const op = 'layerNorm';
  if (x.dtype !== 'f32') throw new ShapeError(op, `x must be f32 storage, got ${x.dtype}`);
  const D = x.shape[x.shape.length - 1];
  if (D === undefined || D === 0) throw new ShapeError(op, `x must be [..., D] with D > 0, got [${x.shape}]`);
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t.dtype !== 'f32' || t.shape.length !== 1 || t.shape[0] !== D) throw new ShapeError(op, `${name} must be f32 [${D}], got ${t.dtype} [${t.shape}]`);
  }
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw new ArgumentError(op, `eps must be a finite number ≥ 0, got ${eps}`);
  const y = rt.empty(x.shape, 'f32', op);
  const R = x.numel / D;
  if (R === 0) return y;
  rt.dispatch(rt.kernel('layer-norm', layerNormWgsl, { WG_SIZE }), [x, weight, bias, y], { R, D, eps }, rt.grid(Math.ceil(R / WG_SIZE)));
  return y;
}
