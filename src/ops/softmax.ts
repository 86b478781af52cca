import softmaxWgsl from '../../shaders/softmax.wgsl';
import { ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const WG_SIZE = 64;

/** Softmax over the last dim, max-subtracted (torch.softmax(x, -1)). */
export function softmax(rt: Runtime, x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new ShapeError('softmax', `x must be f32 storage, got ${x.dtype}`);
  const L = x.shape[x.shape.length - 1];
  if (L === undefined || L === 0) throw new ShapeError('softmax', `x must be [..., L] with L > 0, got [${x.shape}]`);
  const y = rt.empty(x.shape, 'f32', 'softmax');
  const R = x.numel / L;
  if (R === 0) return y;
  rt.dispatch(rt.kernel('softmax', softmaxWgsl, { WG_SIZE }), [x, y], { R, L }, rt.grid(Math.ceil(R / WG_SIZE)));
  return y;
}
