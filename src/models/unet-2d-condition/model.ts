/**
 * SD-1.x UNet (diffusers `UNet2DConditionModel`, REFERENCE §7), including LCM-distilled UNets (`time_cond_proj_dim`):
 * https://github.com/huggingface/diffusers/blob/main/src/diffusers/models/unets/unet_2d_condition.py
 *
 * conv_in → down blocks (ResNet [+ Transformer2D]) × L, downsample → mid (ResNet, Transformer2D, ResNet) →
 * up blocks (ResNet on cat([h, skip]) [+ Transformer2D]) × (L+1), upsample → GroupNorm, SiLU, conv_out.
 */
import type { TensorSource } from '../../io/safetensors.js';
import { loadWeights, type WeightScope } from '../../io/weights.js';
import { Conv2d, GroupNorm, Linear } from '../../nn/layers.js';
import { concat, silu } from '../../ops/elementwise.js';
import { timestepEmbedding } from '../../ops/embedding.js';
import { ArgumentError, ShapeError } from '../../runtime/errors.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { unetKeyRenamer } from '../keys.js';
import { Downsample2D, ResnetBlock2D, Transformer2DModel, Upsample2D } from './blocks.js';
import { checkUNetConfig, UNet2DConditionConfig } from './config.js';

/** TimestepEmbedding: linear_2(SiLU(linear_1(t_emb [+ cond_proj(timestep_cond)]))). */
export class TimestepEmbedding {
  readonly condProj: Linear | undefined;
  readonly linear1: Linear;
  readonly linear2: Linear;
  constructor(w: WeightScope, inChannels: number, dim: number, condProjDim: number | null) {
    this.condProj = condProjDim === null ? undefined : new Linear(w.pp('cond_proj'), condProjDim, inChannels, { bias: false });
    this.linear1 = new Linear(w.pp('linear_1'), inChannels, dim);
    this.linear2 = new Linear(w.pp('linear_2'), dim, dim);
  }

  /** tEmb [N, C0], condition [N, Dc] → [N, T]. */
  forward(rt: Runtime, tEmb: Tensor, condition: Tensor | undefined, debug?: (name: string, t: Tensor) => void): Tensor {
    return rt.scope(() => {
      let x = tEmb;
      if (this.condProj && condition) {
        if (debug) {
          const c = this.condProj.forward(rt, condition); // [N, C0]
          debug('time_embedding.cond_proj', c);
        }
        x = this.condProj.forward(rt, condition, { residual: tEmb }); // added before linear_1
      }
      return this.linear2.forward(rt, this.linear1.forward(rt, x, { activation: 'silu' })); // [N, T]
    });
  }
}

/** CrossAttnDownBlock2D / DownBlock2D: (ResNet [+ Transformer2D]) × L, then an optional stride-2 conv. */
class DownBlock {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly downsampler: Downsample2D | undefined;
  constructor(w: WeightScope, cfg: UNet2DConditionConfig, i: number, inChannels: number) {
    const out = cfg.blockOutChannels[i]!;
    const last = i === cfg.blockOutChannels.length - 1;
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      this.resnets.push(new ResnetBlock2D(w.pp('resnets').pp(j), j === 0 ? inChannels : out, out, resnetOptions(cfg)));
      if (cfg.downBlockTypes[i] === 'CrossAttnDownBlock2D') this.attentions.push(new Transformer2DModel(w.pp('attentions').pp(j), out, attnOptions(cfg, i)));
    }
    this.downsampler = last ? undefined : new Downsample2D(w.pp('downsamplers').pp(0), out, cfg.downsamplePadding);
  }

  /** Pushes each output (ResNet + attention, then the downsampled one) onto `skips`; returns the last. */
  forward(rt: Runtime, x: Tensor, tembAct: Tensor, context: Tensor, skips: Tensor[]): Tensor {
    let h = x;
    this.resnets.forEach((r, j) => {
      h = r.forward(rt, h, tembAct);
      const attn = this.attentions[j];
      if (attn) h = consume(h, attn.forward(rt, h, context));
      skips.push(h);
    });
    if (this.downsampler) skips.push((h = this.downsampler.forward(rt, h)));
    return h;
  }
}

/** CrossAttnUpBlock2D / UpBlock2D: (ResNet on cat([h, skip]) [+ Transformer2D]) × (L+1), then an optional upsample. */
class UpBlock {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly upsampler: Upsample2D | undefined;
  constructor(w: WeightScope, cfg: UNet2DConditionConfig, i: number) {
    const rev = [...cfg.blockOutChannels].reverse();
    const n = rev.length;
    const out = rev[i]!;
    const prevOut = rev[Math.max(i - 1, 0)]!;
    const skipIn = rev[Math.min(i + 1, n - 1)]!;
    const level = n - 1 - i;
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      const skip = j === cfg.layersPerBlock ? skipIn : out;
      this.resnets.push(new ResnetBlock2D(w.pp('resnets').pp(j), (j === 0 ? prevOut : out) + skip, out, resnetOptions(cfg)));
      if (cfg.upBlockTypes[i] === 'CrossAttnUpBlock2D') this.attentions.push(new Transformer2DModel(w.pp('attentions').pp(j), out, attnOptions(cfg, level)));
    }
    this.upsampler = i === n - 1 ? undefined : new Upsample2D(w.pp('upsamplers').pp(0), out);
  }

  /** Pops one skip per ResNet; `x` and the skips it pops are disposed once used (none is needed again). */
  forward(rt: Runtime, x: Tensor, tembAct: Tensor, context: Tensor, skips: Tensor[]): Tensor {
    let h = x;
    this.resnets.forEach((r, j) => {
      const skip = skips.pop()!;
      h = consume(h, rt.scope(() => r.forward(rt, concat(rt, [h, skip], 1), tembAct))); // cat([h, skip]): h first
      skip.dispose();
      const attn = this.attentions[j];
      if (attn) h = consume(h, attn.forward(rt, h, context));
    });
    if (this.upsampler) h = consume(h, this.upsampler.forward(rt, h));
    return h;
  }
}

/** UNetMidBlock2DCrossAttn with one layer: ResNet, Transformer2D, ResNet. */
class MidBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  constructor(w: WeightScope, cfg: UNet2DConditionConfig) {
    const n = cfg.blockOutChannels.length;
    const C = cfg.blockOutChannels[n - 1]!;
    this.resnets = [0, 1].map((j) => new ResnetBlock2D(w.pp('resnets').pp(j), C, C, resnetOptions(cfg)));
    this.attentions = [new Transformer2DModel(w.pp('attentions').pp(0), C, attnOptions(cfg, n - 1))];
  }

  forward(rt: Runtime, x: Tensor, tembAct: Tensor, context: Tensor): Tensor {
    let h = this.resnets[0]!.forward(rt, x, tembAct);
    h = consume(h, this.attentions[0]!.forward(rt, h, context));
    return consume(h, this.resnets[1]!.forward(rt, h, tembAct));
  }
}

/** Frees `used` (an intermediate nothing else holds) and returns `next`: keeps peak memory near one level's worth. */
function consume(used: Tensor, next: Tensor): Tensor {
  used.dispose();
  return next;
}

function resnetOptions(cfg: UNet2DConditionConfig): { groups: number; eps: number; tembChannels: number } {
  return { groups: cfg.normNumGroups, eps: cfg.normEps, tembChannels: cfg.timeEmbeddingDim };
}

function attnOptions(cfg: UNet2DConditionConfig, level: number): { heads: number; layers: number; crossAttentionDim: number; groups: number } {
  return { heads: cfg.numAttentionHeads[level]!, layers: cfg.transformerLayersPerBlock[level]!, crossAttentionDim: cfg.crossAttentionDim, groups: cfg.normNumGroups };
}

export interface UNetForwardOptions {
  /** LCM-distilled UNets: the guidance embedding [N, timeCondProjDim] (`guidanceEmbedding(w = g − 1)`). */
  timestepCond?: Tensor;
  /**
   * Receives copies of sub-module outputs under diffusers' module names (`time_proj`, `time_embedding`,
   * `conv_in`, `down_blocks.{i}`, `mid_block`, `up_blocks.{i}`, `conv_norm_out`, `conv_out`). The caller owns them.
   */
  debug?: Map<string, Tensor>;
}

export interface UNetLoadOptions {
  /** Weight storage (activations are always f32). */
  dtype?: 'auto' | 'f32' | 'f16';
  signal?: AbortSignal;
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/** diffusers `UNet2DConditionModel`: ε = unet(sample [N, 4, h, w], t, encoder_hidden_states [N, L, Dc]). */
export class UNet2DConditionModel {
  readonly timeEmbedding: TimestepEmbedding;
  readonly convIn: Conv2d;
  readonly downBlocks: DownBlock[];
  readonly midBlock: MidBlock;
  readonly upBlocks: UpBlock[];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  /** From weights with diffusers key names (use `load` for single-file checkpoints). */
  constructor(
    private readonly w: WeightScope,
    readonly config: UNet2DConditionConfig = UNet2DConditionConfig.sd15,
  ) {
    checkUNetConfig(config, 'UNet2DConditionModel');
    const ch = config.blockOutChannels;
    this.timeEmbedding = new TimestepEmbedding(w.pp('time_embedding'), ch[0]!, config.timeEmbeddingDim, config.timeCondProjDim);
    this.convIn = new Conv2d(w.pp('conv_in'), config.inChannels, ch[0]!, { kernel: config.convInKernel });
    this.downBlocks = ch.map((_, i) => new DownBlock(w.pp('down_blocks').pp(i), config, i, i === 0 ? ch[0]! : ch[i - 1]!));
    this.midBlock = new MidBlock(w.pp('mid_block'), config);
    this.upBlocks = ch.map((_, i) => new UpBlock(w.pp('up_blocks').pp(i), config, i));
    this.convNormOut = new GroupNorm(w.pp('conv_norm_out'), config.normNumGroups, ch[0]!, config.normEps);
    this.convOut = new Conv2d(w.pp('conv_out'), ch[0]!, config.outChannels, { kernel: config.convOutKernel });
  }

  /**
   * Loads diffusers `unet/diffusion_pytorch_model.safetensors` names or SD single-file names
   * (`model.diffusion_model.*`, from .safetensors or a .ckpt opened with openCheckpoint; the VAE, text encoder,
   * EMA copies and DDPM buffers in such a file are skipped). Every UNet weight must be used.
   */
  static async load(rt: Runtime, source: TensorSource, config: UNet2DConditionConfig = UNet2DConditionConfig.sd15, o: UNetLoadOptions = {}): Promise<UNet2DConditionModel> {
    checkUNetConfig(config, 'UNet2DConditionModel.load');
    const w = await loadWeights(rt, source, { rename: unetKeyRenamer(source.keys(), config), dtype: o.dtype, signal: o.signal, onProgress: o.onProgress });
    try {
      const model = new UNet2DConditionModel(w, config);
      w.assertAllUsed('UNet2DConditionModel');
      return model;
    } catch (e) {
      w.dispose();
      throw e;
    }
  }

  /** Input height and width must be multiples of this (each level halves them). */
  get sizeMultiple(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /** Predicted noise ε [N, outChannels, h, w]. `timestep`: one value for the batch, one per item, or a [N] tensor. */
  forward(rt: Runtime, sample: Tensor, timestep: number | readonly number[] | Tensor, encoderHiddenStates: Tensor, o: UNetForwardOptions = {}): Tensor {
    const cfg = this.config;
    const op = 'UNet2DConditionModel';
    if (!(sample instanceof Tensor) || sample.shape.length !== 4) throw new ShapeError(op, `sample must be a [N, ${cfg.inChannels}, h, w] tensor, got ${describe(sample)}`);
    const [N, C, H, W] = sample.shape as [number, number, number, number];
    if (C !== cfg.inChannels) throw new ShapeError(op, `sample has ${C} channels, the UNet takes ${cfg.inChannels}`);
    if (sample.dtype !== 'f32') throw new ShapeError(op, `sample must be f32, got ${sample.dtype}`);
    const m = this.sizeMultiple;
    if (N < 1 || H < 1 || W < 1 || H % m !== 0 || W % m !== 0) throw new ShapeError(op, `sample [${sample.shape}]: batch ≥ 1 and h, w positive multiples of ${m} are required`);
    if (!(encoderHiddenStates instanceof Tensor) || encoderHiddenStates.shape.length !== 3) {
      throw new ShapeError(op, `encoderHiddenStates must be a [N, L, ${cfg.crossAttentionDim}] tensor, got ${describe(encoderHiddenStates)}`);
    }
    const [Nc, Lc, Dc] = encoderHiddenStates.shape as [number, number, number];
    if (Nc !== N || Dc !== cfg.crossAttentionDim || Lc < 1 || encoderHiddenStates.dtype !== 'f32') {
      throw new ShapeError(op, `encoderHiddenStates [${encoderHiddenStates.shape}] (${encoderHiddenStates.dtype}) must be f32 [${N}, L ≥ 1, ${cfg.crossAttentionDim}] for sample [${sample.shape}]`);
    }
    const cond = o.timestepCond;
    if (cond !== undefined) {
      if (cfg.timeCondProjDim === null) throw new ArgumentError(op, 'timestepCond was given, but this UNet has no time_cond_proj_dim (not an LCM-distilled UNet)');
      if (!(cond instanceof Tensor) || cond.shape.length !== 2 || cond.shape[0] !== N || cond.shape[1] !== cfg.timeCondProjDim || cond.dtype !== 'f32') {
        throw new ShapeError(op, `timestepCond must be f32 [${N}, ${cfg.timeCondProjDim}], got ${describe(cond)}`);
      }
    }
    const ts = checkTimestep(op, timestep, N);

    const debug = o.debug;
    const capture = (name: string, t: Tensor): void => {
      debug?.set(name, rt.keep(rt.clone(t)));
    };
    return rt.scope(() => {
      const t = timestepTensor(rt, ts, N); // [N]
      const tEmb = timestepEmbedding(rt, t, cfg.blockOutChannels[0]!, { flipSinToCos: cfg.flipSinToCos, downscaleFreqShift: cfg.freqShift }); // [N, C0]
      capture('time_proj', tEmb);
      const temb = this.timeEmbedding.forward(rt, tEmb, cond, debug && capture); // [N, T]
      capture('time_embedding', temb);
      const tembAct = silu(rt, temb); // every ResNet applies SiLU before its time_emb_proj

      let h = this.convIn.forward(rt, sample); // [N, C0, H, W]
      capture('conv_in', h);
      const skips: Tensor[] = [h];
      this.downBlocks.forEach((b, i) => {
        h = b.forward(rt, h, tembAct, encoderHiddenStates, skips);
        capture(`down_blocks.${i}`, h);
      });
      h = this.midBlock.forward(rt, h, tembAct, encoderHiddenStates);
      capture('mid_block', h);
      this.upBlocks.forEach((b, i) => {
        h = b.forward(rt, h, tembAct, encoderHiddenStates, skips);
        capture(`up_blocks.${i}`, h);
      });
      h = this.convNormOut.forward(rt, h, { silu: o.debug === undefined });
      if (o.debug) {
        // diffusers' conv_norm_out hook sees the GroupNorm output before the SiLU
        capture('conv_norm_out', h);
        h = silu(rt, h);
      }
      const out = this.convOut.forward(rt, h); // [N, outChannels, H, W]
      capture('conv_out', out);
      return out;
    });
  }

  /** GPU bytes of the weights. */
  get bytes(): number {
    return this.w.bytes;
  }

  dispose(): void {
    this.w.dispose();
  }
}

/** Validated timesteps: values for a [N] upload, or the caller's tensor ([N], or one value to broadcast). */
function checkTimestep(op: string, timestep: number | readonly number[] | Tensor, N: number): Float32Array | Tensor {
  if (typeof timestep === 'number') {
    if (!Number.isFinite(timestep)) throw new ArgumentError(op, `timestep must be finite, got ${timestep}`);
    return new Float32Array(N).fill(timestep);
  }
  if (Array.isArray(timestep)) {
    if (timestep.length !== N) throw new ShapeError(op, `${timestep.length} timesteps for a batch of ${N}`);
    timestep.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new ArgumentError(op, `timestep[${i}] must be a finite number, got ${String(v)}`);
    });
    return Float32Array.from(timestep);
  }
  if (timestep instanceof Tensor) {
    if (timestep.shape.length > 1 || (timestep.numel !== N && timestep.numel !== 1) || timestep.dtype !== 'f32') {
      throw new ShapeError(op, `a timestep tensor must be f32 [${N}] or hold one value, got ${describe(timestep)}`);
    }
    return timestep;
  }
  throw new ArgumentError(op, `timestep must be a number, an array of ${N} numbers or a tensor, got ${describe(timestep)}`);
}

/** [N] timesteps on the GPU (recorded inside the caller's scope). */
function timestepTensor(rt: Runtime, t: Float32Array | Tensor, N: number): Tensor {
  if (t instanceof Float32Array) return rt.upload(t, [N], { label: 'timestep' });
  if (t.numel === N) return t.reshape([N]);
  const out = rt.empty([N], 'f32', 'timestep');
  for (let i = 0; i < N; i++) rt.copy(t, 0, out, 4 * i, 4);
  return out;
}

function describe(v: unknown): string {
  if (v instanceof Tensor) return `[${v.shape}] ${v.dtype}`;
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}
