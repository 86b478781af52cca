/**
 * AutoencoderKL building blocks, diffusers layout and key names:
 * https://github.com/huggingface/diffusers/blob/main/src/diffusers/models/autoencoders/vae.py (Encoder, Decoder)
 * and unets/unet_2d_blocks.py (DownEncoderBlock2D, UpDecoderBlock2D, UNetMidBlock2D). Every GroupNorm has
 * eps 1e-6. Each `forward` takes ownership of its input TiledAct and returns a new one.
 */
import type { WeightScope } from '../../io/weights.js';
import { Conv2d, GroupNorm, Linear } from '../../nn/layers.js';
import type { AutoencoderKLConfig } from './config.js';
import type { NamedNorm, TileExec, TiledAct } from './tiled.js';

/** GroupNorm eps of every norm in the SD VAE family. */
export const VAE_EPS = 1e-6;

function norm(w: WeightScope, name: string, groups: number, channels: number): NamedNorm {
  const s = w.pp(name);
  return { layer: new GroupNorm(s, groups, channels, VAE_EPS), key: s.prefix.slice(0, -1) };
}

/** ResnetBlock2D without time embedding: out = shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))). */
export class ResnetBlock2D {
  readonly norm1: NamedNorm;
  readonly conv1: Conv2d;
  readonly norm2: NamedNorm;
  readonly conv2: Conv2d;
  /** 1×1 conv when the channel count changes (LDM `nin_shortcut`). */
  readonly convShortcut: Conv2d | undefined;

  constructor(w: WeightScope, readonly inChannels: number, readonly outChannels: number, groups: number) {
    this.norm1 = norm(w, 'norm1', groups, inChannels);
    this.conv1 = new Conv2d(w.pp('conv1'), inChannels, outChannels, { kernel: 3 });
    this.norm2 = norm(w, 'norm2', groups, outChannels);
    this.conv2 = new Conv2d(w.pp('conv2'), outChannels, outChannels, { kernel: 3 });
    this.convShortcut = inChannels !== outChannels ? new Conv2d(w.pp('conv_shortcut'), inChannels, outChannels, { kernel: 1 }) : undefined;
  }

  async forward(ex: TileExec, x: TiledAct): Promise<TiledAct> {
    const h = await ex.conv(this.conv1, x, { norm: this.norm1 }); // SiLU fused into the norm
    return ex.conv(this.conv2, h, { norm: this.norm2, residual: x, shortcut: this.convShortcut, consume: true }); // dropout 0
  }
}

/** The mid-block self-attention: one head of C channels over all pixels, GroupNorm in, residual out. */
export class VaeAttention {
  readonly groupNorm: NamedNorm;
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;

  constructor(w: WeightScope, channels: number, groups: number) {
    this.groupNorm = norm(w, 'group_norm', groups, channels);
    // LDM stores these as 1×1 convs [C, C, 1, 1]; Linear accepts both layouts.
    this.toQ = new Linear(w.pp('to_q'), channels, channels);
    this.toK = new Linear(w.pp('to_k'), channels, channels);
    this.toV = new Linear(w.pp('to_v'), channels, channels);
    this.toOut = new Linear(w.pp('to_out').pp(0), channels, channels); // to_out.1 is Dropout (no weights)
  }

  forward(ex: TileExec, x: TiledAct): Promise<TiledAct> {
    return ex.attention(this.groupNorm, this.toQ, this.toK, this.toV, this.toOut, x);
  }
}

/** UNetMidBlock2D: resnet, (attention, resnet). */
export class MidBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly attention: VaeAttention | undefined;

  constructor(w: WeightScope, channels: number, groups: number, withAttention: boolean) {
    this.resnets = [0, 1].map((i) => new ResnetBlock2D(w.pp('resnets').pp(i), channels, channels, groups));
    this.attention = withAttention ? new VaeAttention(w.pp('attentions').pp(0), channels, groups) : undefined;
  }

  async forward(ex: TileExec, x: TiledAct): Promise<TiledAct> {
    let h = await this.resnets[0]!.forward(ex, x);
    if (this.attention) h = await this.attention.forward(ex, h);
    return this.resnets[1]!.forward(ex, h);
  }
}

/** DownEncoderBlock2D: resnets, then (all but the last level) Downsample2D with (0, 1, 0, 1) padding, stride 2. */
export class DownEncoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly downsampler: Conv2d | undefined;

  constructor(w: WeightScope, inChannels: number, outChannels: number, layers: number, groups: number, addDownsample: boolean) {
    this.resnets = Array.from({ length: layers }, (_, j) => new ResnetBlock2D(w.pp('resnets').pp(j), j === 0 ? inChannels : outChannels, outChannels, groups));
    this.downsampler = addDownsample ? new Conv2d(w.pp('downsamplers').pp(0).pp('conv'), outChannels, outChannels, { kernel: 3, stride: 2, padding: [0, 1, 0, 1] }) : undefined;
  }

  async forward(ex: TileExec, x: TiledAct): Promise<TiledAct> {
    let h = x;
    for (const r of this.resnets) h = await r.forward(ex, h);
    if (this.downsampler) h = await ex.conv(this.downsampler, h, { resample: 'down', consume: true }); // [N, C, H, W] -> [N, C, H/2, W/2]
    return h;
  }
}

/** UpDecoderBlock2D: resnets, then (all but the last level) nearest ×2 + conv3×3. */
export class UpDecoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly upsampler: Conv2d | undefined;

  constructor(w: WeightScope, inChannels: number, outChannels: number, layers: number, groups: number, addUpsample: boolean) {
    this.resnets = Array.from({ length: layers }, (_, j) => new ResnetBlock2D(w.pp('resnets').pp(j), j === 0 ? inChannels : outChannels, outChannels, groups));
    this.upsampler = addUpsample ? new Conv2d(w.pp('upsamplers').pp(0).pp('conv'), outChannels, outChannels, { kernel: 3 }) : undefined;
  }

  async forward(ex: TileExec, x: TiledAct): Promise<TiledAct> {
    let h = x;
    for (const r of this.resnets) h = await r.forward(ex, h);
    if (this.upsampler) h = await ex.conv(this.upsampler, h, { resample: 'up', consume: true }); // [N, C, H, W] -> [N, C, 2H, 2W]
    return h;
  }
}

/** vae.Encoder: conv_in, down blocks, mid block, GroupNorm + SiLU, conv_out to 2·latent channels. */
export class Encoder {
  readonly convIn: Conv2d;
  readonly downBlocks: DownEncoderBlock2D[];
  readonly midBlock: MidBlock2D;
  readonly convNormOut: NamedNorm;
  readonly convOut: Conv2d;

  constructor(w: WeightScope, c: AutoencoderKLConfig) {
    const ch = c.block_out_channels;
    const G = c.norm_num_groups;
    this.convIn = new Conv2d(w.pp('conv_in'), c.in_channels, ch[0]!, { kernel: 3 });
    this.downBlocks = ch.map((out, i) => new DownEncoderBlock2D(w.pp('down_blocks').pp(i), i === 0 ? ch[0]! : ch[i - 1]!, out, c.layers_per_block, G, i < ch.length - 1));
    const top = ch[ch.length - 1]!;
    this.midBlock = new MidBlock2D(w.pp('mid_block'), top, G, c.mid_block_add_attention !== false);
    this.convNormOut = norm(w, 'conv_norm_out', G, top);
    this.convOut = new Conv2d(w.pp('conv_out'), top, 2 * c.latent_channels, { kernel: 3 }); // double_z
  }

  /**
   * Stage i of the down path: down block i (stage 0 starts with conv_in). The stages, in order, take the
   * image to latent resolution; streaming encoding runs them one at a time.
   */
  stage(ex: TileExec, x: TiledAct, i: number): Promise<TiledAct> {
    const block = this.downBlocks[i]!;
    if (i > 0) return block.forward(ex, x);
    return ex.conv(this.convIn, x, { consume: true }).then((h) => block.forward(ex, h));
  }

  /** Stages `from`… of the down path: image resolution → latent resolution. */
  async downPath(ex: TileExec, x: TiledAct, from = 0): Promise<TiledAct> {
    let h = x;
    for (let i = from; i < this.downBlocks.length; i++) h = await this.stage(ex, h, i);
    return h;
  }

  /** Mid block, norm, conv_out: at latent resolution. */
  async head(ex: TileExec, x: TiledAct): Promise<TiledAct> {
    const h = await this.midBlock.forward(ex, x);
    return ex.conv(this.convOut, h, { norm: this.convNormOut, consume: true });
  }
}

/** vae.Decoder: conv_in, mid block, up blocks, GroupNorm + SiLU, conv_out. No tanh, no clamp. */
export class Decoder {
  readonly convIn: Conv2d;
  readonly midBlock: MidBlock2D;
  readonly upBlocks: UpDecoderBlock2D[];
  readonly convNormOut: NamedNorm;
  readonly convOut: Conv2d;

  constructor(w: WeightScope, c: AutoencoderKLConfig) {
    const rev = [...c.block_out_channels].reverse();
    const G = c.norm_num_groups;
    this.convIn = new Conv2d(w.pp('conv_in'), c.latent_channels, rev[0]!, { kernel: 3 });
    this.midBlock = new MidBlock2D(w.pp('mid_block'), rev[0]!, G, c.mid_block_add_attention !== false);
    this.upBlocks = rev.map((out, i) => new UpDecoderBlock2D(w.pp('up_blocks').pp(i), i === 0 ? rev[0]! : rev[i - 1]!, out, c.layers_per_block + 1, G, i < rev.length - 1));
    const last = rev[rev.length - 1]!;
    this.convNormOut = norm(w, 'conv_norm_out', G, last);
    this.convOut = new Conv2d(w.pp('conv_out'), last, c.out_channels, { kernel: 3 });
  }

  /** conv_in and the mid block: at latent resolution (always exact, global attention). */
  async head(ex: TileExec, z: TiledAct): Promise<TiledAct> {
    const h = await ex.conv(this.convIn, z, { consume: true });
    return this.midBlock.forward(ex, h);
  }

  /** Up blocks, norm, conv_out: latent resolution → image resolution (the part streaming tiles). */
  async upPath(ex: TileExec, x: TiledAct): Promise<TiledAct> {
    let h = x;
    for (const b of this.upBlocks) h = await b.forward(ex, h);
    return ex.conv(this.convOut, h, { norm: this.convNormOut, consume: true });
  }
}
