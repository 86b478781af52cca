import transposeWgsl from '../../shaders/transpose.wgsl';
import { ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const TILE = 32;

/** x [B,M,N] → [B,N,M] (e.g. NCHW [N,C,HW] ↔ tokens [N,HW,C]), tiled through workgroup memory. */
export function transpose(rt: Runtime, x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new ShapeError('transpose', `x must be f32 storage, got ${x.dtype}`);
  if (x.shape.length !== 3) throw new ShapeError('transpose', `x must be [B, M, N], got [${x.shape}]`);
  const [B, M, N] = x.shape as [number, number, number];
  const max = rt.limits.maxComputeWorkgroupsPerDimension;
  if (B > max || Math.ceil(M / TILE) > max || Math.ceil(N / TILE) > max) {
    throw new ShapeError('transpose', `[${x.shape}] needs more than ${max} workgroups along one dimension`);
  }
  const y = rt.empty([B, N, M], 'f32', 'transpose');
  if (y.numel === 0) return y;
  rt.dispatch(rt.kernel('transpose', transposeWgsl), [x, y], { M, N }, [Math.ceil(N / TILE), Math.ceil(M / TILE), B]);
  return y;
}
