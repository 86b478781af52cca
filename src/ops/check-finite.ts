import checkFiniteWgsl from '../../shaders/check-finite.wgsl';
import { NumericalError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const WG_SIZE = 256;

/**
 * Records a count of the non-finite values of an f32 tensor; the returned 1-element tensor holds the
 * count as u32 bits. Cheap (one read pass); read it once per stage, never inside a sampling loop.
 */
export function countNonFinite(rt: Runtime, x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new ShapeError('countNonFinite', `expects an f32 tensor, got ${x.dtype}`);
  const count = rt.zeros([1], 'f32', 'nonfinite.count');
  const n = x.numel;
  const k = rt.kernel('check-finite', checkFiniteWgsl, { WG_SIZE });
  rt.dispatch(k, [x, count], { N: n }, rt.grid(Math.ceil(n / (WG_SIZE * 4))));
  return count;
}

/**
 * Throws NumericalError naming `stage` when `x` holds NaN or Inf (one small readback). Turns silent
 * black images into an error that says where the numbers went bad.
 */
export async function assertFinite(rt: Runtime, x: Tensor, stage: string): Promise<void> {
  const count = countNonFinite(rt, x);
  try {
    const raw = await rt.read(count);
    const bad = new Uint32Array(raw.buffer, raw.byteOffset, 1)[0]!;
    if (bad > 0) {
      throw new NumericalError(stage, `${bad} of ${x.numel} values are NaN or Inf (shape [${x.shape.join(', ')}]); with f16 weights or compute, try f32`);
    }
  } finally {
    count.dispose();
  }
}
