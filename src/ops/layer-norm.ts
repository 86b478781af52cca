import layerNormWgsl from '../../shaders/layer-norm.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { shaderVariant, subgroupKernels } from './subgroups.js';

const WG_SIZE = 64;
/** Workgroup of the normalisation pass: SwiftShader pays per workgroup, so large ones. */
const APPLY_WG = 256;
const PORTABLE = shaderVariant('layer-norm', layerNormWgsl, false).code;

/**
 * torch.nn.functional.layer_norm over the last dim (biased variance, eps inside the sqrt, affine).
 * Row statistics first (the lanes of a subgroup share each row where the device has subgroups), then a
 * vectorised normalisation pass.
 */
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
  const VEC4 = D % 4 === 0;
  rt.scope(() => {
    const stats = rt.empty([R, 2], 'f32', `${op}.stats`);
    const sg = subgroupKernels(rt);
    const v = shaderVariant('layer-norm', layerNormWgsl, sg);
    const ks = rt.kernel(v.stem, v.code, { WG_SIZE, VEC4 }, sg ? 'main_stats_sg' : 'main_stats');
    rt.dispatch(ks, [x, x, x, x, stats], { R, D, eps, V: 0 }, rt.grid(Math.ceil(R / WG_SIZE)));
    if (VEC4) {
      const ROWS = R % 4 === 0 ? 4 : 1;
      const V = (R / ROWS) * (D / 4);
      const ka = rt.kernel('layer-norm', PORTABLE, { WG_SIZE: APPLY_WG, ROWS }, 'main_apply_rows');
      rt.dispatch(ka, [x, weight, bias, stats, y], { R, D, eps, V }, rt.grid(Math.ceil(V / APPLY_WG)));
    } else {
      const V = x.numel;
      const ka = rt.kernel('layer-norm', PORTABLE, { WG_SIZE, VEC4 }, 'main_apply');
      rt.dispatch(ka, [x, weight, bias, stats, y], { R, D, eps, V }, rt.grid(Math.ceil(V / WG_SIZE)));
    }
  });
  return y;
}
