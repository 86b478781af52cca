import computeF16EmulatedWgsl from '../../shaders/compute-f16-emulated.wgsl';
import computeF32Wgsl from '../../shaders/compute-f32.wgsl';
import { ArgumentError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { GemmTiles } from './matmul.js';

/**
 * Operand type of the workgroup-tiled GEMM entry point 'main' of matmul, linear and conv2d (the variant GPUs
 * get): 'f32'; 'f16' (operand tiles and registers in f16, products and accumulation in f32, f32 epilogue;
 * needs `shader-f16`); 'f16-emulated' (f32 tiles holding the f16-rounded operands: the f16 kernel's rounding,
 * runnable without `shader-f16`, for tests).
 */
export type GemmCompute = 'f32' | 'f16' | 'f16-emulated';

const COMPUTES: readonly GemmCompute[] = ['f32', 'f16', 'f16-emulated'];

/**
 * The f16 instantiation's prefix, the f16 counterpart of shaders/compute-f32.wgsl. It is generated here, not
 * kept in shaders/, because every file there is compiled alone on the test device, and `enable f16;` does not
 * compile where `shader-f16` is missing (SwiftShader). The directive comes first in the concatenation.
 * The clamp keeps an operand beyond the f16 range at ±65504 (a conversion out of range is indeterminate);
 * shaders/compute-f16-emulated.wgsl rounds the same way.
 */
export const F16_COMPUTE_WGSL = `enable f16;
alias ct = f16;

fn to_ct(v: vec4f) -> vec4<ct> {
  return vec4<ct>(clamp(v, vec4f(-65504.0), vec4f(65504.0)));
}
`;

/** The part of a runtime the selection reads (a stub object with `hasF16` stands in for it in tests). */
export type F16Device = Pick<Runtime, 'hasF16'>;

const disabled = new WeakSet<F16Device>();

/** Whether the GEMM kernels' 'main' entry point computes with f16 operands on this runtime. */
export function f16Compute(rt: F16Device): boolean {
  return rt.hasF16 && !disabled.has(rt);
}

/**
 * Chooses f16 operands with f32 accumulation (the default where the device has `shader-f16`) or f32 compute
 * for matmul, linear and conv2d on this runtime. Only the workgroup-tiled variant that GPUs get has an f16
 * instantiation; the CPU-adapter variants stay f32. Turning it on where `rt.hasF16` is false is an
 * ArgumentError.
 */
export function setF16Compute(rt: F16Device, on: boolean): void {
  if (typeof on !== 'boolean') throw new ArgumentError('setF16Compute', `on must be a boolean, got ${String(on)}`);
  if (on && !rt.hasF16) throw new ArgumentError('setF16Compute', 'the device has no `shader-f16` feature');
  if (on) disabled.delete(rt);
  else disabled.add(rt);
}

/**
 * @internal The operand type for one dispatch: a forced one (tests) is checked against the device and the
 * entry point; otherwise f16 for 'main' where f16Compute(rt), else f32.
 */
export function gemmCompute(rt: F16Device, op: string, entry: GemmTiles['entry'], forced?: GemmCompute): GemmCompute {
  if (forced === undefined) return entry === 'main' && f16Compute(rt) ? 'f16' : 'f32';
  if (!COMPUTES.includes(forced)) throw new ArgumentError(op, `compute must be one of ${COMPUTES.join(', ')}, got ${String(forced)}`);
  if (forced !== 'f32' && entry !== 'main') throw new ArgumentError(op, `compute '${forced}' exists for entry 'main' only, not ${entry}`);
  if (forced === 'f16' && !rt.hasF16) throw new ArgumentError(op, "compute 'f16' needs the `shader-f16` feature");
  return forced;
}

/** @internal The prefix that defines `ct` and `to_ct` for an operand type (first in the kernel text). */
export function gemmComputeWgsl(c: GemmCompute): string {
  return c === 'f16' ? F16_COMPUTE_WGSL : c === 'f16-emulated' ? computeF16EmulatedWgsl : computeF32Wgsl;
}

/** @internal The pipeline-cache stem of a kernel instantiated for an operand type. */
export function gemmComputeStem(stem: string, c: GemmCompute): string {
  return c === 'f32' ? stem : `${stem}+${c}`;
}

/** A note for benchmark variant columns: '' for f32, ', f16 compute (f32 accumulation)' otherwise. */
export function describeCompute(c: GemmCompute): string {
  return c === 'f32' ? '' : c === 'f16' ? ', f16 compute (f32 accumulation)' : ', f16 compute emulated in f32';
}
