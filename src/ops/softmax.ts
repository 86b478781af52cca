import softmaxWgsl from '../../shaders/softmax.wgsl';
import { ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { shaderVariant, subgroupKernels } from './subgroups.js';

const WG_SIZE = 64;
const APPLY_WG = 256;
const PORTABLE = shaderVariant('softmax', softmaxWgsl, false).code;

/**
 * Softmax over the last dim, max-subtracted (torch.softmax(x, -1)): row (max, 1/Σ) first (the lanes of a
 * subgroup share each row where the device has subgroups), then one elementwise pass.
 */
export function softmax(rt: Runtime, x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new ShapeError('softmax', `x must be f32 storage, got ${x.dtype}`);
  const L = x.shape[x.shape.length - 1];
  if (L === undefined || L === 0) throw new ShapeError('softmax', `x must be [..., L] with L > 0, got [${x.shape}]`);
  const y = rt.empty(x.shape, 'f32', 'softmax');
  const R = x.numel / L;
  if (R === 0) return y;
  const VEC4 = L % 4 === 0;
  rt.scope(() => {
    const stats = rt.empty([R, 2], 'f32', 'softmax.stats');
    const sg = subgroupKernels(rt);
    const v = shaderVariant('softmax', softmaxWgsl, sg);
    rt.dispatch(rt.kernel(v.stem, v.code, { WG_SIZE, VEC4 }, sg ? 'main_stats_sg' : 'main_stats'), [x, x, stats], { R, L, V: 0 }, rt.grid(Math.ceil(R / WG_SIZE)));
    const V = VEC4 ? x.numel / 4 : x.numel;
    rt.dispatch(rt.kernel('softmax', PORTABLE, { WG_SIZE: APPLY_WG, VEC4 }, 'main_apply'), [x, stats, y], { R, L, V }, rt.grid(Math.ceil(V / APPLY_WG)));
  });
  return y;
}
