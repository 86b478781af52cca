import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { attentionStrided } from './attention.js';

/**
 * fm-boosting SpatialSelfAttention core (REFERENCE.md §2.4), raw-reshape layout reproduced exactly:
 * per batch item the [3·heads·d, L] block is read as [heads][L][3d] (q = j∈[0,d), k = [d,2d), v = [2d,3d)),
 * softmax(q kᵀ/sqrt(d)) v per head, and the [heads][L][d] result is written contiguously, i.e. read as [heads·d, L].
 * qkv [B, 3·heads·d, L] → [B, heads·d, L]. Both reinterpretations are strides of the flash-attention kernel.
 */
export function fmboostAttention(rt: Runtime, qkv: Tensor, heads: number, dHead: number): Tensor {
  const op = 'fmboostAttention';
  if (!Number.isInteger(heads) || heads < 1) throw new ArgumentError(op, `heads must be a positive integer, got ${heads}`);
  if (!Number.isInteger(dHead) || dHead < 1) throw new ArgumentError(op, `dHead must be a positive integer, got ${dHead}`);
  if (qkv.shape.length !== 3) throw new ShapeError(op, `qkv must be [B, 3·heads·d, L], got [${qkv.shape}]`);
  if (qkv.dtype !== 'f32') throw new ShapeError(op, `qkv must be f32 (activations are f32), got ${qkv.dtype}`);
  const [B, C3, L] = qkv.shape as [number, number, number];
  if (C3 !== 3 * heads * dHead) throw new ShapeError(op, `qkv has ${C3} channels; 3·heads·dHead = ${3 * heads * dHead} (heads=${heads}, dHead=${dHead})`);
  if (L === 0) throw new ShapeError(op, `L must be ≥ 1, got qkv [${qkv.shape}]`);
  const y = rt.empty([B, heads * dHead, L], 'f32', 'fmboost-attention');
  // One batch item is the slab [heads][L][3d]; token r of head m starts at m·L·3d + r·3d.
  const slab = (off: number) => ({ off, SB: C3 * L, SH: L * 3 * dHead, SL: 3 * dHead });
  const out = { off: 0, SB: heads * dHead * L, SH: L * dHead, SL: dHead };
  attentionStrided(rt, op, [qkv, qkv, qkv, y], [slab(0), slab(dHead), slab(2 * dHead), out], { B, H: heads, Lq: L, Lk: L, D: dHead }, {});
  return y;
}
