/**
 * AutoencoderKL configuration: the fields of a diffusers `vae/config.json`, under their JSON names.
 * Reference: diffusers `models/autoencoders/autoencoder_kl.py` (REFERENCE.md §6).
 */
import { expectFields } from '../../io/config.js';
import { ConfigError } from '../../runtime/errors.js';

export interface AutoencoderKLConfig {
  /** Image channels into the encoder (3). */
  in_channels: number;
  /** Image channels out of the decoder (3). */
  out_channels: number;
  /** Latent channels (4); the encoder emits 2× as many (mean and logvar). */
  latent_channels: number;
  /** Channels per resolution level, highest resolution first ([128, 256, 512, 512] for SD). */
  block_out_channels: number[];
  /** ResNet blocks per encoder level; decoder levels have one more. */
  layers_per_block: number;
  /** GroupNorm groups everywhere (32); eps is fixed at 1e-6 in this architecture. */
  norm_num_groups: number;
  /** Only 'silu' exists in the SD VAE family. */
  act_fn: string;
  /** One 'DownEncoderBlock2D' per level. */
  down_block_types: string[];
  /** One 'UpDecoderBlock2D' per level. */
  up_block_types: string[];
  /** Latent scale used by diffusion models: scaled = (unscaled − shift) · scaling_factor (0.18215 for SD-1.x). */
  scaling_factor: number;
  /** Latent shift (SD3/Flux VAEs); absent or null for SD-1.x. */
  shift_factor?: number | null;
  /** Training resolution (512); informational. */
  sample_size?: number;
  /** Mid blocks hold a self-attention layer (default true). */
  mid_block_add_attention?: boolean;
  /** quant_conv after the encoder (default true). */
  use_quant_conv?: boolean;
  /** post_quant_conv before the decoder (default true). */
  use_post_quant_conv?: boolean;
}

/** SD-1.x `vae/config.json` (HUB runwayml/stable-diffusion-v1-5). */
const sd15: Readonly<AutoencoderKLConfig> = Object.freeze({
  in_channels: 3,
  out_channels: 3,
  latent_channels: 4,
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  norm_num_groups: 32,
  act_fn: 'silu',
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  scaling_factor: 0.18215,
  shift_factor: null,
  sample_size: 512,
  mid_block_add_attention: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
});

/** Named presets: `AutoencoderKLConfig.sd15`. */
export const AutoencoderKLConfig = { sd15 } as const;

/**
 * Validates a parsed config.json (diffusers field names) and fills defaults; ConfigError naming the field
 * for a wrong type, a missing field or an architecture this implementation does not have.
 */
export function parseAutoencoderKLConfig(obj: unknown, file = 'vae/config.json'): AutoencoderKLConfig {
  const c = expectFields<AutoencoderKLConfig>(file, obj, {
    in_channels: 'integer',
    out_channels: 'integer',
    latent_channels: 'integer',
    block_out_channels: 'integer[]',
    layers_per_block: 'integer',
    norm_num_groups: 'integer',
    act_fn: 'optional-string',
    down_block_types: 'optional-string[]',
    up_block_types: 'optional-string[]',
    scaling_factor: 'optional-number',
    shift_factor: 'optional-number',
    sample_size: 'optional-integer',
    mid_block_add_attention: 'optional-boolean',
    use_quant_conv: 'optional-boolean',
    use_post_quant_conv: 'optional-boolean',
  });
  const levels = c.block_out_channels.length;
  const cfg: AutoencoderKLConfig = {
    ...c,
    act_fn: c.act_fn ?? 'silu',
    down_block_types: c.down_block_types ?? Array<string>(levels).fill('DownEncoderBlock2D'),
    up_block_types: c.up_block_types ?? Array<string>(levels).fill('UpDecoderBlock2D'),
    scaling_factor: c.scaling_factor ?? 0.18215,
    shift_factor: c.shift_factor ?? null,
    mid_block_add_attention: c.mid_block_add_attention ?? true,
    use_quant_conv: c.use_quant_conv ?? true,
    use_post_quant_conv: c.use_post_quant_conv ?? true,
  };
  const positive = (name: keyof AutoencoderKLConfig, v: number) => {
    if (!(v >= 1)) throw new ConfigError(file, `field '${name}' must be ≥ 1, got ${v}`);
  };
  positive('in_channels', cfg.in_channels);
  positive('out_channels', cfg.out_channels);
  positive('latent_channels', cfg.latent_channels);
  positive('layers_per_block', cfg.layers_per_block);
  positive('norm_num_groups', cfg.norm_num_groups);
  if (levels === 0) throw new ConfigError(file, `field 'block_out_channels' is empty`);
  cfg.block_out_channels.forEach((ch, i) => {
    if (!(ch >= 1) || ch % cfg.norm_num_groups !== 0) {
      throw new ConfigError(file, `block_out_channels[${i}] = ${ch} is not a positive multiple of norm_num_groups ${cfg.norm_num_groups}`);
    }
  });
  if (cfg.act_fn !== 'silu') throw new ConfigError(file, `act_fn '${cfg.act_fn}' is not supported (only 'silu')`);
  for (const [field, want] of [['down_block_types', 'DownEncoderBlock2D'], ['up_block_types', 'UpDecoderBlock2D']] as const) {
    const list = cfg[field];
    if (list.length !== levels) throw new ConfigError(file, `field '${field}' has ${list.length} entries, block_out_channels has ${levels}`);
    list.forEach((t, i) => {
      if (t !== want) throw new ConfigError(file, `${field}[${i}] = '${t}' is not supported (only '${want}')`);
    });
  }
  if (!(cfg.scaling_factor > 0)) throw new ConfigError(file, `field 'scaling_factor' must be > 0, got ${cfg.scaling_factor}`);
  return cfg;
}
