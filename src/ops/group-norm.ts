import groupNormWgsl from '../../shaders/group-norm.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const WG_SIZE = 256;
/**
 * Elements one workgroup reduces. Groups up to this size are normalised by one workgroup (one dispatch);
 * larger ones (VAE decoder: 8·1024² per group) are split into chunks, merged, then applied.
 */
const CHUNK = 16384;

export interface GroupNormOptions {
  /** Apply SiLU to the output (GN → SiLU in every ResNet block). */
  silu?: boolean;
  /** FiLM scale [N,C]: y·(1 + scale), after the affine GroupNorm and before SiLU. */
  scale?: Tensor;
  /** FiLM shift [N,C]: added after the scale. */
  shift?: Tensor;
  /** Precomputed [N,G,2] (mean, rstd), e.g. global statistics for a tile of the tiled VAE. */
  stats?: Tensor;
}

/** Spatial region (rows y0..y1, columns x0..x1, end-exclusive) of an [N,C,H,W] tensor. */
export interface Region {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
}

interface Geometry {
  N: number;
  C: number;
  G: number;
  Cg: number;
  HW: number;
}

function geometry(op: string, x: Tensor, groups: number): Geometry {
  if (x.dtype !== 'f32') throw new ShapeError(op, `x must be f32 storage (activations are f32), got ${x.dtype}`);
  if (x.shape.length < 2) throw new ShapeError(op, `x must be [N, C, ...], got [${x.shape}]`);
  const [N, C] = x.shape as [number, number];
  if (!Number.isInteger(groups) || groups <= 0) throw new ArgumentError(op, `groups must be a positive integer, got ${groups}`);
  if (C % groups !== 0) throw new ShapeError(op, `C=${C} is not divisible by groups=${groups}`);
  const HW = x.shape.slice(2).reduce((a, b) => a * b, 1);
  if (N * C * HW === 0) throw new ShapeError(op, `x [${x.shape}] is empty`);
  return { N, C, G: groups, Cg: C / groups, HW };
}

function expectShape(op: string, name: string, t: Tensor, shape: number[]): void {
  if (t.dtype !== 'f32') throw new ShapeError(op, `${name} must be f32, got ${t.dtype}`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new ShapeError(op, `${name} must be [${shape}], got [${t.shape}]`);
  }
}

function checkEps(op: string, eps: number): void {
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw new ArgumentError(op, `eps must be a finite number ≥ 0, got ${eps}`);
}

const NO_REGION = { y0: 0, x0: 0, Ry: 0, Rx: 0 };
const NO_SPLIT = { S: 1, chunk: 0, NG: 0, strideNG: 0, strideS: 0 };

/**
 * Partial moments of every (n, g): chunks of CHUNK elements → [N·G·S, 3] (count, mean, M2), S chunks per group.
 * Region null = the whole image (vectorised when H·W % 4 == 0).
 */
function partialMoments(rt: Runtime, x: Tensor, g: Geometry, W: number, region: { y0: number; x0: number; Ry: number; Rx: number } | null): { part: Tensor; S: number } {
  const r = region ?? { y0: 0, x0: 0, Ry: 1, Rx: g.HW };
  const total = g.Cg * r.Ry * r.Rx;
  const S = Math.ceil(total / CHUNK);
  const NG = g.N * g.G;
  const part = rt.empty([NG * S, 3], 'f32', 'groupNorm.moments');
  const VEC4 = region === null && g.HW % 4 === 0;
  const k = rt.kernel('group-norm', groupNormWgsl, { WG_SIZE, VEC4 }, 'main_moments');
  rt.dispatch(k, [x, x, x, x, x, x, part], { C: g.C, HW: g.HW, W, G: g.G, Cg: g.Cg, ...r, S, chunk: CHUNK, NG, strideNG: 0, strideS: 0, eps: 0, V: 0 }, rt.grid(NG * S));
  return { part, S };
}

/** Chan-merges S triples per (n,g) laid out at (ng·strideNG + s·strideS)·3 into moments [NG,3] or stats [NG,2]. */
function merge(rt: Runtime, src: Tensor, NG: number, S: number, strideNG: number, strideS: number, stats: boolean, eps: number, shape: number[]): Tensor {
  const out = rt.empty(shape, 'f32', stats ? 'groupNorm.stats' : 'groupNorm.moments');
  const k = rt.kernel('group-norm', groupNormWgsl, { WG_SIZE: 64, STATS: stats }, 'main_merge');
  rt.dispatch(k, [src, src, src, src, src, src, out], { C: 0, HW: 0, W: 0, G: 0, Cg: 0, ...NO_REGION, S, chunk: 0, NG, strideNG, strideS, eps, V: 0 }, rt.grid(NG));
  return out;
}

/**
 * torch.nn.functional.group_norm (biased variance, eps inside the sqrt) with optional fused FiLM and SiLU:
 * out = silu((GN(x)·weight + bias)·(1 + scale) + shift). With `stats`, those (mean, rstd) are used as given.
 */
export function groupNorm(rt: Runtime, x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number, o: GroupNormOptions = {}): Tensor {
  const op = 'groupNorm';
  const g = geometry(op, x, groups);
  expectShape(op, 'weight', weight, [g.C]);
  expectShape(op, 'bias', bias, [g.C]);
  checkEps(op, eps);
  if (o.silu !== undefined && typeof o.silu !== 'boolean') throw new ArgumentError(op, `silu must be a boolean, got ${String(o.silu)}`);
  if (o.scale) expectShape(op, 'scale', o.scale, [g.N, g.C]);
  if (o.shift) expectShape(op, 'shift', o.shift, [g.N, g.C]);
  if (o.stats) expectShape(op, 'stats', o.stats, [g.N, g.G, 2]);

  const NG = g.N * g.G;
  const flags = { SILU: !!o.silu, HAS_SCALE: !!o.scale, HAS_SHIFT: !!o.shift };
  const y = rt.empty(x.shape, 'f32', op);
  const bind = (stats: Tensor): Tensor[] => [x, stats, weight, bias, o.scale ?? weight, o.shift ?? weight, y];
  const base = { C: g.C, HW: g.HW, W: 0, G: g.G, Cg: g.Cg, ...NO_REGION, ...NO_SPLIT, NG, eps, V: 0 };
  const VEC4 = g.HW % 4 === 0;

  if (!o.stats && g.Cg * g.HW <= CHUNK) {
    const k = rt.kernel('group-norm', groupNormWgsl, { WG_SIZE, VEC4, ...flags }, 'main_fused');
    rt.dispatch(k, bind(weight), base, rt.grid(NG));
    return y;
  }
  rt.scope(() => {
    let stats = o.stats;
    if (!stats) {
      const { part, S } = partialMoments(rt, x, g, 0, null);
      stats = merge(rt, part, NG, S, S, 1, true, eps, [g.N, g.G, 2]);
    }
    const V = VEC4 ? x.numel / 4 : x.numel;
    const k = rt.kernel('group-norm', groupNormWgsl, { WG_SIZE, VEC4, ...flags }, 'main_apply');
    rt.dispatch(k, bind(stats), { ...base, V }, rt.grid(Math.ceil(V / WG_SIZE)));
  });
  return y;
}

/**
 * Per-(n, g) moments [N,G,3] = (count, mean, M2) of x [N,C,H,W] over a spatial region (default: all of it),
 * so tiles can be reduced separately and merged exactly with `groupNormStatsFromMoments`.
 */
export function groupNormMoments(rt: Runtime, x: Tensor, groups: number, region?: Region): Tensor {
  const op = 'groupNormMoments';
  const g = geometry(op, x, groups);
  let r: { y0: number; x0: number; Ry: number; Rx: number } | null = null;
  let W = 0;
  if (region !== undefined) {
    if (x.shape.length !== 4) throw new ShapeError(op, `a region needs x [N, C, H, W], got [${x.shape}]`);
    const H = x.shape[2]!;
    W = x.shape[3]!;
    const { y0, y1, x0, x1 } = region;
    const ok = [y0, y1, x0, x1].every((v) => Number.isInteger(v)) && 0 <= y0 && y0 < y1 && y1 <= H && 0 <= x0 && x0 < x1 && x1 <= W;
    if (!ok) throw new ArgumentError(op, `region {y0: ${y0}, y1: ${y1}, x0: ${x0}, x1: ${x1}} is empty or outside [${H}, ${W}]`);
    if (!(y0 === 0 && x0 === 0 && y1 === H && x1 === W)) r = { y0, x0, Ry: y1 - y0, Rx: x1 - x0 };
  }
  const NG = g.N * g.G;
  return rt.scope(() => {
    const { part, S } = partialMoments(rt, x, g, W, r);
    if (S === 1) return part.reshape([g.N, g.G, 3]);
    return merge(rt, part, NG, S, S, 1, false, 0, [g.N, g.G, 3]);
  });
}

/**
 * Merges per-tile moments [N,G,3] (Chan's parallel formula: exact, no Σx² cancellation) into
 * [N,G,2] (mean, rstd) with rstd = 1/sqrt(M2/count + eps).
 */
export function groupNormStatsFromMoments(rt: Runtime, moments: readonly Tensor[], eps: number): Tensor {
  const op = 'groupNormStatsFromMoments';
  if (!moments || moments.length === 0) throw new ArgumentError(op, 'needs at least one moments tensor');
  const shape = [...moments[0]!.shape];
  if (shape.length !== 3 || shape[2] !== 3) throw new ShapeError(op, `moments must be [N, G, 3], got [${shape}]`);
  moments.forEach((m, i) => expectShape(op, `moments[${i}]`, m, shape));
  checkEps(op, eps);
  const NG = shape[0]! * shape[1]!;
  if (NG === 0) throw new ShapeError(op, `moments [${shape}] are empty`);
  const out: [number, number, number] = [shape[0]!, shape[1]!, 2];
  if (moments.length === 1) return merge(rt, moments[0]!, NG, 1, 1, 1, true, eps, out);
  return rt.scope(() => {
    // Tiles side by side in one buffer: tile s of group ng at (s·NG + ng)·3.
    const all = rt.empty([moments.length, NG, 3], 'f32', `${op}.all`);
    moments.forEach((m, s) => rt.copy(m, 0, all, s * NG * 12, NG * 12));
    return merge(rt, all, NG, moments.length, 1, NG, true, eps, out);
  });
}
