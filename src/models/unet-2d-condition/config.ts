/**
 * `UNet2DConditionConfig`: the subset of diffusers' UNet2DConditionModel config.json that SD-1.x/2.x UNets and
 * their LCM-distilled variants use (REFERENCE §7.1). Options outside it are refused with a ConfigError
 * rather than silently ignored.
 */
import { expectFields } from '../../io/config.js';
import { ConfigError } from '../../runtime/errors.js';

export type DownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

export interface UNet2DConditionConfig {
  inChannels: number;
  outChannels: number;
  /** Channels per resolution level; level i runs at 1/2^i of the input size. */
  blockOutChannels: number[];
  layersPerBlock: number;
  downBlockTypes: DownBlockType[];
  upBlockTypes: UpBlockType[];
  /** Width of encoder_hidden_states (768 for CLIP ViT-L). */
  crossAttentionDim: number;
  /**
   * Attention heads per down level (up levels use the reversed list, the mid block the last entry).
   * diffusers calls this `attention_head_dim` when `num_attention_heads` is absent: SD-1.5 has 8 heads at
   * every level, head dims 40/80/160.
   */
  numAttentionHeads: number[];
  /** BasicTransformerBlocks per Transformer2DModel, per down level. */
  transformerLayersPerBlock: number[];
  normNumGroups: number;
  /** Epsilon of the ResNet and output GroupNorms (the Transformer2D input norm always uses 1e-6). */
  normEps: number;
  flipSinToCos: boolean;
  freqShift: number;
  /** 1: symmetric pad-1 stride-2 downsampling conv; 0: pad right/bottom only. */
  downsamplePadding: 0 | 1;
  /** proj_in/proj_out are Linear (SD-2.x) instead of 1×1 convs (SD-1.x); the math is the same. */
  useLinearProjection: boolean;
  /** Width of the time-embedding MLP (default 4 · blockOutChannels[0]). */
  timeEmbeddingDim: number;
  /** LCM-distilled UNets: width of `timestep_cond` (the guidance embedding), mapped by `cond_proj`. */
  timeCondProjDim: number | null;
  convInKernel: number;
  convOutKernel: number;
}

function sd15(): UNet2DConditionConfig {
  return {
    inChannels: 4,
    outChannels: 4,
    blockOutChannels: [320, 640, 1280, 1280],
    layersPerBlock: 2,
    downBlockTypes: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    upBlockTypes: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    crossAttentionDim: 768,
    numAttentionHeads: [8, 8, 8, 8],
    transformerLayersPerBlock: [1, 1, 1, 1],
    normNumGroups: 32,
    normEps: 1e-5,
    flipSinToCos: true,
    freqShift: 0,
    downsamplePadding: 1,
    useLinearProjection: false,
    timeEmbeddingDim: 1280,
    timeCondProjDim: null,
    convInKernel: 3,
    convOutKernel: 3,
  };
}

interface DiffusersUNetJson {
  in_channels: number;
  out_channels: number;
  block_out_channels: number[];
  layers_per_block: number;
  down_block_types: string[];
  up_block_types: string[];
  mid_block_type: string | undefined;
  cross_attention_dim: number;
  norm_num_groups: number;
  norm_eps: number;
  flip_sin_to_cos: boolean | undefined;
  freq_shift: number | undefined;
  downsample_padding: number | undefined;
  use_linear_projection: boolean | undefined;
  time_embedding_dim: number | undefined;
  time_cond_proj_dim: number | undefined;
  conv_in_kernel: number | undefined;
  conv_out_kernel: number | undefined;
}

/** Keys whose non-default values change the network in ways this port does not implement. */
const UNSUPPORTED: [key: string, allowed: unknown[]][] = [
  ['act_fn', ['silu']],
  ['addition_embed_type', [null]],
  ['class_embed_type', [null]],
  ['num_class_embeds', [null]],
  ['encoder_hid_dim', [null]],
  ['encoder_hid_dim_type', [null]],
  ['center_input_sample', [false]],
  ['dual_cross_attention', [false]],
  ['only_cross_attention', [false]],
  ['mid_block_only_cross_attention', [null, false]],
  ['reverse_transformer_layers_per_block', [null]],
  ['resnet_time_scale_shift', ['default']],
  ['resnet_skip_time_act', [false]],
  ['resnet_out_scale_factor', [1]],
  ['mid_block_scale_factor', [1]],
  ['time_embedding_type', ['positional']],
  ['time_embedding_act_fn', [null]],
  ['timestep_post_act', [null]],
  ['cross_attention_norm', [null]],
  ['attention_type', ['default']],
  ['dropout', [0]],
];

export const UNet2DConditionConfig = {
  /** stable-diffusion-v1-5 `unet/config.json`. */
  get sd15(): UNet2DConditionConfig {
    return sd15();
  },
  /** LCM_Dreamshaper_v7: SD-1.5 with `time_cond_proj_dim` 256. */
  get lcmSd15(): UNet2DConditionConfig {
    return { ...sd15(), timeCondProjDim: 256 };
  },

  /** A diffusers `unet/config.json` object → UNet2DConditionConfig (ConfigError on anything unsupported). */
  fromDiffusers(json: unknown, file = 'unet/config.json'): UNet2DConditionConfig {
    const c = expectFields<DiffusersUNetJson>(file, json, {
      in_channels: 'integer',
      out_channels: 'integer',
      block_out_channels: 'integer[]',
      layers_per_block: 'integer',
      down_block_types: 'string[]',
      up_block_types: 'string[]',
      mid_block_type: 'optional-string',
      cross_attention_dim: 'integer',
      norm_num_groups: 'integer',
      norm_eps: 'number',
      flip_sin_to_cos: 'optional-boolean',
      freq_shift: 'optional-integer',
      downsample_padding: 'optional-integer',
      use_linear_projection: 'optional-boolean',
      time_embedding_dim: 'optional-integer',
      time_cond_proj_dim: 'optional-integer',
      conv_in_kernel: 'optional-integer',
      conv_out_kernel: 'optional-integer',
    });
    // attention_head_dim, num_attention_heads and transformer_layers_per_block may be a number or a list.
    const raw = json as Record<string, unknown>;
    for (const [k, ok] of UNSUPPORTED) {
      const v = raw[k];
      if (v !== undefined && !ok.includes(v)) throw new ConfigError(file, `${k} = ${JSON.stringify(v)} is not supported (only ${ok.map((x) => JSON.stringify(x)).join(', ')})`);
    }
    const n = c.block_out_channels.length;
    const perLevel = (key: string, v: unknown, dflt: number | undefined): number[] => {
      if (v === undefined || v === null) {
        if (dflt === undefined) throw new ConfigError(file, `${key} is missing`);
        return Array(n).fill(dflt);
      }
      if (typeof v === 'number') return Array(n).fill(v);
      if (Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number')) return [...(v as number[])];
      throw new ConfigError(file, `${key} must be an integer or a list of ${n} integers, got ${JSON.stringify(v)}`);
    };
    // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (the historical misnomer).
    const heads = perLevel('num_attention_heads', raw.num_attention_heads ?? raw.attention_head_dim, undefined);
    const mid = c.mid_block_type ?? 'UNetMidBlock2DCrossAttn';
    if (mid !== 'UNetMidBlock2DCrossAttn') throw new ConfigError(file, `mid_block_type '${mid}' is not supported (UNetMidBlock2DCrossAttn)`);
    const pad = c.downsample_padding ?? 1;
    if (pad !== 0 && pad !== 1) throw new ConfigError(file, `downsample_padding must be 0 or 1, got ${pad}`);
    const cfg: UNet2DConditionConfig = {
      inChannels: c.in_channels,
      outChannels: c.out_channels,
      blockOutChannels: c.block_out_channels,
      layersPerBlock: c.layers_per_block,
      downBlockTypes: c.down_block_types as DownBlockType[],
      upBlockTypes: c.up_block_types as UpBlockType[],
      crossAttentionDim: c.cross_attention_dim,
      numAttentionHeads: heads,
      transformerLayersPerBlock: perLevel('transformer_layers_per_block', raw.transformer_layers_per_block, 1),
      normNumGroups: c.norm_num_groups,
      normEps: c.norm_eps,
      flipSinToCos: c.flip_sin_to_cos ?? true,
      freqShift: c.freq_shift ?? 0,
      downsamplePadding: pad,
      useLinearProjection: c.use_linear_projection ?? false,
      timeEmbeddingDim: c.time_embedding_dim ?? 4 * (c.block_out_channels[0] ?? 0),
      timeCondProjDim: c.time_cond_proj_dim ?? null,
      convInKernel: c.conv_in_kernel ?? 3,
      convOutKernel: c.conv_out_kernel ?? 3,
    };
    checkUNetConfig(cfg, file);
    return cfg;
  },
};

/** ConfigError unless the config describes a network this port builds. */
export function checkUNetConfig(c: UNet2DConditionConfig, where: string): void {
  const posInt = (name: string, v: unknown): void => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new ConfigError(where, `${name} must be a positive integer, got ${String(v)}`);
  };
  posInt('inChannels', c.inChannels);
  posInt('outChannels', c.outChannels);
  posInt('layersPerBlock', c.layersPerBlock);
  posInt('crossAttentionDim', c.crossAttentionDim);
  posInt('normNumGroups', c.normNumGroups);
  posInt('timeEmbeddingDim', c.timeEmbeddingDim);
  const n = c.blockOutChannels?.length;
  if (!Array.isArray(c.blockOutChannels) || n === 0) throw new ConfigError(where, 'blockOutChannels must be a non-empty list');
  c.blockOutChannels.forEach((ch, i) => {
    posInt(`blockOutChannels[${i}]`, ch);
    if (ch % c.normNumGroups !== 0) throw new ConfigError(where, `blockOutChannels[${i}] = ${ch} is not divisible by normNumGroups ${c.normNumGroups}`);
  });
  for (const [name, list] of [['downBlockTypes', c.downBlockTypes], ['upBlockTypes', c.upBlockTypes], ['numAttentionHeads', c.numAttentionHeads], ['transformerLayersPerBlock', c.transformerLayersPerBlock]] as const) {
    if (!Array.isArray(list) || list.length !== n) throw new ConfigError(where, `${name} must have one entry per level (${n}), got ${JSON.stringify(list)}`);
  }
  c.downBlockTypes.forEach((t, i) => {
    if (t !== 'CrossAttnDownBlock2D' && t !== 'DownBlock2D') throw new ConfigError(where, `downBlockTypes[${i}] '${String(t)}' is not supported (CrossAttnDownBlock2D, DownBlock2D)`);
  });
  c.upBlockTypes.forEach((t, i) => {
    if (t !== 'CrossAttnUpBlock2D' && t !== 'UpBlock2D') throw new ConfigError(where, `upBlockTypes[${i}] '${String(t)}' is not supported (CrossAttnUpBlock2D, UpBlock2D)`);
  });
  c.numAttentionHeads.forEach((h, i) => {
    posInt(`numAttentionHeads[${i}]`, h);
    if (c.blockOutChannels[i]! % h !== 0) throw new ConfigError(where, `blockOutChannels[${i}] = ${c.blockOutChannels[i]} is not divisible into ${h} heads`);
  });
  c.transformerLayersPerBlock.forEach((l, i) => posInt(`transformerLayersPerBlock[${i}]`, l));
  if (!(c.normEps > 0 && Number.isFinite(c.normEps))) throw new ConfigError(where, `normEps must be a positive number, got ${c.normEps}`);
  if (!Number.isFinite(c.freqShift)) throw new ConfigError(where, `freqShift must be a number, got ${c.freqShift}`);
  if (c.downsamplePadding !== 0 && c.downsamplePadding !== 1) throw new ConfigError(where, `downsamplePadding must be 0 or 1, got ${String(c.downsamplePadding)}`);
  if (c.timeCondProjDim !== null) posInt('timeCondProjDim', c.timeCondProjDim);
  for (const [name, k] of [['convInKernel', c.convInKernel], ['convOutKernel', c.convOutKernel]] as const) {
    if (k !== 1 && k !== 3) throw new ConfigError(where, `${name} must be 1 or 3, got ${String(k)}`);
  }
  if (c.blockOutChannels[0]! % 2 !== 0) throw new ConfigError(where, `blockOutChannels[0] = ${c.blockOutChannels[0]} must be even (the sinusoidal embedding width)`);
}
