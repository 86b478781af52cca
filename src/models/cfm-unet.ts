/**
 * The Coupling-Flow-Matching velocity network: fm-boosting's `EfficientUNet` (REFERENCE §2),
 * https://github.com/CompVis/fm-boosting/blob/main/fmboost/models/unet/model.py (+ layers/{residual,attention,resize}.py).
 *
 * v = net(cat([x_t, context]), t): raw t ∈ [0, 1] → sinusoidal (cos first) → time_embed; input blocks (ResBlock
 * [+ SpatialSelfAttention] per level, strided-conv Downsample between levels) pushing every output as a skip;
 * middle (ResBlock, attention, ResBlock); output blocks on cat([h, skip]) with nearest×2 + conv Upsample; GN, SiLU, conv.
 */
import { CFM_EMA_PREFIX, CFM_ONLINE_PREFIX, Checkpoint, cfmWeightsFromCheckpoint } from '../io/checkpoint.js';
import { expectFields } from '../io/config.js';
import type { TensorSource } from '../io/safetensors.js';
import { loadWeights, WeightScope } from '../io/weights.js';
import { Conv2d, GroupNorm, Linear } from '../nn/layers.js';
import { addPerChannel, concat, silu } from '../ops/elementwise.js';
import { timestepEmbedding } from '../ops/embedding.js';
import { fmboostAttention } from '../ops/fmboost-attention.js';
import { ArgumentError, ConfigError, ShapeError, WeightError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';

/** EfficientUNet constructor arguments (`net_cfg.params` of the fm-boosting yaml), in camelCase. */
export interface CfmUNetConfig {
  /** Channels of cat([x_t, context]): 8 = 4 + 4. */
  inChannels: number;
  /** Base width; also the width of the sinusoidal time embedding (the MLP is 4× wider). */
  modelChannels: number;
  /** Velocity channels (= the latent channels of x_t). */
  outChannels: number;
  /** ResBlocks per level going down; one more per level going up. */
  numResBlocks: number;
  /** Width multipliers per level, highest resolution first. */
  channelMult: number[];
  /** Downsampling factors (1, 2, 4, …) whose levels get self-attention; the middle block always has it. */
  attentionResolutions: number[];
  /** Per-head width of SpatialSelfAttention (inner width = numHeads·dimHead, independent of the channels). */
  dimHead: number;
  numHeads: number;
  /** FiLM GN(h)·(1 + scale) + shift in the ResBlocks (true in every released config); false adds emb before the norm. */
  useScaleShiftNorm: boolean;
  /** Learned strided-conv Downsample / nearest+conv Upsample. Only true is implemented. */
  convResample: boolean;
  /** Patchify factor; ≤ 1 means none. Only ≤ 1 is implemented. */
  poolFactor: number;
  /** LinearQKVAttention instead of softmax attention. Only false is implemented. */
  useLinearAttn: boolean;
}

/** configs/flow400_64-128/unet-base_psu.yaml, 305,806,340 parameters (REFERENCE §2.1). */
const released: Readonly<CfmUNetConfig> = Object.freeze({
  inChannels: 8,
  modelChannels: 128,
  outChannels: 4,
  numResBlocks: 3,
  channelMult: [1, 2, 4, 8],
  attentionResolutions: [8, 16],
  dimHead: 64,
  numHeads: 4,
  useScaleShiftNorm: true,
  convResample: true,
  poolFactor: -1,
  useLinearAttn: false,
});

/** Named presets: `CfmUNetConfig.released`. */
export const CfmUNetConfig = { released } as const;

/** EfficientUNet's GroupNorms are hard-coded GroupNorm(32, C) with PyTorch's default eps. */
const GROUPS = 32;
const EPS = 1e-5;

interface NetCfgJson {
  in_channels: number;
  model_channels: number;
  out_channels: number;
  num_res_blocks: number;
  channel_mult: number[];
  attention_resolutions: number[];
  dim_head: number;
  num_heads: number;
  use_scale_shift_norm?: boolean;
  conv_resample?: boolean;
  pool_factor?: number;
  use_linear_attn?: boolean;
  dropout?: number;
}

/**
 * A CFM config from JSON: the EfficientUNet kwargs themselves, `{target, params}`, `net_cfg`, a FlowModel's params,
 * or the whole `{fm_cfg: …}` of cfm.config.json / the training yaml. Unsupported options are ConfigErrors.
 */
export function parseCfmUNetConfig(obj: unknown, file = 'cfm.config.json'): CfmUNetConfig {
  const raw = expectFields<NetCfgJson>(file, unwrapNetCfg(obj, file), {
    in_channels: 'integer',
    model_channels: 'integer',
    out_channels: 'integer',
    num_res_blocks: 'integer',
    channel_mult: 'integer[]',
    attention_resolutions: 'integer[]',
    dim_head: 'integer',
    num_heads: 'integer',
    use_scale_shift_norm: 'optional-boolean',
    conv_resample: 'optional-boolean',
    pool_factor: 'optional-integer',
    use_linear_attn: 'optional-boolean',
    dropout: 'optional-number',
  });
  const cfg: CfmUNetConfig = {
    inChannels: raw.in_channels,
    modelChannels: raw.model_channels,
    outChannels: raw.out_channels,
    numResBlocks: raw.num_res_blocks,
    channelMult: raw.channel_mult,
    attentionResolutions: raw.attention_resolutions,
    dimHead: raw.dim_head,
    numHeads: raw.num_heads,
    // EfficientUNet's own defaults for omitted arguments.
    useScaleShiftNorm: raw.use_scale_shift_norm ?? true,
    convResample: raw.conv_resample ?? true,
    poolFactor: raw.pool_factor ?? -1,
    useLinearAttn: raw.use_linear_attn ?? false,
  };
  checkCfmConfig(cfg, file);
  return cfg;
}

function unwrapNetCfg(obj: unknown, file: string): unknown {
  let cur = obj;
  for (let depth = 0; depth < 6; depth++) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) break;
    const o = cur as Record<string, unknown>;
    if ('model_channels' in o) return o;
    const next = o.fm_cfg ?? o.net_cfg ?? o.params;
    if (next === undefined) break;
    cur = next;
  }
  throw new ConfigError(file, "no EfficientUNet parameters found (expected model_channels under fm_cfg.params.net_cfg.params, net_cfg.params, params or at the top level)");
}

/** ConfigError for a config this implementation cannot run. */
export function checkCfmConfig(c: CfmUNetConfig, where = 'CfmUNetConfig'): void {
  const fail = (d: string): never => {
    throw new ConfigError(where, d);
  };
  const posInt = (name: string, v: unknown): void => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail(`${name} must be a positive integer, got ${String(v)}`);
  };
  if (typeof c !== 'object' || c === null) fail('config must be an object');
  for (const k of ['inChannels', 'modelChannels', 'outChannels', 'numResBlocks', 'dimHead', 'numHeads'] as const) posInt(k, c[k]);
  if (!Array.isArray(c.channelMult) || c.channelMult.length === 0) fail('channelMult must be a non-empty array');
  c.channelMult.forEach((m, i) => posInt(`channelMult[${i}]`, m));
  if (!Array.isArray(c.attentionResolutions)) fail('attentionResolutions must be an array');
  c.attentionResolutions.forEach((m, i) => posInt(`attentionResolutions[${i}]`, m));
  if (c.inChannels <= c.outChannels) fail(`inChannels (${c.inChannels}) must exceed outChannels (${c.outChannels}): the input is cat([x_t, context])`);
  for (const m of c.channelMult) {
    if ((m * c.modelChannels) % GROUPS !== 0) fail(`every level width must be a multiple of ${GROUPS} (GroupNorm(32, C)); modelChannels ${c.modelChannels} × ${m} is not`);
  }
  if (c.modelChannels % 2 !== 0) fail(`modelChannels must be even (the sinusoidal embedding is [cos | sin]), got ${c.modelChannels}`);
  if (c.useLinearAttn !== false) fail('use_linear_attn = true (LinearQKVAttention) is not implemented; the released config uses softmax attention');
  if (typeof c.poolFactor !== 'number' || c.poolFactor > 1) fail(`pool_factor ${c.poolFactor} (patchify) is not implemented; use ≤ 1 (the released config has −1)`);
  if (c.convResample !== true) fail('conv_resample = false (average-pool down, conv-free up) is not implemented; the released config uses true');
  if (typeof c.useScaleShiftNorm !== 'boolean') fail('useScaleShiftNorm must be a boolean');
}

/** openai-style ResBlock with a timestep embedding; keys in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection. */
class ResBlock {
  // in_layers.1 and out_layers.2 are SiLU, out_layers.2 is followed by Dropout(0) (no weights).
  readonly inNorm: GroupNorm;
  readonly inConv: Conv2d;
  readonly embLinear: Linear;
  readonly outNorm: GroupNorm;
  readonly outConv: Conv2d;
  readonly skip: Conv2d | undefined;
  constructor(w: WeightScope, readonly cIn: number, readonly cOut: number, embDim: number, readonly scaleShift: boolean) {
    this.inNorm = new GroupNorm(w.pp('in_layers').pp(0), GROUPS, cIn, EPS);
    this.inConv = new Conv2d(w.pp('in_layers').pp(2), cIn, cOut);
    this.embLinear = new Linear(w.pp('emb_layers').pp(1), embDim, scaleShift ? 2 * cOut : cOut);
    this.outNorm = new GroupNorm(w.pp('out_layers').pp(0), GROUPS, cOut, EPS);
    this.outConv = new Conv2d(w.pp('out_layers').pp(3), cOut, cOut);
    this.skip = cIn === cOut ? undefined : new Conv2d(w.pp('skip_connection'), cIn, cOut, { kernel: 1 });
  }

  /** `embAct` = SiLU(emb) [N, E], shared by every block of one call. */
  forward(rt: Runtime, x: Tensor, embAct: Tensor): Tensor {
    return rt.scope(() => {
      let h = this.inConv.forward(rt, this.inNorm.forward(rt, x, { silu: true })); // [N, cIn, H, W] -> [N, cOut, H, W]
      const m = this.embLinear.forward(rt, embAct); // [N, 2·cOut] = (scale | shift), or [N, cOut]
      if (this.scaleShift) {
        const [scale, shift] = splitHalves(rt, m);
        h = this.outNorm.forward(rt, h, { scale, shift, silu: true });
      } else {
        h = this.outNorm.forward(rt, addPerChannel(rt, h, m), { silu: true });
      }
      const res = this.skip ? this.skip.forward(rt, x) : x;
      return this.outConv.forward(rt, h, { residual: res }); // skip(x) + conv(h)
    });
  }
}

/** m [N, 2C] → (m[:, :C], m[:, C:]) as two contiguous [N, C] tensors: 2N small buffer copies, no kernel. */
function splitHalves(rt: Runtime, m: Tensor): [Tensor, Tensor] {
  const [N, C2] = m.shape as [number, number];
  const C = C2 / 2;
  const a = rt.empty([N, C], 'f32', 'film.scale');
  const b = rt.empty([N, C], 'f32', 'film.shift');
  for (let n = 0; n < N; n++) {
    rt.copy(m, n * C2 * 4, a, n * C * 4, C * 4);
    rt.copy(m, (n * C2 + C) * 4, b, n * C * 4, C * 4);
  }
  return [a, b];
}

/**
 * SpatialSelfAttention: x + proj_out(attn(qkv(GN(x)))) with fm-boosting's raw-reshape q/k/v layout
 * (REFERENCE §2.4, `fmboostAttention`); qkv/proj_out are Conv1d [out, in, 1], run as 1×1 convolutions.
 */
class SpatialSelfAttention {
  readonly norm: GroupNorm;
  readonly qkv: Conv2d;
  readonly projOut: Conv2d;
  constructor(w: WeightScope, readonly channels: number, readonly heads: number, readonly dHead: number) {
    const inner = heads * dHead;
    this.norm = new GroupNorm(w.pp('norm'), GROUPS, channels, EPS);
    this.qkv = new Conv2d(w.pp('qkv'), channels, 3 * inner, { kernel: 1 });
    this.projOut = new Conv2d(w.pp('proj_out'), inner, channels, { kernel: 1 });
  }

  forward(rt: Runtime, x: Tensor): Tensor {
    const [N, , H, W] = x.shape as [number, number, number, number];
    return rt.scope(() => {
      const qkv = this.qkv.forward(rt, this.norm.forward(rt, x)); // [N, 3·heads·d, H, W]
      const o = fmboostAttention(rt, qkv.reshape([N, qkv.shape[1]!, H * W]), this.heads, this.dHead); // [N, heads·d, L]
      return this.projOut.forward(rt, o.reshape([N, this.heads * this.dHead, H, W]), { residual: x }); // [N, C, H, W]
    });
  }
}

/** One TimestepEmbedSequential: its sub-modules in key order (`.0`, `.1`, `.2`). */
type Layer =
  | { kind: 'conv'; conv: Conv2d }
  | { kind: 'res'; block: ResBlock }
  | { kind: 'attn'; block: SpatialSelfAttention }
  | { kind: 'down'; conv: Conv2d }
  | { kind: 'up'; conv: Conv2d };

function runLayers(rt: Runtime, layers: readonly Layer[], x: Tensor, embAct: Tensor): Tensor {
  let h = x;
  for (const l of layers) {
    const prev = h;
    switch (l.kind) {
      case 'conv':
      case 'down':
        h = l.conv.forward(rt, h);
        break;
      case 'up':
        h = l.conv.forward(rt, h, { upsample2x: true }); // nearest ×2 fused into the conv's input
        break;
      case 'res':
        h = l.block.forward(rt, h, embAct);
        break;
      case 'attn':
        h = l.block.forward(rt, h);
        break;
    }
    if (prev !== x) prev.dispose();
  }
  return h;
}

/**
 * A context prepared for many network calls (one ODE solve): the network input cat([x_t, context]) lives in one
 * buffer whose context channels are written once; each call only copies x_t into the first channels.
 */
export class CfmCondition {
  /** @internal */
  constructor(
    /** @internal */ readonly input: Tensor,
    /** The (borrowed) context tensor [N, Cc, H, W]. */
    readonly context: Tensor,
    readonly xChannels: number,
  ) {}

  get shape(): readonly number[] {
    return this.context.shape;
  }

  /** Releases the input buffer (the context tensor stays the caller's). */
  dispose(): void {
    this.input.dispose();
  }

  get isDisposed(): boolean {
    return this.input.isDisposed;
  }
}

export interface CfmForwardOptions {
  /**
   * Receives copies of sub-module outputs under the reference's module names (`time_embed`,
   * `input_blocks.{k}`, `middle_block`, `output_blocks.{k}`, `out`). The caller owns them.
   */
  debug?: Map<string, Tensor>;
}

export interface CfmLoadOptions {
  /** Parsed config, or the JSON object of cfm.config.json (any wrapper parseCfmUNetConfig accepts). Default `released`. */
  config?: CfmUNetConfig | unknown;
  /**
   * EfficientUNet weights: bare names (cfm.safetensors), `net.*`, the TrainerFMBoost layout (`model.net.*`,
   * `ema_model.ema_model.net.*`; the VAE, buffers and metric keys are skipped), or an opened .ckpt.
   */
  weights: TensorSource | Checkpoint;
  /** Which weights of a training checkpoint: EMA when present (default, what the authors intend), or online. */
  ema?: boolean;
  /** Weight storage (activations are always f32). */
  dtype?: 'auto' | 'f32' | 'f16';
  signal?: AbortSignal;
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/** fm-boosting `EfficientUNet`: velocity v [N, out, H, W] = net(x_t, context, t). */
export class CfmUNet {
  readonly timeEmbed0: Linear;
  readonly timeEmbed2: Linear;
  readonly inputBlocks: Layer[][] = [];
  readonly middleBlock: Layer[];
  readonly outputBlocks: Layer[][] = [];
  readonly outNorm: GroupNorm;
  readonly outConv: Conv2d;

  /** From weights under EfficientUNet's own state_dict names. */
  constructor(
    private readonly w: WeightScope,
    readonly config: CfmUNetConfig = CfmUNetConfig.released,
  ) {
    checkCfmConfig(config, 'CfmUNet');
    const c = config;
    const mc = c.modelChannels;
    const embDim = 4 * mc;
    this.timeEmbed0 = new Linear(w.pp('time_embed').pp(0), mc, embDim);
    this.timeEmbed2 = new Linear(w.pp('time_embed').pp(2), embDim, embDim);
    const res = (s: WeightScope, cin: number, cout: number): Layer => ({ kind: 'res', block: new ResBlock(s, cin, cout, embDim, c.useScaleShiftNorm) });
    const attn = (s: WeightScope, ch: number): Layer => ({ kind: 'attn', block: new SpatialSelfAttention(s, ch, c.numHeads, c.dimHead) });

    const ib = w.pp('input_blocks');
    let ch = c.channelMult[0]! * mc;
    this.inputBlocks.push([{ kind: 'conv', conv: new Conv2d(ib.pp(0).pp(0), c.inChannels, ch) }]);
    const skipChannels = [ch];
    let ds = 1;
    c.channelMult.forEach((mult, level) => {
      for (let r = 0; r < c.numResBlocks; r++) {
        const s = ib.pp(this.inputBlocks.length);
        const layers = [res(s.pp(0), ch, mult * mc)];
        ch = mult * mc;
        if (c.attentionResolutions.includes(ds)) layers.push(attn(s.pp(1), ch));
        this.inputBlocks.push(layers);
        skipChannels.push(ch);
      }
      if (level !== c.channelMult.length - 1) {
        const s = ib.pp(this.inputBlocks.length);
        this.inputBlocks.push([{ kind: 'down', conv: new Conv2d(s.pp(0).pp('op'), ch, ch, { stride: 2, padding: 1 }) }]);
        skipChannels.push(ch);
        ds *= 2;
      }
    });

    const mb = w.pp('middle_block');
    this.middleBlock = [res(mb.pp(0), ch, ch), attn(mb.pp(1), ch), res(mb.pp(2), ch, ch)];

    const ob = w.pp('output_blocks');
    [...c.channelMult].reverse().forEach((mult, ri) => {
      const level = c.channelMult.length - 1 - ri;
      for (let i = 0; i <= c.numResBlocks; i++) {
        const s = ob.pp(this.outputBlocks.length);
        const skip = skipChannels.pop()!;
        const layers = [res(s.pp(0), ch + skip, mult * mc)];
        ch = mult * mc;
        if (c.attentionResolutions.includes(ds)) layers.push(attn(s.pp(layers.length), ch));
        if (level > 0 && i === c.numResBlocks) {
          layers.push({ kind: 'up', conv: new Conv2d(s.pp(layers.length).pp('conv'), ch, ch) });
          ds /= 2;
        }
        this.outputBlocks.push(layers);
      }
    });
    this.outNorm = new GroupNorm(w.pp('out').pp(0), GROUPS, ch, EPS);
    this.outConv = new Conv2d(w.pp('out').pp(2), ch, c.outChannels);
  }

  /**
   * Loads the weights (see CfmLoadOptions.weights for the accepted layouts) and builds the network; every
   * EfficientUNet weight must be present and used.
   */
  static async load(rt: Runtime, o: CfmLoadOptions): Promise<CfmUNet> {
    if (typeof o !== 'object' || o === null || !o.weights) throw new ArgumentError('CfmUNet.load', 'options { weights, config? } are required');
    const config = isParsedConfig(o.config) ? o.config : o.config === undefined ? CfmUNetConfig.released : parseCfmUNetConfig(o.config);
    checkCfmConfig(config, 'CfmUNet.load');
    const source = o.weights instanceof Checkpoint ? cfmWeightsFromCheckpoint(o.weights, { ema: o.ema }) : o.weights;
    // A checkpoint's EMA/online choice was made by cfmWeightsFromCheckpoint; its keys are bare already.
    const rename = cfmKeyRenamer(source.keys(), { ema: o.weights instanceof Checkpoint ? undefined : o.ema, file: source.name });
    const w = await loadWeights(rt, source, { rename, dtype: o.dtype, signal: o.signal, onProgress: o.onProgress });
    try {
      const net = new CfmUNet(w, config);
      w.assertAllUsed('CfmUNet');
      return net;
    } catch (e) {
      w.dispose();
      throw e;
    }
  }

  /** Input height and width must be multiples of this (each level but the last halves them). */
  get sizeMultiple(): number {
    return 2 ** (this.config.channelMult.length - 1);
  }

  /** Channels of x_t and of the velocity. */
  get latentChannels(): number {
    return this.config.outChannels;
  }

  /** Channels of the context (inChannels − outChannels). */
  get contextChannels(): number {
    return this.config.inChannels - this.config.outChannels;
  }

  /** Writes the context into a reusable network-input buffer once (see CfmCondition). */
  prepareContext(rt: Runtime, context: Tensor): CfmCondition {
    const op = 'CfmUNet.prepareContext';
    const Cc = this.contextChannels;
    if (!(context instanceof Tensor) || context.shape.length !== 4 || context.dtype !== 'f32') {
      throw new ShapeError(op, `context must be an f32 [N, ${Cc}, H, W] tensor, got ${describe(context)}`);
    }
    const [N, C, H, W] = context.shape as [number, number, number, number];
    if (C !== Cc) throw new ShapeError(op, `context has ${C} channels, this network takes ${Cc} (in_channels ${this.config.inChannels} − out_channels ${this.config.outChannels})`);
    this.checkSize(op, N, H, W);
    const Cx = this.config.outChannels;
    const input = rt.keep(rt.empty([N, Cx + Cc, H, W], 'f32', 'cfm.input'));
    const plane = H * W * 4;
    for (let n = 0; n < N; n++) rt.copy(context, n * Cc * plane, input, (n * (Cx + Cc) + Cx) * plane, Cc * plane);
    return new CfmCondition(input, context, Cx);
  }

  /**
   * Velocity v [N, out, H, W] for x_t [N, out, H, W] at flow time `t` (raw, in [0, 1]; one number for the batch or
   * an f32 tensor [N] / [1]) with `context` [N, in − out, H, W] (or one prepared with prepareContext).
   */
  forward(rt: Runtime, xt: Tensor, context: Tensor | CfmCondition, t: number | Tensor, o: CfmForwardOptions = {}): Tensor {
    const op = 'CfmUNet.forward';
    const Cx = this.config.outChannels;
    if (!(xt instanceof Tensor) || xt.shape.length !== 4 || xt.dtype !== 'f32') throw new ShapeError(op, `x_t must be an f32 [N, ${Cx}, H, W] tensor, got ${describe(xt)}`);
    const [N, C, H, W] = xt.shape as [number, number, number, number];
    if (C !== Cx) throw new ShapeError(op, `x_t has ${C} channels, this network predicts ${Cx}`);
    this.checkSize(op, N, H, W);
    const prepared = context instanceof CfmCondition ? context : undefined;
    if (prepared) {
      if (prepared.isDisposed) throw new ArgumentError(op, 'the prepared context was disposed');
      if (!sameShape(prepared.shape, [N, this.contextChannels, H, W])) throw new ShapeError(op, `prepared context [${prepared.shape}] does not match x_t [${xt.shape}]`);
    } else if (!(context instanceof Tensor) || !sameShape(context.shape, [N, this.contextChannels, H, W]) || context.dtype !== 'f32') {
      throw new ShapeError(op, `context must be an f32 [${N}, ${this.contextChannels}, ${H}, ${W}] tensor for x_t [${xt.shape}], got ${describe(context)}`);
    }
    const tv = checkTime(op, t, N);

    const debug = o.debug;
    const capture = (name: string, x: Tensor): void => {
      debug?.set(name, rt.keep(rt.clone(x)));
    };
    return rt.scope(() => {
      let x: Tensor;
      if (prepared) {
        const plane = H * W * 4;
        const Cin = this.config.inChannels;
        for (let n = 0; n < N; n++) rt.copy(xt, n * Cx * plane, prepared.input, n * Cin * plane, Cx * plane);
        x = prepared.input;
      } else {
        x = concat(rt, [xt, context as Tensor], 1); // x_t FIRST, then the context: [N, in, H, W]
      }
      const tt = tv instanceof Float32Array ? rt.upload(tv, [N], { label: 'cfm.t' }) : broadcastTime(rt, tv, N);
      const e = timestepEmbedding(rt, tt, this.config.modelChannels, { flipSinToCos: true, downscaleFreqShift: 0 }); // [N, mc], cos first
      let embAct: Tensor;
      if (debug) {
        const emb = this.timeEmbed2.forward(rt, this.timeEmbed0.forward(rt, e, { activation: 'silu' }));
        capture('time_embed', emb);
        embAct = silu(rt, emb);
      } else {
        // Every consumer of emb is emb_layers = SiLU → Linear, so the SiLU is fused into time_embed.2.
        embAct = this.timeEmbed2.forward(rt, this.timeEmbed0.forward(rt, e, { activation: 'silu' }), { activation: 'silu' }); // [N, 4·mc]
      }

      const skips: Tensor[] = [];
      let h = x;
      this.inputBlocks.forEach((layers, k) => {
        h = runLayers(rt, layers, h, embAct);
        capture(`input_blocks.${k}`, h);
        skips.push(h);
      });
      h = runLayers(rt, this.middleBlock, h, embAct);
      capture('middle_block', h);
      this.outputBlocks.forEach((layers, k) => {
        const skip = skips.pop()!;
        const cat = concat(rt, [h, skip], 1); // cat([h, skip]): current features first
        if (!skips.includes(h)) h.dispose();
        skip.dispose();
        h = runLayers(rt, layers, cat, embAct);
        cat.dispose();
        capture(`output_blocks.${k}`, h);
      });
      const out = this.outConv.forward(rt, this.outNorm.forward(rt, h, { silu: true })); // [N, out, H, W]
      capture('out', out);
      return out;
    });
  }

  /** GPU bytes of the weights. */
  get bytes(): number {
    return this.w.bytes;
  }

  /** The runtime holding the weights. */
  get runtime(): Runtime {
    return this.timeEmbed0.weight.rt;
  }

  dispose(): void {
    this.w.dispose();
  }

  private checkSize(op: string, N: number, H: number, W: number): void {
    const m = this.sizeMultiple;
    if (N < 1 || H < 1 || W < 1 || H % m !== 0 || W % m !== 0) {
      throw new ShapeError(op, `batch ≥ 1 and H, W positive multiples of ${m} (2^(levels − 1)) are required, got N=${N}, H=${H}, W=${W}`);
    }
  }
}

/**
 * Key renaming for `loadWeights`: keeps the EfficientUNet weights of whichever layout the keys show (EMA preferred in a
 * training state dict unless `ema: false`) under their bare names, and drops everything else (the frozen VAE,
 * `diffusion.alpha_bar_t`, EMA bookkeeping, metric trackers).
 */
export function cfmKeyRenamer(keys: readonly string[], o: { ema?: boolean; file?: string } = {}): (key: string) => string | null {
  const file = o.file ?? 'the CFM weights';
  const has = (p: string): boolean => keys.some((k) => k.startsWith(p));
  let prefix: string;
  if (has(CFM_EMA_PREFIX) && o.ema !== false) prefix = CFM_EMA_PREFIX;
  else if (o.ema === true) throw new WeightError(`${CFM_EMA_PREFIX}*`, `EMA weights were requested but ${file} has no such keys`);
  else if (has(CFM_ONLINE_PREFIX)) prefix = CFM_ONLINE_PREFIX;
  else if (keys.includes('net.time_embed.0.weight')) prefix = 'net.';
  else prefix = '';
  return (key) => (key.startsWith(prefix) ? key.slice(prefix.length) : null);
}

function isParsedConfig(c: unknown): c is CfmUNetConfig {
  return typeof c === 'object' && c !== null && 'modelChannels' in c;
}

function checkTime(op: string, t: number | Tensor, N: number): Float32Array | Tensor {
  if (typeof t === 'number') {
    if (!Number.isFinite(t)) throw new ArgumentError(op, `t must be finite, got ${t}`);
    return new Float32Array(N).fill(t);
  }
  if (t instanceof Tensor) {
    if (t.dtype !== 'f32' || t.shape.length > 1 || (t.numel !== N && t.numel !== 1)) throw new ShapeError(op, `a t tensor must be f32 [${N}] or hold one value, got ${describe(t)}`);
    return t;
  }
  throw new ArgumentError(op, `t must be a number or a tensor, got ${describe(t)}`);
}

function broadcastTime(rt: Runtime, t: Tensor, N: number): Tensor {
  if (t.numel === N) return t.reshape([N]);
  const out = rt.empty([N], 'f32', 'cfm.t');
  for (let i = 0; i < N; i++) rt.copy(t, 0, out, 4 * i, 4);
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function describe(v: unknown): string {
  if (v instanceof Tensor) return `[${v.shape}] ${v.dtype}`;
  if (v instanceof CfmCondition) return `prepared context [${v.shape}]`;
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}
