import conv2dWgsl from '../../shaders/conv2d.wgsl';
import conv2dSgWgsl from '../../shaders/conv2d-sg.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { gemmCompute, gemmComputeStem, gemmComputeWgsl, type GemmCompute } from './gemm-compute.js';
import { checkTiles, COMPUTE_F32_WGSL, GEMM_EPILOGUE_WGSL, gemmTiles, SUBGROUPS_WGSL, type GemmTiles } from './matmul.js';

const CONV2D_BODY = [GEMM_EPILOGUE_WGSL, conv2dWgsl].join('\n');
/** With the main_sg / main_sg3 entry points (shaders/conv2d-sg.wgsl): compiled only on devices with `subgroups`. */
const CONV2D_SG_WGSL = [SUBGROUPS_WGSL, COMPUTE_F32_WGSL, CONV2D_BODY, conv2dSgWgsl].join('\n');
const CONV2D_WGSL: Readonly<Record<GemmCompute, string>> = {
  f32: [COMPUTE_F32_WGSL, CONV2D_BODY].join('\n'),
  f16: [gemmComputeWgsl('f16'), CONV2D_BODY].join('\n'),
  'f16-emulated': [gemmComputeWgsl('f16-emulated'), CONV2D_BODY].join('\n'),
};

/** @internal The conv2d kernel text (entry points main and main_direct) with operands of type `c` in main. */
export function conv2dWgslFor(c: GemmCompute): string {
  return CONV2D_WGSL[c];
}

export interface Conv2dOptions {
  /** Default 1. */
  stride?: number;
  /** Zero padding: one number for all sides, or [top, bottom, left, right]. Default 0. */
  padding?: number | [number, number, number, number];
  /** Same shape as the output, added last. */
  residual?: Tensor;
  /** The input is nearest-×2 upsampled first (fused: the 4× tensor is never materialised). */
  upsample2x?: boolean;
  /** @internal Forces a kernel variant (tests cover both on one device; benchmarks compare them). */
  tiles?: GemmTiles;
  /** @internal Forces the operand type of entry 'main' (tests run 'f16-emulated' where `shader-f16` is missing). */
  compute?: GemmCompute;
}

/**
 * @internal The kernel entry point for a tile choice and geometry: with 'main_sg', 3×3 at stride 1 with whole 8-pixel
 * groups per output row takes the sliding-window kernel main_sg3.
 */
export function convEntry(t: GemmTiles, KH: number, KW: number, stride: number, Wo: number): string {
  return t.entry === 'main_sg' && KH === 3 && KW === 3 && stride === 1 && Wo % 8 === 0 ? 'main_sg3' : t.entry;
}

/**
 * torch.nn.functional.conv2d (cross-correlation, NCHW, groups 1, dilation 1) as an implicit GEMM over
 * (Cout) × (N·Ho·Wo) × (Cin·kh·kw), with fused bias and residual add.
 * x [N, Cin, H, W] f32; weight [Cout, Cin, kh, kw] f32 or f16 storage; bias [Cout]. Returns [N, Cout, Ho, Wo].
 */
export function conv2d(rt: Runtime, x: Tensor, weight: Tensor, bias?: Tensor, o: Conv2dOptions = {}): Tensor {
  const op = 'conv2d';
  if (x.shape.length !== 4) throw new ShapeError(op, `x must be [N, Cin, H, W], got [${x.shape}]`);
  if (weight.shape.length !== 4) throw new ShapeError(op, `weight must be [Cout, Cin, kh, kw], got [${weight.shape}]`);
  if (x.dtype !== 'f32') throw new ShapeError(op, `x must be f32 storage (activations are f32), got ${x.dtype}`);
  if (weight.dtype !== 'f32' && weight.dtype !== 'f16') throw new ShapeError(op, `weight must be f32 or f16 storage, got ${weight.dtype}`);
  const [N, Cin, H0, W0] = x.shape as [number, number, number, number];
  const [Cout, wCin, KH, KW] = weight.shape as [number, number, number, number];
  if (wCin !== Cin) throw new ShapeError(op, `x [${x.shape}] has ${Cin} channels but weight [${weight.shape}] expects ${wCin}`);
  if (KH < 1 || KW < 1) throw new ShapeError(op, `empty kernel [${weight.shape}]`);
  const stride = o.stride ?? 1;
  if (!Number.isInteger(stride) || stride < 1) throw new ArgumentError(op, `stride must be a positive integer, got ${stride}`);
  const pad = typeof o.padding === 'number' || o.padding === undefined ? [o.padding ?? 0, o.padding ?? 0, o.padding ?? 0, o.padding ?? 0] : o.padding;
  if (!Array.isArray(pad) || pad.length !== 4 || pad.some((p) => !Number.isInteger(p) || p < 0)) {
    throw new ArgumentError(op, `padding must be a non-negative integer or [top, bottom, left, right], got ${JSON.stringify(o.padding)}`);
  }
  const [padTop, padBottom, padLeft, padRight] = pad as [number, number, number, number];
  const up = !!o.upsample2x;
  const H = up ? 2 * H0 : H0;
  const W = up ? 2 * W0 : W0;
  const Ho = Math.floor((H + padTop + padBottom - KH) / stride) + 1;
  const Wo = Math.floor((W + padLeft + padRight - KW) / stride) + 1;
  if (Ho < 1 || Wo < 1) throw new ShapeError(op, `kernel ${KH}x${KW} does not fit the padded ${H}x${W} input`);
  const outShape = [N, Cout, Ho, Wo];
  if (bias) {
    if (bias.dtype !== 'f32') throw new ShapeError(op, `bias must be f32 storage, got ${bias.dtype}`);
    if (bias.shape.length !== 1 || bias.shape[0] !== Cout) throw new ShapeError(op, `bias must be [${Cout}], got [${bias.shape}]`);
  }
  if (o.residual) {
    if (o.residual.dtype !== 'f32') throw new ShapeError(op, `residual must be f32 storage, got ${o.residual.dtype}`);
    const r = o.residual.shape;
    if (r.length !== 4 || r.some((d, i) => d !== outShape[i])) throw new ShapeError(op, `residual must be [${outShape}] like the output, got [${r}]`);
  }
  if (Math.max(x.numel, N * Cout * Ho * Wo, weight.numel) >= 2 ** 32) throw new ShapeError(op, `[${x.shape}] → [${outShape}] is too large for 32-bit indexing`);

  const P = Ho * Wo;
  const Kg = Cin * KH * KW;
  const t = o.tiles ?? gemmTiles(rt, Cout, P, Kg);
  if (o.tiles) checkTiles(rt, op, t);
  const compute = gemmCompute(rt, op, t.entry, o.compute);

  const out = rt.empty(outShape, 'f32', op);
  if (out.numel === 0) return out;
  const tilesM = Math.ceil(Cout / (t.perM * t.WG_M));
  const tilesN = Math.ceil(P / (t.perN * t.WG_N));
  const is1x1 = KH === 1 && KW === 1 && stride === 1 && !up && padTop + padBottom + padLeft + padRight === 0;
  const sg = t.entry === 'main_sg';
  const entry = convEntry(t, KH, KW, stride, Wo);
  const stem = sg ? 'conv2d-sg' : gemmComputeStem('conv2d', compute);
  const k = rt.kernel(stem, sg ? CONV2D_SG_WGSL : conv2dWgslFor(compute), {
    WG_M: t.WG_M,
    WG_N: t.WG_N,
    TILE_K: t.TILE_K,
    W_F16: weight.dtype === 'f16',
    HAS_BIAS: !!bias,
    HAS_RESIDUAL: !!o.residual,
    IS_1X1: is1x1,
    UPSAMPLE: up,
  }, entry);
  const [gx, gy] = rt.grid(tilesM * tilesN);
  rt.dispatch(
    k,
    // Unused bias / residual slots bind x: read-only, never read, and never aliasing the output.
    [x, weight, bias ?? x, o.residual ?? x, out],
    { Cin, H: H0, W: W0, Cout, Wo, P, KW, KHW: KH * KW, Kg, stride, padTop, padLeft, tilesN },
    [gx, gy, N],
  );
  return out;
}
