import attentionWgsl from '../../shaders/attention.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

/** Head dims one invocation keeps in private arrays (shader constant DC_MAX). */
const DC_MAX = 64;
/** Workgroup size of the split kernel (shader constant WG_SPLIT); RG·NSPLIT must not exceed it. */
const SPLIT_INVOCATIONS = 64;
/** Row groups (of 4 query rows) per workgroup of the unsplit kernel. */
const RG = 32;

export interface AttentionOptions {
  /** Query i attends keys j ≤ i only (top-left aligned, as torch's `is_causal`). */
  causal?: boolean;
  /** Score scale; default 1/sqrt(D). */
  scale?: number;
}

/** Where an operand's elements are: off + b·SB + h·SH + row·SL + d. */
export interface AttentionLayout {
  off: number;
  SB: number;
  SH: number;
  SL: number;
}

/** @internal Problem size of one strided attention call. */
export interface AttentionDims {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  D: number;
}

/**
 * @internal Records the flash-attention kernel over arbitrarily strided q/k/v (which may be one buffer) into `y`.
 * Callers validate shapes; this checks only the options and the head-size limit.
 */
export function attentionStrided(
  rt: Runtime,
  op: string,
  [q, k, v, y]: [Tensor, Tensor, Tensor, Tensor],
  [ql, kl, vl, yl]: [AttentionLayout, AttentionLayout, AttentionLayout, AttentionLayout],
  { B, H, Lq, Lk, D }: AttentionDims,
  o: AttentionOptions,
): void {
  const scale = o.scale ?? 1 / Math.sqrt(D);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new ArgumentError(op, `scale must be a finite number, got ${o.scale}`);
  if (o.causal !== undefined && typeof o.causal !== 'boolean') throw new ArgumentError(op, `causal must be a boolean, got ${String(o.causal)}`);
  // A power of two, so that RG·NSPLIT fills the split kernel's workgroup exactly.
  const nSplit = 2 ** Math.ceil(Math.log2(Math.ceil(D / DC_MAX)));
  if (nSplit > SPLIT_INVOCATIONS) throw new ShapeError(op, `head dim D=${D} exceeds the supported ${DC_MAX * SPLIT_INVOCATIONS}`);
  if (B * H * Lq === 0) return;
  const DC = Math.ceil(D / nSplit);
  const rg = nSplit === 1 ? RG : SPLIT_INVOCATIONS / nSplit;
  const qTiles = Math.ceil(Lq / (4 * rg));
  const tiles = B * H * qTiles;
  const kernel = nSplit === 1 ? rt.kernel('attention', attentionWgsl, { RG: rg, NSPLIT: 1 }) : rt.kernel('attention', attentionWgsl, { RG: rg, NSPLIT: nSplit }, 'main_split');
  rt.dispatch(
    kernel,
    [q, k, v, y],
    {
      H, Lq, Lk, D, qTiles, tiles, causal: o.causal ? 1 : 0, DC, scale,
      qOff: ql.off, qSB: ql.SB, qSH: ql.SH, qSL: ql.SL,
      kOff: kl.off, kSB: kl.SB, kSH: kl.SH, kSL: kl.SL,
      vOff: vl.off, vSB: vl.SB, vSH: vl.SH, vSL: vl.SL,
      yOff: yl.off, ySB: yl.SB, ySH: yl.SH, ySL: yl.SL,
    },
    rt.grid(tiles),
  );
}

function checkF32(op: string, ts: Record<string, Tensor>): void {
  for (const [name, t] of Object.entries(ts)) {
    if (t.dtype !== 'f32') throw new ShapeError(op, `${name} must be f32 (activations are f32), got ${t.dtype}`);
  }
}

function checkRank(op: string, name: string, t: Tensor, rank: number, what: string): void {
  if (t.shape.length !== rank) throw new ShapeError(op, `${name} must be ${what}, got [${t.shape}]`);
}

/**
 * softmax(q kᵀ · scale) v per (batch, head), as torch.nn.functional.scaled_dot_product_attention (no dropout).
 * q [B,H,Lq,D], k/v [B,H,Lk,D] → [B,H,Lq,D]. Tiled online softmax; the Lq×Lk scores are never stored.
 */
export function scaledDotProductAttention(rt: Runtime, q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  const op = 'scaledDotProductAttention';
  checkRank(op, 'q', q, 4, '[B,H,Lq,D]');
  checkRank(op, 'k', k, 4, '[B,H,Lk,D]');
  checkRank(op, 'v', v, 4, '[B,H,Lk,D]');
  checkF32(op, { q, k, v });
  const [B, H, Lq, D] = q.shape as [number, number, number, number];
  const Lk = k.shape[2]!;
  if (k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== D) throw new ShapeError(op, `k [${k.shape}] does not match q [${q.shape}] in B, H or D`);
  if (v.shape.some((d, i) => d !== k.shape[i])) throw new ShapeError(op, `v [${v.shape}] must have the shape of k [${k.shape}]`);
  if (D === 0 || Lk === 0) throw new ShapeError(op, `D and Lk must be ≥ 1 (q [${q.shape}], k [${k.shape}])`);
  const y = rt.empty([B, H, Lq, D], 'f32', 'sdpa');
  const head = (L: number): AttentionLayout => ({ off: 0, SB: H * L * D, SH: L * D, SL: D });
  attentionStrided(rt, op, [q, k, v, y], [head(Lq), head(Lk), head(Lk), head(Lq)], { B, H, Lq, Lk, D }, o);
  return y;
}

/**
 * Multi-head attention on token-major tensors (heads split channels contiguously, head h = [h·D, (h+1)·D)),
 * as the SD transformer and CLIP use it after their q/k/v projections: q [B,Lq,H·D], k/v [B,Lk,H·D] → [B,Lq,H·D].
 */
export function multiHeadAttention(rt: Runtime, q: Tensor, k: Tensor, v: Tensor, heads: number, o: AttentionOptions = {}): Tensor {
  const op = 'multiHeadAttention';
  checkRank(op, 'q', q, 3, '[B,Lq,H·D]');
  checkRank(op, 'k', k, 3, '[B,Lk,H·D]');
  checkRank(op, 'v', v, 3, '[B,Lk,H·D]');
  checkF32(op, { q, k, v });
  const [B, Lq, C] = q.shape as [number, number, number];
  const Lk = k.shape[1]!;
  if (!Number.isInteger(heads) || heads < 1) throw new ArgumentError(op, `heads must be a positive integer, got ${heads}`);
  if (C % heads !== 0 || C === 0) throw new ShapeError(op, `channels ${C} of q [${q.shape}] are not divisible into ${heads} heads`);
  if (k.shape[0] !== B || k.shape[2] !== C) throw new ShapeError(op, `k [${k.shape}] does not match q [${q.shape}] in B or channels`);
  if (v.shape.some((d, i) => d !== k.shape[i])) throw new ShapeError(op, `v [${v.shape}] must have the shape of k [${k.shape}]`);
  if (Lk === 0) throw new ShapeError(op, `Lk must be ≥ 1 (k [${k.shape}])`);
  const D = C / heads;
  const y = rt.empty([B, Lq, C], 'f32', 'mha');
  const tok = (L: number): AttentionLayout => ({ off: 0, SB: L * C, SH: D, SL: C });
  attentionStrided(rt, op, [q, k, v, y], [tok(Lq), tok(Lk), tok(Lk), tok(Lq)], { B, H: heads, Lq, Lk, D }, o);
  return y;
}
