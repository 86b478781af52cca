/**
 * Writes weights/tiny/: the real SD-1.5 + FM-Boost topologies (CLIP text encoder, UNet2DConditionModel with
 * cross-attention blocks, AutoencoderKL with f = 8, the CFM EfficientUNet) at tiny widths, with seeded random
 * weights, in the diffusers hub layout. The key lists come from building each model on a synthesizing
 * WeightScope, so the files always match what the loaders expect. Images from it are noise-like: it exists so
 * the CLI, the demos and the tests run offline and fast on a CPU (SwiftShader).
 *
 * Usage: npm run make-tiny [-- <out dir>]   (deterministic: the same bytes on every run)
 */
import { mkdirSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { WeightScope } from '../src/io/weights.js';
import { writeSafetensors, type HostTensor } from '../src/io/safetensors.js';
import { f32ArrayToF16 } from '../src/runtime/dtype.js';
import { CLIPTextModel, CLIPTextConfig } from '../src/models/clip-text-encoder.js';
import { UNet2DConditionModel, UNet2DConditionConfig } from '../src/models/unet-2d-condition/index.js';
import { AutoencoderKL } from '../src/models/vae/model.js';
import { parseAutoencoderKLConfig } from '../src/models/vae/config.js';
import { CfmUNet, parseCfmUNetConfig } from '../src/models/cfm-unet.js';
import { randn } from '../src/pipelines/random.js';
import { createNodeRuntime } from '../src/node/gpu.js';
import type { Runtime } from '../src/runtime/runtime.js';

const OUT = process.argv[2] ?? 'weights/tiny';
/** Bumping it changes every weight; the README's file sizes stay the same. */
const SEED_BASE = 20231207;

const textEncoderConfig = {
  _name_or_path: 'fmboost-webgpu/tiny',
  architectures: ['CLIPTextModel'],
  model_type: 'clip_text_model',
  // The full CLIP vocabulary, so the bundled BPE tokenizer's ids are all valid.
  vocab_size: 49408,
  hidden_size: 32,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  projection_dim: 32,
  bos_token_id: 49406,
  eos_token_id: 49407,
  pad_token_id: 1,
  torch_dtype: 'float16',
};

const unetConfig = {
  _class_name: 'UNet2DConditionModel',
  _diffusers_version: '0.27.0',
  act_fn: 'silu',
  attention_head_dim: 2,
  block_out_channels: [32, 64],
  center_input_sample: false,
  cross_attention_dim: 32,
  // Cross-attention at the 32² level only: self-attention over the 64² level's 4,096 tokens would dominate a CPU run.
  down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D'],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 16,
  out_channels: 4,
  sample_size: 64,
  // LCM-distilled like LCM_Dreamshaper_v7 (guidance embedding, no CFG batch): 4 steps by default.
  time_cond_proj_dim: 32,
  up_block_types: ['CrossAttnUpBlock2D', 'UpBlock2D'],
  use_linear_projection: false,
};

const vaeConfig = {
  _class_name: 'AutoencoderKL',
  _diffusers_version: '0.27.0',
  act_fn: 'silu',
  // 4 levels (f = 8) at widths a CPU decodes 1024² with in seconds.
  block_out_channels: [8, 8, 16, 16],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 1,
  // The SD VAE's mid-block attention spans every latent pixel (16,384 tokens at 1024²): off in the tiny model.
  mid_block_add_attention: false,
  norm_num_groups: 8,
  out_channels: 3,
  sample_size: 512,
  scaling_factor: 0.18215,
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
};

/** The released fm-boosting config layout (fm_cfg → net_cfg), at tiny widths; the factor is this library's stage metadata. */
const cfmConfig = {
  fm_cfg: {
    target: 'fmboost.flow.FlowModel',
    params: {
      schedule: 'linear',
      sigma_min: 0.0,
      net_cfg: {
        target: 'fmboost.models.unet.model.EfficientUNet',
        params: {
          in_channels: 8,
          model_channels: 32,
          out_channels: 4,
          num_res_blocks: 1,
          channel_mult: [1, 1, 2],
          attention_resolutions: [4],
          dropout: 0.0,
          conv_resample: true,
          dim_head: 16,
          num_heads: 2,
          use_linear_attn: false,
          use_scale_shift_norm: true,
          pool_factor: -1,
        },
      },
    },
  },
  scale_factor: 0.18215,
  factor: 2,
  noising_step: 400,
  // Stage defaults for this tiny network (3 Euler evaluations); released checkpoints use 40.
  solver: 'euler',
  num_steps: 4,
};

const schedulerConfig = {
  _class_name: 'LCMScheduler',
  _diffusers_version: '0.27.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  steps_offset: 1,
  timestep_spacing: 'leading',
  original_inference_steps: 50,
  timestep_scaling: 10.0,
};

const modelIndex = {
  _class_name: 'StableDiffusionPipeline',
  _diffusers_version: '0.27.0',
  _fmboost: 'tiny random-weight model of fmboost-webgpu (scripts/make-tiny.ts); outputs are noise-like',
  feature_extractor: [null, null],
  requires_safety_checker: false,
  safety_checker: [null, null],
  scheduler: ['diffusers', 'LCMScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: ['diffusers', 'AutoencoderKL'],
  cfm: ['fmboost-webgpu', 'CfmUNet'],
};

/** FNV-1a of the key: each weight's values depend on its name only, not on build order. */
function keySeed(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return (h ^ SEED_BASE) >>> 0;
}

/** Norm scales near 1, biases and shifts near 0, matrices N(0, 1/fan_in) so activations stay O(1). */
function init(key: string, shape: readonly number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const z = randn(keySeed(key), n);
  const isNorm = /(norm|layer_norm|ln)[^.]*\.(weight|bias)$/.test(key) || /\.(in_layers|out_layers|out)\.0\.(weight|bias)$/.test(key);
  if (shape.length === 1) {
    const [s, c] = isNorm && key.endsWith('.weight') ? [0.1, 1] : [0.02, 0];
    for (let i = 0; i < n; i++) z[i] = c + s * z[i]!;
    return z;
  }
  // Embedding tables are looked up, not multiplied: unit-scale rows like CLIP's.
  const fanIn = /embedding\.weight$/.test(key) ? 1 : shape.slice(1).reduce((a, b) => a * b, 1);
  const s = /embedding\.weight$/.test(key) ? 0.5 : 1 / Math.sqrt(fanIn);
  for (let i = 0; i < n; i++) z[i] = s * z[i]!;
  return z;
}

/**
 * The checkpoint's own shape where the model asks for an equivalent view: SD-1.x proj_in is a 1×1 conv
 * [C, C, 1, 1] (read as Linear), EfficientUNet attention qkv/proj_out are Conv1d [O, C, 1] (read as 1×1 convs).
 */
function storedShape(model: string, key: string, shape: number[]): number[] {
  if (model === 'unet' && /attentions\.\d+\.proj_in\.weight$/.test(key) && shape.length === 2) return [...shape, 1, 1];
  if (model === 'cfm' && /\.(qkv|proj_out)\.weight$/.test(key) && shape.length === 4) return shape.slice(0, 3);
  return shape;
}

/** Float storage per tensor: F16 for matrices (halves the files), F32 where the loaders need it. */
function storedTensor(key: string, shape: number[], data: Float32Array): HostTensor {
  if (shape.length <= 1 || key.endsWith('position_embedding.weight')) return { dtype: 'f32', shape, data };
  return { dtype: 'f16', shape, data: f32ArrayToF16(data) };
}

function keysOf(rt: Runtime, build: (w: WeightScope) => { dispose(): void }): { key: string; shape: number[] }[] {
  // The values are regenerated from the key when writing; the synthesizing scope only records keys and shapes.
  const w = WeightScope.synthesize(rt, (_k, shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)));
  const model = build(w);
  const keys = w.synthesized();
  model.dispose();
  w.dispose();
  return keys;
}

function writeModel(dir: string, file: string, model: string, keys: { key: string; shape: number[] }[], meta: Record<string, string>): void {
  const tensors = keys.map(({ key, shape }) => {
    const s = storedShape(model, key, shape);
    return { name: key, tensor: storedTensor(key, s, init(key, shape)) };
  });
  mkdirSync(join(OUT, dir), { recursive: true });
  writeFileSync(join(OUT, dir, file), writeSafetensors(tensors, { format: 'pt', ...meta }));
}

function writeJson(path: string, obj: unknown): void {
  mkdirSync(join(OUT, path, '..'), { recursive: true });
  writeFileSync(join(OUT, path), JSON.stringify(obj, null, 2) + '\n');
}

async function main(): Promise<void> {
  const rt = await createNodeRuntime({ log: () => {} });
  const meta = { fmboost: 'tiny random weights (scripts/make-tiny.ts)' };

  const clip = CLIPTextConfig.fromTransformers(textEncoderConfig, 'text_encoder/config.json');
  writeModel('text_encoder', 'model.safetensors', 'clip', keysOf(rt, (w) => new CLIPTextModel(w, clip)), meta);
  const unet = UNet2DConditionConfig.fromDiffusers(unetConfig);
  writeModel('unet', 'diffusion_pytorch_model.safetensors', 'unet', keysOf(rt, (w) => new UNet2DConditionModel(w, unet)), meta);
  const vae = parseAutoencoderKLConfig(vaeConfig);
  writeModel('vae', 'diffusion_pytorch_model.safetensors', 'vae', keysOf(rt, (w) => new AutoencoderKL(vae, w)), meta);
  const cfm = parseCfmUNetConfig(cfmConfig);
  writeModel('cfm', 'cfm.safetensors', 'cfm', keysOf(rt, (w) => new CfmUNet(w, cfm)), meta);

  writeJson('model_index.json', modelIndex);
  writeJson('text_encoder/config.json', textEncoderConfig);
  writeJson('unet/config.json', unetConfig);
  writeJson('vae/config.json', vaeConfig);
  writeJson('cfm/config.json', cfmConfig);
  writeJson('scheduler/scheduler_config.json', schedulerConfig);

  // files.json lets a web server that cannot list directories serve the folder (urlModelFiles reads it).
  const files: { path: string; size: number }[] = [];
  const walk = (d: string): void => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f !== 'files.json' && f !== 'README.md') files.push({ path: relative(OUT, p), size: statSync(p).size });
    }
  };
  walk(OUT);
  writeJson('files.json', { files });
  const total = files.reduce((s, f) => s + f.size, 0);
  for (const f of files) console.log(`${f.path.padEnd(48)} ${(f.size / 1024).toFixed(1).padStart(9)} KiB`);
  console.log(`total ${(total / 2 ** 20).toFixed(2)} MiB in ${OUT}`);
  rt.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
