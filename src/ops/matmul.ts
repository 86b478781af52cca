import activationWgsl from '../../shaders/activation.wgsl';
import epilogueWgsl from '../../shaders/gemm-epilogue.wgsl';
import matmulWgsl from '../../shaders/matmul.wgsl';
import matmulSgWgsl from '../../shaders/matmul-sg.wgsl';
import subgroupsWgsl from '../../shaders/subgroups.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { gemmCompute, gemmComputeStem, gemmComputeWgsl, type GemmCompute } from './gemm-compute.js';

/** Epilogue activations of matmul / linear (and of any kernel that concatenates shaders/activation.wgsl). */
export type Activation = 'none' | 'silu' | 'gelu' | 'gelu_tanh' | 'quick_gelu';

/** WGSL `activate(x, kind)` numbering of shaders/activation.wgsl. */
export const ACTIVATIONS: Readonly<Record<Activation, number>> = { none: 0, silu: 1, gelu: 2, gelu_tanh: 3, quick_gelu: 4 };

/** The WGSL helper snippet, for dispatchers of other kernels with a fused activation. */
export const ACTIVATION_WGSL: string = activationWgsl;

/** The `enable subgroups;` directive, first in kernels with a subgroup entry point (for conv2d too). */
export const SUBGROUPS_WGSL: string = subgroupsWgsl;

/** The register-tile store shared by the matmul and conv2d kernels. */
export const GEMM_EPILOGUE_WGSL: string = epilogueWgsl;

/** The operand-type snippet of shaders/compute-f32.wgsl, for kernels that include shaders/matmul.wgsl or conv2d.wgsl. */
export const COMPUTE_F32_WGSL: string = gemmComputeWgsl('f32');

const MATMUL_BODY = [activationWgsl, epilogueWgsl, matmulWgsl].join('\n');
/** With the main_sg entry point (shaders/matmul-sg.wgsl): compiled only on devices with `subgroups`. */
const MATMUL_SG_WGSL = [subgroupsWgsl, COMPUTE_F32_WGSL, MATMUL_BODY, matmulSgWgsl].join('\n');

const MATMUL_WGSL: Readonly<Record<GemmCompute, string>> = {
  f32: [COMPUTE_F32_WGSL, MATMUL_BODY].join('\n'),
  f16: [gemmComputeWgsl('f16'), MATMUL_BODY].join('\n'),
  'f16-emulated': [gemmComputeWgsl('f16-emulated'), MATMUL_BODY].join('\n'),
};

/** @internal The matmul kernel text (entry points main and main_direct) with operands of type `c` in main. */
export function matmulWgslFor(c: GemmCompute): string {
  return MATMUL_WGSL[c];
}

/**
 * Tiling of the register-blocked GEMM kernels (matmul and conv2d share it): WG_M × WG_N threads, each with a
 * perM × perN output tile. TILE_K (entry 'main' only) is a multiple of 4, WG_M and WG_N.
 */
export interface GemmTiles {
  WG_M: number;
  WG_N: number;
  TILE_K: number;
  /**
   * Entry point: 'main' (workgroup tiles, 4 × 4 per thread), 'main_direct' (no workgroup memory, 8 × 8 per
   * thread) or 'main_sg' (no workgroup memory, 16 × 8 per thread, A shared through 4-wide subgroups).
   */
  entry: 'main' | 'main_direct' | 'main_sg';
  /** Outputs per thread along M (rows; output channels for conv2d): 4, 8 or 16 as the entry point fixes. */
  perM: number;
  /** Outputs per thread along N (columns; output pixels for conv2d): 4 or 8 as the entry point fixes. */
  perN: number;
}

/** Multiply-adds (M·N·K per batch item) from which CPU adapters take 'main_sg' (SD-1.5's smallest is ~10⁹). */
const SG_MIN_WORK = 2 ** 24;

/** The tile shapes each entry point is written for. */
const PER: Readonly<Record<GemmTiles['entry'], [number, number]>> = { main: [4, 4], main_direct: [8, 8], main_sg: [16, 8] };

/**
 * Tile choice per device class and problem. GPUs get workgroup tiles: 16 × 16 threads, 64 × 64 blocks.
 * CPU adapters (SwiftShader) run a workgroup's invocations as SIMD lanes, where workgroup memory is gathered
 * lane by lane and every barrier switches all fibers: there the barrier-free kernels measured 3–7× faster
 * (bench/ops.ts), with 64-thread workgroups. Where the device has 4-wide subgroups (SwiftShader), 'main_sg'
 * shares the A operand through the subgroup: matmul ~1.6× and 3×3 conv ~2.5–4.5× the 8 × 8 direct kernel
 * (ratios to the FMA peak of the same run). Its unrolled bodies compile ~2.5× longer, though (~0.6 s of CPU
 * per pipeline on SwiftShader against ~0.25 s), which a problem under SG_MIN_WORK multiply-adds (the tiny test
 * models, ~2.4M) never wins back: those keep 'main_direct'. Thin problems shrink the short side.
 */
export function gemmTiles(rt: Runtime, M: number, N: number, K: number): GemmTiles {
  if (isCpuAdapter(rt)) {
    if (M > 16 && N > 8 && M * N * K >= SG_MIN_WORK && hasQuadSubgroups(rt)) return tiles(8, 8, 'main_sg');
    if (M <= 8) return tiles(1, 32, 'main_direct');
    if (N <= 8) return tiles(32, 1, 'main_direct');
    return tiles(8, 8, 'main_direct');
  }
  if (M <= 16) return tiles(4, 32, 'main');
  if (N <= 16) return tiles(32, 4, 'main');
  return tiles(16, 16, 'main');
}

/** @internal A tile choice with the entry point's per-thread tile (tests force variants with it). */
export function tiles(WG_M: number, WG_N: number, entry: GemmTiles['entry'], TILE_K = 16): GemmTiles {
  const [perM, perN] = PER[entry];
  return { WG_M, WG_N, TILE_K, entry, perM, perN };
}

/** A short description of a tile choice, for benchmarks and logs. */
export function describeTiles(t: GemmTiles): string {
  const how = t.entry === 'main' ? `workgroup tiles, K step ${t.TILE_K}` : t.entry === 'main_sg' ? 'direct, A shared by subgroup broadcast' : 'direct, no workgroup memory';
  return `${t.entry}: ${t.perM * t.WG_M}x${t.perN * t.WG_N} block, ${t.WG_M}x${t.WG_N} threads x ${t.perM}x${t.perN}, ${how}`;
}

/** @internal True for software adapters (SwiftShader and other fallbacks). */
export function isCpuAdapter(rt: Runtime): boolean {
  return rt.adapterInfo.isFallback || /swiftshader|llvmpipe|lavapipe|cpu/i.test(`${rt.adapterInfo.architecture} ${rt.adapterInfo.device}`);
}

/**
 * @internal True where the 'main_sg' kernels may run: `subgroups` enabled and every subgroup exactly 4
 * invocations (SwiftShader's SIMD width), so that the 4 threads sharing a row group form one subgroup.
 */
export function hasQuadSubgroups(rt: Runtime): boolean {
  if (!rt.hasSubgroups) return false;
  const info = (rt.device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  return info?.subgroupMinSize === 4 && info.subgroupMaxSize === 4;
}

/** @internal Checks a forced tile choice against the device and the entry point's shape. */
export function checkTiles(rt: Runtime, op: string, t: GemmTiles): void {
  const [perM, perN] = PER[t.entry] ?? [0, 0];
  if (t.perM !== perM || t.perN !== perN) throw new ArgumentError(op, `entry ${t.entry} has ${perM}x${perN} outputs per thread, got ${t.perM}x${t.perN}`);
  if (t.entry === 'main_sg' && (!hasQuadSubgroups(rt) || t.WG_N % 4 !== 0)) {
    throw new ArgumentError(op, 'main_sg needs 4-wide subgroups and WG_N a multiple of 4');
  }
}

export interface MatmulOptions {
  /** b is given as [B?, N, K] (a PyTorch Linear weight) instead of [B?, K, N]. */
  transB?: boolean;
  /** [N], added before the activation. */
  bias?: Tensor;
  activation?: Activation;
  /** Same shape as the output, added after the activation. */
  residual?: Tensor;
  /** Scales the product before bias and activation. Default 1. */
  alpha?: number;
  /** @internal Forces a kernel variant (tests cover both on one device; benchmarks compare them). */
  tiles?: GemmTiles;
  /** @internal Forces the operand type of entry 'main' (tests run 'f16-emulated' where `shader-f16` is missing). */
  compute?: GemmCompute;
}

/**
 * Batched matmul with a fused epilogue: out = act(alpha · a @ b + bias) + residual.
 * a [B?, M, K] f32; b [B?, K, N] or, with transB, [B?, N, K], f32 or f16 storage; a 2-D b is broadcast over
 * the batch. Returns [B?, M, N] (f32).
 */
export function matmul(rt: Runtime, a: Tensor, b: Tensor, o: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  if (a.shape.length !== 2 && a.shape.length !== 3) throw new ShapeError(op, `a must be [M, K] or [B, M, K], got [${a.shape}]`);
  if (b.shape.length !== 2 && b.shape.length !== 3) throw new ShapeError(op, `b must be 2-D or 3-D, got [${b.shape}]`);
  if (a.shape.length === 2 && b.shape.length === 3) throw new ShapeError(op, `a 2-D a [${a.shape}] cannot take a batched b [${b.shape}]`);
  const batched = a.shape.length === 3;
  const Z = batched ? a.shape[0]! : 1;
  const [M, K] = a.shape.slice(-2) as [number, number];
  const bz = b.shape.length === 3 ? b.shape[0]! : 1;
  if (b.shape.length === 3 && bz !== Z) throw new ShapeError(op, `batch of a [${a.shape}] and b [${b.shape}] differ`);
  const [r0, r1] = b.shape.slice(-2) as [number, number];
  const [bK, N] = o.transB ? [r1, r0] : [r0, r1];
  if (bK !== K) {
    throw new ShapeError(op, `inner dimensions differ: a [${a.shape}] has K=${K}, b [${b.shape}]${o.transB ? ' (transB)' : ''} has K=${bK}`);
  }
  const outShape = batched ? [Z, M, N] : [M, N];
  return gemm(rt, op, a, b, outShape, { Z, M, N, K, strideB: b.shape.length === 3 ? K * N : 0 }, o);
}

/**
 * nn.Linear: x [..., K] @ weightᵀ + bias, weight [N, K] (f32 or f16 storage), with an optional fused
 * activation and residual ([..., N]). Returns [..., N].
 */
export function linear(
  rt: Runtime,
  x: Tensor,
  weight: Tensor,
  bias?: Tensor,
  o: {
    activation?: Activation;
    residual?: Tensor;
    /** @internal Forces a kernel variant (tests). */
    tiles?: GemmTiles;
    /** @internal Forces the operand type of entry 'main' (tests). */
    compute?: GemmCompute;
  } = {},
): Tensor {
  const op = 'linear';
  if (x.shape.length < 1) throw new ShapeError(op, `x must have a feature dimension, got [${x.shape}]`);
  if (weight.shape.length !== 2) throw new ShapeError(op, `weight must be [N, K], got [${weight.shape}]`);
  const K = x.shape[x.shape.length - 1]!;
  const [N, wK] = weight.shape as [number, number];
  if (wK !== K) throw new ShapeError(op, `x [${x.shape}] has K=${K} but weight [${weight.shape}] has K=${wK}`);
  const M = K === 0 ? 0 : x.numel / K;
  const outShape = [...x.shape.slice(0, -1), N];
  return gemm(rt, op, x, weight, outShape, { Z: 1, M, N, K, strideB: 0 }, { ...o, bias, transB: true });
}

interface GemmDims {
  Z: number;
  M: number;
  N: number;
  K: number;
  strideB: number;
}

function gemm(rt: Runtime, op: string, a: Tensor, b: Tensor, outShape: number[], d: GemmDims, o: MatmulOptions): Tensor {
  const { Z, M, N, K } = d;
  if (a.dtype !== 'f32') throw new ShapeError(op, `a must be f32 storage (activations are f32), got ${a.dtype}`);
  if (b.dtype !== 'f32' && b.dtype !== 'f16') throw new ShapeError(op, `b must be f32 or f16 storage, got ${b.dtype}`);
  const activation = o.activation ?? 'none';
  if (!Object.hasOwn(ACTIVATIONS, activation)) {
    throw new ArgumentError(op, `unknown activation '${activation}' (expected ${Object.keys(ACTIVATIONS).join(', ')})`);
  }
  const alpha = o.alpha ?? 1;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new ArgumentError(op, `alpha must be a finite number, got ${alpha}`);
  if (o.bias) {
    if (o.bias.dtype !== 'f32') throw new ShapeError(op, `bias must be f32 storage, got ${o.bias.dtype}`);
    if (o.bias.shape.length !== 1 || o.bias.shape[0] !== N) throw new ShapeError(op, `bias must be [${N}], got [${o.bias.shape}]`);
  }
  if (o.residual) {
    if (o.residual.dtype !== 'f32') throw new ShapeError(op, `residual must be f32 storage, got ${o.residual.dtype}`);
    if (!sameShape(o.residual.shape, outShape)) throw new ShapeError(op, `residual must be [${outShape}] like the output, got [${o.residual.shape}]`);
  }
  if (Z * Math.max(M * K, M * N, K * N) >= 2 ** 32) throw new ShapeError(op, `[${outShape}] with K=${K} is too large for 32-bit indexing`);

  const t = o.tiles ?? gemmTiles(rt, M, N, K);
  if (o.tiles) checkTiles(rt, op, t);
  const compute = gemmCompute(rt, op, t.entry, o.compute);

  const out = rt.empty(outShape, 'f32', op);
  if (out.numel === 0) return out;
  const tilesM = Math.ceil(M / (t.perM * t.WG_M));
  const tilesN = Math.ceil(N / (t.perN * t.WG_N));
  const sg = t.entry === 'main_sg';
  const stem = sg ? 'matmul-sg' : gemmComputeStem('matmul', compute);
  const k = rt.kernel(stem, sg ? MATMUL_SG_WGSL : matmulWgslFor(compute), {
    WG_M: t.WG_M,
    WG_N: t.WG_N,
    TILE_K: t.TILE_K,
    TRANS_B: !!o.transB,
    W_F16: b.dtype === 'f16',
    HAS_BIAS: !!o.bias,
    HAS_RESIDUAL: !!o.residual,
    ACT: ACTIVATIONS[activation],
  }, t.entry);
  const [gx, gy] = rt.grid(tilesM * tilesN);
  // Unused bias / residual slots bind `a`: read-only, never read, and never aliasing the output.
  rt.dispatch(k, [a, b, o.bias ?? a, o.residual ?? a, out], { M, N, K, strideA: M * K, strideB: d.strideB, strideC: M * N, tilesN, alpha }, [gx, gy, Z]);
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
