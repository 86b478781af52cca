/**
 * The UNet's building blocks in diffusers' names and key layout (REFERENCE §7.3–7.4):
 * https://github.com/huggingface/diffusers/blob/main/src/diffusers/models/resnet.py (ResnetBlock2D),
 * .../models/transformers/transformer_2d.py (Transformer2DModel), .../models/attention.py (BasicTransformerBlock,
 * FeedForward, GEGLU), .../models/attention_processor.py (Attention).
 * Every forward runs in its own rt.scope, so a block's intermediates go back to the pool as soon as it returns.
 */
import type { WeightScope } from '../../io/weights.js';
import { Conv2d, GroupNorm, LayerNorm, Linear } from '../../nn/layers.js';
import { multiHeadAttention } from '../../ops/attention.js';
import { addPerChannel, geglu, transpose } from '../../ops/elementwise.js';
import type { Runtime } from '../../runtime/runtime.js';
import type { Tensor } from '../../runtime/tensor.js';

/**
 * ResnetBlock2D, "default" time-embedding mode: h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(temb))[:, :, None, None];
 * out = shortcut(x) + conv2(SiLU(norm2(h))), shortcut = 1×1 conv_shortcut when channels change.
 */
export class ResnetBlock2D {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly timeEmbProj: Linear | undefined;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | undefined;

  constructor(w: WeightScope, readonly inChannels: number, readonly outChannels: number, o: { groups: number; eps: number; tembChannels: number | null }) {
    this.norm1 = new GroupNorm(w.pp('norm1'), o.groups, inChannels, o.eps);
    this.conv1 = new Conv2d(w.pp('conv1'), inChannels, outChannels);
    this.timeEmbProj = o.tembChannels === null ? undefined : new Linear(w.pp('time_emb_proj'), o.tembChannels, outChannels);
    this.norm2 = new GroupNorm(w.pp('norm2'), o.groups, outChannels, o.eps);
    // dropout between norm2 and conv2 is identity at inference (no weights)
    this.conv2 = new Conv2d(w.pp('conv2'), outChannels, outChannels);
    this.convShortcut = inChannels === outChannels ? undefined : new Conv2d(w.pp('conv_shortcut'), inChannels, outChannels, { kernel: 1 });
  }

  /** x [N, Cin, H, W], tembAct = SiLU(temb) [N, T] (computed once per UNet call) → [N, Cout, H, W]. */
  forward(rt: Runtime, x: Tensor, tembAct: Tensor | undefined): Tensor {
    return rt.scope(() => {
      let h = this.conv1.forward(rt, this.norm1.forward(rt, x, { silu: true })); // [N, Cout, H, W]
      if (this.timeEmbProj && tembAct) h = addPerChannel(rt, h, this.timeEmbProj.forward(rt, tembAct)); // + [N, Cout]
      const res = this.convShortcut ? this.convShortcut.forward(rt, x) : x;
      return this.conv2.forward(rt, this.norm2.forward(rt, h, { silu: true }), { residual: res });
    });
  }
}

/** diffusers `Attention` without q/k/v bias (SD UNets): to_out.0(MHA(to_q(x), to_k(ctx), to_v(ctx))) + residual. */
export class Attention {
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;

  constructor(w: WeightScope, queryDim: number, contextDim: number, readonly heads: number) {
    this.toQ = new Linear(w.pp('to_q'), queryDim, queryDim, { bias: false });
    this.toK = new Linear(w.pp('to_k'), contextDim, queryDim, { bias: false });
    this.toV = new Linear(w.pp('to_v'), contextDim, queryDim, { bias: false });
    // to_out.1 is dropout (no weights)
    this.toOut = new Linear(w.pp('to_out').pp(0), queryDim, queryDim);
  }

  /** x [N, L, C], context [N, Lc, Cc] (x itself for self-attention), residual [N, L, C] → [N, L, C]. */
  forward(rt: Runtime, x: Tensor, context: Tensor, residual: Tensor): Tensor {
    return rt.scope(() => {
      const q = this.toQ.forward(rt, x); // [N, L, C]
      const k = this.toK.forward(rt, context); // [N, Lc, C]
      const v = this.toV.forward(rt, context);
      const a = multiHeadAttention(rt, q, k, v, this.heads); // [N, L, C], scale 1/sqrt(C/heads)
      return this.toOut.forward(rt, a, { residual });
    });
  }
}

/** BasicTransformerBlock (layer_norm type): self-attention, cross-attention, GEGLU feed-forward, each pre-LN + residual. */
export class BasicTransformerBlock {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ffProj: Linear;
  readonly ffOut: Linear;

  constructor(w: WeightScope, dim: number, crossAttentionDim: number, heads: number) {
    this.norm1 = new LayerNorm(w.pp('norm1'), dim, 1e-5);
    this.attn1 = new Attention(w.pp('attn1'), dim, dim, heads);
    this.norm2 = new LayerNorm(w.pp('norm2'), dim, 1e-5);
    this.attn2 = new Attention(w.pp('attn2'), dim, crossAttentionDim, heads);
    this.norm3 = new LayerNorm(w.pp('norm3'), dim, 1e-5);
    const ff = w.pp('ff').pp('net');
    this.ffProj = new Linear(ff.pp(0).pp('proj'), dim, 8 * dim); // GEGLU: value and gate halves of 4·dim each
    // ff.net.1 is dropout (no weights)
    this.ffOut = new Linear(ff.pp(2), 4 * dim, dim);
  }

  /** x [N, L, C] tokens, context [N, Lc, Cc] → [N, L, C]. */
  forward(rt: Runtime, x: Tensor, context: Tensor): Tensor {
    return rt.scope(() => {
      const n1 = this.norm1.forward(rt, x);
      const x1 = this.attn1.forward(rt, n1, n1, x);
      const x2 = this.attn2.forward(rt, this.norm2.forward(rt, x1), context, x1);
      const g = geglu(rt, this.ffProj.forward(rt, this.norm3.forward(rt, x2))); // [N, L, 8C] -> [N, L, 4C]
      return this.ffOut.forward(rt, g, { residual: x2 }); // [N, L, C]
    });
  }
}

/**
 * Transformer2DModel with continuous input: GroupNorm (eps 1e-6) → proj_in → tokens → BasicTransformerBlocks →
 * proj_out → + input. proj_in/proj_out are 1×1 convs (SD-1.x) or Linear (use_linear_projection); as per-pixel
 * matrices both are the same product, so one Linear/Conv2d pair loads either weight shape.
 */
export class Transformer2DModel {
  readonly norm: GroupNorm;
  readonly projIn: Linear;
  readonly transformerBlocks: BasicTransformerBlock[];
  readonly projOut: Conv2d;

  constructor(w: WeightScope, readonly channels: number, o: { heads: number; layers: number; crossAttentionDim: number; groups: number }) {
    this.norm = new GroupNorm(w.pp('norm'), o.groups, channels, 1e-6);
    this.projIn = new Linear(w.pp('proj_in'), channels, channels);
    this.transformerBlocks = Array.from({ length: o.layers }, (_, i) => new BasicTransformerBlock(w.pp('transformer_blocks').pp(i), channels, o.crossAttentionDim, o.heads));
    this.projOut = new Conv2d(w.pp('proj_out'), channels, channels, { kernel: 1 });
  }

  /** x [N, C, H, W], context [N, Lc, Cc] → [N, C, H, W]. */
  forward(rt: Runtime, x: Tensor, context: Tensor): Tensor {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    return rt.scope(() => {
      const n = this.norm.forward(rt, x).reshape([N, C, H * W]);
      let t = this.projIn.forward(rt, transpose(rt, n)); // [N, C, HW] -> [N, HW, C]
      for (const block of this.transformerBlocks) t = block.forward(rt, t, context);
      const back = transpose(rt, t).reshape([N, C, H, W]); // [N, HW, C] -> [N, C, H, W]
      return this.projOut.forward(rt, back, { residual: x });
    });
  }
}

/** Downsample2D with a conv: 3×3 stride 2, pad 1 on every side (or right/bottom only when downsample_padding = 0). */
export class Downsample2D {
  readonly conv: Conv2d;
  constructor(w: WeightScope, channels: number, padding: 0 | 1) {
    this.conv = new Conv2d(w.pp('conv'), channels, channels, { stride: 2, padding: padding === 1 ? 1 : [0, 1, 0, 1] });
  }

  forward(rt: Runtime, x: Tensor): Tensor {
    return this.conv.forward(rt, x); // [N, C, H, W] -> [N, C, H/2, W/2]
  }
}

/** Upsample2D with a conv: nearest ×2 then 3×3 conv (the upsampling is fused into the conv's input reads). */
export class Upsample2D {
  readonly conv: Conv2d;
  constructor(w: WeightScope, channels: number) {
    this.conv = new Conv2d(w.pp('conv'), channels, channels);
  }

  forward(rt: Runtime, x: Tensor): Tensor {
    return this.conv.forward(rt, x, { upsample2x: true }); // [N, C, H, W] -> [N, C, 2H, 2W]
  }
}
