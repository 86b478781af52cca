import groupNormWgsl from '../../shaders/group-norm.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { shaderVariant, subgroupKernels } from './subgroups.js';

const WG_SIZE = 256;
/** The entry points that need no subgroups. */
const PORTABLE = shaderVariant('group-norm', groupNormWgsl, false).code;
/**
 * Values (vec4s on the vectorised path) one invocation reduces into one (count, mean, M2) partial: long
 * runs amortise the per-invocation cost (and keep 1×512×64² groups to one chunk, one merge level).
 */
const K = 64;
/** Partials one merge invocation folds together; more levels are added for huge groups. */
const MERGE = 256;
/** vec4s per invocation of main_apply_plane for planes of `HW` values: 4, 2 or 1, or 0 if it does not apply. */
function planeVec4s(HW: number): number {
  for (const J of [4, 2, 1]) if (HW % (4 * WG_SIZE * J) === 0) return J;
  return 0;
}

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

const GEOMETRY_UNUSED = { C: 0, HW: 0, W: 0, G: 0, Cg: 0, y0: 0, x0: 0, Ry: 0, Rx: 0, K: 0, P: 0 };

/**
 * Per-(n, g) (count, mean, M2) of x over a region (null = whole image, vectorised when H·W % 4 == 0),
 * reduced to `[N,G,3]` moments, or to `[N,G,2]` (mean, rstd) when `eps` is given.
 */
function reduceGroups(rt: Runtime, x: Tensor, g: Geometry, W: number, region: { y0: number; x0: number; Ry: number; Rx: number } | null, eps: number | null): Tensor {
  const VEC4 = region === null && g.HW % 4 === 0;
  const r = region ?? { y0: 0, x0: 0, Ry: 1, Rx: g.HW };
  const units = (g.Cg * r.Ry * r.Rx) / (VEC4 ? 4 : 1);
  const k = Math.min(K, Math.ceil(units / WG_SIZE));
  const S = Math.ceil(units / (WG_SIZE * k));
  const NG = g.N * g.G;
  return rt.scope(() => {
    const part = rt.empty([NG * S * WG_SIZE, 3], 'f32', 'groupNorm.partials');
    const kernel = rt.kernel('group-norm', PORTABLE, { WG_SIZE, VEC4 }, 'main_moments');
    const p = { C: g.C, HW: g.HW, W, G: g.G, Cg: g.Cg, ...r, K: k, S, NG, So: 0, M: 0, strideNG: 0, strideS: 0, eps: 0, V: 0, P: 0 };
    rt.dispatch(kernel, [x, x, x, x, x, x, part], p, rt.grid(NG * S));
    return mergeMoments(rt, part, NG, S * WG_SIZE, S * WG_SIZE, 1, eps, [g.N, g.G]);
  });
}

/**
 * Chan-merges S triples per group, laid out at (ng·strideNG + s·strideS)·3, in as many levels as needed
 * (each folds MERGE partials), into moments [...NG, 3] or, with eps, stats [...NG, 2]. With subgroups the
 * lanes of a subgroup read each output's partials together (main_merge_sg).
 */
function mergeMoments(rt: Runtime, src: Tensor, NG: number, S: number, strideNG: number, strideS: number, eps: number | null, lead: number[]): Tensor {
  const sg = subgroupKernels(rt);
  return rt.scope(() => {
    let cur = src;
    while (true) {
      const last = S <= MERGE;
      const So = last ? 1 : Math.ceil(S / MERGE);
      const stats = last && eps !== null;
      const out = rt.empty(last ? [...lead, stats ? 2 : 3] : [NG * So, 3], 'f32', stats ? 'groupNorm.stats' : 'groupNorm.moments');
      const v = shaderVariant('group-norm', groupNormWgsl, sg);
      const kernel = rt.kernel(v.stem, v.code, { WG_SIZE, STATS: stats }, sg ? 'main_merge_sg' : 'main_merge');
      const p = { ...GEOMETRY_UNUSED, S, NG, So, M: last ? S : MERGE, strideNG, strideS, eps: eps ?? 0, V: 0 };
      rt.dispatch(kernel, [cur, cur, cur, cur, cur, cur, out], p, rt.grid(Math.ceil((NG * So) / WG_SIZE)));
      if (last) return out;
      cur = out;
      S = So;
      strideNG = So;
      strideS = 1;
    }
  });
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

  const flags = { SILU: !!o.silu, HAS_SCALE: !!o.scale, HAS_SHIFT: !!o.shift };
  const y = rt.empty(x.shape, 'f32', op);
  rt.scope(() => {
    const stats = o.stats ?? reduceGroups(rt, x, g, 0, null, eps);
    const VEC4 = g.HW % 4 === 0;
    const bind = [x, stats, weight, bias, o.scale ?? weight, o.shift ?? weight, y];
    const base = { ...GEOMETRY_UNUSED, C: g.C, HW: g.HW, G: g.G, Cg: g.Cg, S: 0, NG: g.N * g.G, So: 0, M: 0, strideNG: 0, strideS: 0, eps };
    const J = planeVec4s(g.HW);
    if (J > 0) {
      const P = g.HW / 4 / (WG_SIZE * J);
      const V = g.N * g.C * P;
      const k = rt.kernel('group-norm', PORTABLE, { WG_SIZE, APPLY_J: J, ...flags }, 'main_apply_plane');
      rt.dispatch(k, bind, { ...base, V, P }, rt.grid(V));
    } else {
      const V = VEC4 ? x.numel / 4 : x.numel;
      const k = rt.kernel('group-norm', PORTABLE, { WG_SIZE, VEC4, ...flags }, 'main_apply');
      rt.dispatch(k, bind, { ...base, V }, rt.grid(Math.ceil(V / WG_SIZE)));
    }
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
  return reduceGroups(rt, x, g, W, r, null);
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
  const lead = [shape[0]!, shape[1]!];
  if (moments.length === 1) return mergeMoments(rt, moments[0]!, NG, 1, 1, 1, eps, lead);
  return rt.scope(() => {
    // Tiles side by side in one buffer: tile s of group ng at (s·NG + ng)·3.
    const all = rt.empty([moments.length, NG, 3], 'f32', `${op}.all`);
    moments.forEach((m, s) => rt.copy(m, 0, all, s * NG * 12, NG * 12));
    return mergeMoments(rt, all, NG, moments.length, 1, NG, eps, lead);
  });
}
