/**
 * The one place where checkpoint key names change. Models read diffusers names literally
 * (`w.pp('mid_block').pp('attentions').pp(0).pp('to_q')`); every other dialect is mapped onto them here,
 * as one table per model family. A renamer returns null for keys that belong to another model of the same
 * file (a single-file SD checkpoint holds UNet, VAE and CLIP), and passes unknown keys through unchanged so
 * the model's strict load reports them.
 */

/** One rule: a pattern over the whole key and its diffusers replacement. */
type Rule = readonly [RegExp, (m: RegExpMatchArray) => string];

// ============================================================================================== VAE
// REFERENCE.md §6.4. LDM names (fm-boosting `sd_ae.ckpt`, SD single-file `first_stage_model.*`, fm-boosting
// trainer `first_stage.*`) → diffusers; old diffusers attention names (diffusers ≤ 0.13 files, e.g. the SD-1.5
// repo's vae/) → current ones. LDM numbers decoder levels from the lowest resolution up, diffusers from the
// latent down: diffusers up_blocks.j = LDM up.(n − 1 − j), n = number of levels.

/** Prefixes under which a VAE sits inside larger checkpoints, tried in order. */
const VAE_PREFIXES = ['first_stage_model.', 'first_stage.', 'vae.'];

const VAE_ATTENTION: Record<string, string> = {
  norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0',
  query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0',
};

function vaeLdmRules(levels: number): Rule[] {
  return [
    [/^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/, (m) => `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${m[3]}`],
    [/^encoder\.down\.(\d+)\.downsample\.conv\.(.+)$/, (m) => `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`],
    [/^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/, (m) => `decoder.up_blocks.${levels - 1 - +m[1]!}.resnets.${m[2]}.${m[3]}`],
    [/^decoder\.up\.(\d+)\.upsample\.conv\.(.+)$/, (m) => `decoder.up_blocks.${levels - 1 - +m[1]!}.upsamplers.0.conv.${m[2]}`],
    [/^(encoder|decoder)\.mid\.block_(\d)\.(.+)$/, (m) => `${m[1]}.mid_block.resnets.${+m[2]! - 1}.${m[3]}`],
    [/^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/, (m) => `${m[1]}.mid_block.attentions.0.${VAE_ATTENTION[m[2]!]}.${m[3]}`],
    [/^(encoder|decoder)\.norm_out\.(.+)$/, (m) => `${m[1]}.conv_norm_out.${m[2]}`],
  ];
}

const VAE_OLD_DIFFUSERS: Rule[] = [
  [/^(encoder|decoder)\.mid_block\.attentions\.0\.(query|key|value|proj_attn)\.(weight|bias)$/, (m) => `${m[1]}.mid_block.attentions.0.${VAE_ATTENTION[m[2]!]}.${m[3]}`],
];

/** Per-key renames that hold in every dialect after the block renames. */
const VAE_COMMON: Rule[] = [[/^(.*)\.nin_shortcut\.(.+)$/, (m) => `${m[1]}.conv_shortcut.${m[2]}`]];

/** LDM training leftovers that no inference model uses (discriminator, learned loss log-variance). */
const VAE_DROP = /^loss\./;

export type VaeKeyDialect = 'diffusers' | 'diffusers-old-attention' | 'ldm';

/** Which VAE naming a key set uses and under which prefix ('' when bare). */
export function detectVaeDialect(keys: readonly string[]): { dialect: VaeKeyDialect; prefix: string } {
  const prefix = VAE_PREFIXES.find((p) => keys.some((k) => k.startsWith(p + 'encoder.') || k.startsWith(p + 'decoder.'))) ?? '';
  const bare = keys.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  if (bare.some((k) => /^(encoder|decoder)\.(down|up|mid)\./.test(k) || /^(encoder|decoder)\.norm_out\./.test(k))) return { dialect: 'ldm', prefix };
  if (bare.some((k) => /\.mid_block\.attentions\.0\.(query|key|value|proj_attn)\./.test(k))) return { dialect: 'diffusers-old-attention', prefix };
  return { dialect: 'diffusers', prefix };
}

/**
 * A `loadWeights` rename for an AutoencoderKL in any of its checkpoint dialects, detected from the key set:
 * diffusers, old diffusers attention names, LDM (bare, `first_stage_model.`, `first_stage.`). Keys outside
 * the detected prefix (the UNet and CLIP of a single-file checkpoint) map to null.
 */
export function vaeKeyRenamer(keys: readonly string[]): (key: string) => string | null {
  const { dialect, prefix } = detectVaeDialect(keys);
  let levels = 0;
  if (dialect === 'ldm') {
    for (const k of keys) {
      const m = /^decoder\.up\.(\d+)\./.exec(k.slice(prefix.length));
      if (m && k.startsWith(prefix)) levels = Math.max(levels, +m[1]! + 1);
    }
  }
  const rules = [...(dialect === 'ldm' ? vaeLdmRules(levels) : dialect === 'diffusers-old-attention' ? VAE_OLD_DIFFUSERS : []), ...VAE_COMMON];
  return (key) => {
    if (!key.startsWith(prefix)) return null;
    let k = key.slice(prefix.length);
    if (dialect === 'ldm' && VAE_DROP.test(k)) return null;
    for (const [re, to] of rules) {
      const m = k.match(re);
      if (m) k = to(m);
    }
    return k;
  };
}

// ============================================================================================== UNet
// REFERENCE.md §7.6. SD single-file names (`model.diffusion_model.*`, from .safetensors or .ckpt) → diffusers
// UNet2DConditionModel names. With L = layers_per_block, LDM numbers the input blocks conv_in = 0, then for
// level i: resnet(+attention) j at i·(L+1)+j+1 and the downsampler at (i+1)·(L+1); output blocks: up level i,
// resnet j at i·(L+1)+j, its upsampler after the last resnet at `.1` (no attention) or `.2` (with attention).

const UNET_PREFIX = 'model.diffusion_model.';

/** ResnetBlock2D sub-modules: LDM ResBlock name → diffusers name. */
const UNET_RESNET: Record<string, string> = {
  'in_layers.0': 'norm1', 'in_layers.2': 'conv1', 'emb_layers.1': 'time_emb_proj',
  'out_layers.0': 'norm2', 'out_layers.3': 'conv2', skip_connection: 'conv_shortcut',
};

function unetResnet(base: string, rest: string): string {
  const m = /^(in_layers\.0|in_layers\.2|emb_layers\.1|out_layers\.0|out_layers\.3|skip_connection)\.(.+)$/.exec(rest);
  return m ? `${base}.${UNET_RESNET[m[1]!]}.${m[2]}` : `${base}.${rest}`;
}

function unetLdmRules(layersPerBlock: number, upHasAttention: readonly boolean[]): Rule[] {
  const L1 = layersPerBlock + 1;
  return [
    [/^time_embed\.0\.(.+)$/, (m) => `time_embedding.linear_1.${m[1]}`],
    [/^time_embed\.2\.(.+)$/, (m) => `time_embedding.linear_2.${m[1]}`],
    [/^input_blocks\.0\.0\.(.+)$/, (m) => `conv_in.${m[1]}`],
    [/^input_blocks\.(\d+)\.0\.op\.(.+)$/, (m) => `down_blocks.${+m[1]! / L1 - 1}.downsamplers.0.conv.${m[2]}`],
    [/^input_blocks\.(\d+)\.0\.(.+)$/, (m) => unetResnet(`down_blocks.${Math.floor((+m[1]! - 1) / L1)}.resnets.${(+m[1]! - 1) % L1}`, m[2]!)],
    [/^input_blocks\.(\d+)\.1\.(.+)$/, (m) => `down_blocks.${Math.floor((+m[1]! - 1) / L1)}.attentions.${(+m[1]! - 1) % L1}.${m[2]}`],
    [/^middle_block\.0\.(.+)$/, (m) => unetResnet('mid_block.resnets.0', m[1]!)],
    [/^middle_block\.1\.(.+)$/, (m) => `mid_block.attentions.0.${m[1]}`],
    [/^middle_block\.2\.(.+)$/, (m) => unetResnet('mid_block.resnets.1', m[1]!)],
    [/^output_blocks\.(\d+)\.0\.(.+)$/, (m) => unetResnet(`up_blocks.${Math.floor(+m[1]! / L1)}.resnets.${+m[1]! % L1}`, m[2]!)],
    [
      /^output_blocks\.(\d+)\.([12])\.(.+)$/,
      (m) => {
        const i = Math.floor(+m[1]! / L1);
        const j = +m[1]! % L1;
        const upsampler = j === layersPerBlock && (m[2] === '2' || !upHasAttention[i]) && m[3]!.startsWith('conv.');
        return upsampler ? `up_blocks.${i}.upsamplers.0.${m[3]}` : `up_blocks.${i}.attentions.${j}.${m[3]}`;
      },
    ],
    [/^out\.0\.(.+)$/, (m) => `conv_norm_out.${m[1]}`],
    [/^out\.2\.(.+)$/, (m) => `conv_out.${m[1]}`],
  ];
}

/**
 * A `loadWeights` rename for a UNet2DConditionModel: diffusers names pass through; when the key set holds SD
 * single-file names (`model.diffusion_model.*`) those are mapped and every other key (VAE, text encoder, EMA
 * copies `model_ema.*`, DDPM buffers) maps to null. The mapping depends on layers_per_block and on which up
 * levels have attention, hence the config.
 */
export function unetKeyRenamer(keys: readonly string[], cfg: { layersPerBlock: number; upBlockTypes: readonly string[] }): (key: string) => string | null {
  if (!keys.some((k) => k.startsWith(UNET_PREFIX))) return (key) => key;
  const rules = unetLdmRules(cfg.layersPerBlock, cfg.upBlockTypes.map((t) => t.startsWith('CrossAttn')));
  return (key) => {
    if (!key.startsWith(UNET_PREFIX)) return null;
    const k = key.slice(UNET_PREFIX.length);
    for (const [re, to] of rules) {
      const m = k.match(re);
      if (m) return to(m);
    }
    return k;
  };
}

// ============================================================================================== CLIP text encoder
// REFERENCE.md §8.2. transformers names (`text_model.*`) are the model's own; SD single-file checkpoints hold
// them under `cond_stage_model.transformer.`. `position_ids` is a non-parameter buffer some files carry.

const CLIP_SINGLE_FILE_PREFIX = 'cond_stage_model.transformer.';

/**
 * A `loadWeights` rename for CLIPTextModel: strips `cond_stage_model.transformer.` when the key set has it
 * (every other key of such a file maps to null) and drops `text_model.embeddings.position_ids`.
 */
export function clipTextKeyRenamer(keys: readonly string[]): (key: string) => string | null {
  const prefix = keys.some((k) => k.startsWith(CLIP_SINGLE_FILE_PREFIX + 'text_model.')) ? CLIP_SINGLE_FILE_PREFIX : '';
  return (key) => {
    if (!key.startsWith(prefix)) return null;
    const k = key.slice(prefix.length);
    return k === 'text_model.embeddings.position_ids' ? null : k;
  };
}
