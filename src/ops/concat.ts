import concatWgsl from '../../shaders/concat.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const WG_SIZE = 256;
/** Up to this many contiguous runs, buffer copies beat a kernel launch per input (no shader work at all). */
const MAX_COPIES = 16;

/** torch.cat(tensors, dim): shapes must match except along `dim` (negative dims count from the end). */
export function concat(rt: Runtime, tensors: readonly Tensor[], dim: number): Tensor {
  if (!tensors || tensors.length === 0) throw new ArgumentError('concat', 'needs at least one tensor');
  const first = tensors[0]!;
  const rank = first.shape.length;
  if (!Number.isInteger(dim) || dim < -rank || dim >= rank) throw new ArgumentError('concat', `dim ${dim} is out of range for rank ${rank}`);
  const d = dim < 0 ? dim + rank : dim;
  for (const [i, t] of tensors.entries()) {
    if (t.dtype !== 'f32') throw new ShapeError('concat', `tensor ${i} must be f32 storage, got ${t.dtype}`);
    if (t.shape.length !== rank || t.shape.some((s, k) => k !== d && s !== first.shape[k])) {
      throw new ShapeError('concat', `tensor ${i} [${t.shape}] does not match [${first.shape}] outside dim ${d}`);
    }
  }
  const outShape = [...first.shape];
  outShape[d] = tensors.reduce((s, t) => s + t.shape[d]!, 0);
  const y = rt.empty(outShape, 'f32', 'concat');
  const outer = first.shape.slice(0, d).reduce((a, b) => a * b, 1);
  const after = first.shape.slice(d + 1).reduce((a, b) => a * b, 1);
  const outInner = outShape[d]! * after;
  if (outer * tensors.length <= MAX_COPIES) {
    let offset = 0;
    for (const t of tensors) {
      const inner = t.shape[d]! * after;
      for (let o = 0; o < outer && inner > 0; o++) rt.copy(t, o * inner * 4, y, (o * outInner + offset) * 4, inner * 4);
      offset += inner;
    }
    return y;
  }
  const k = rt.kernel('concat', concatWgsl, { WG_SIZE });
  let offset = 0;
  for (const t of tensors) {
    const inner = t.shape[d]! * after;
    const total = outer * inner;
    if (total > 0) rt.dispatch(k, [t, y], { total, inner, outInner, offset }, rt.grid(Math.ceil(total / WG_SIZE)));
    offset += inner;
  }
  return y;
}
