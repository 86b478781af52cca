/**
 * Text → low-resolution SD latent (the first stage of FM-Boost; REFERENCE §9): tokenizer → CLIP → sampler loop
 * over the UNet → the final *scaled* latent [B, 4, H/8, W/8], which PSU/the CFM stage take as is.
 * Semantics of diffusers' StableDiffusionPipeline (CFG batch [uncond, cond]) and LatentConsistencyModelPipeline
 * (LCM-distilled UNets: guidance embedding, no CFG batch).
 *
 * The loop only records GPU work: nothing is read back, progress fires as each step is recorded, and the
 * AbortSignal is checked between steps (one macrotask apart, so UI events are seen).
 */
import type { CLIPTextModel } from '../models/clip-text-encoder.js';
import { CLIP_CONTEXT_LENGTH, type CLIPTokenizer } from '../models/clip-tokenizer.js';
import type { UNet2DConditionModel } from '../models/unet-2d-condition/model.js';
import { axpby, concat, scale } from '../ops/elementwise.js';
import { guidanceEmbedding } from '../ops/embedding.js';
import { AbortError, ArgumentError, ShapeError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { NOISE_STREAM, randn } from './random.js';
import { createScheduler, SD15_SCHEDULER_CONFIG, type SchedulerConfig, type SchedulerKind } from './schedulers/index.js';

/** Pixels per latent cell of the SD VAE. */
export const VAE_SCALE_FACTOR = 8;

export interface TextToLatentModels {
  /** Needed only when prompts are given as text. */
  tokenizer?: CLIPTokenizer;
  textEncoder: CLIPTextModel;
  unet: UNet2DConditionModel;
}

/**
 * Tensors of one sampler step, for inspection. They are freed as the loop goes on (some are the loop's own state):
 * to keep one, keep a copy: `rt.keep(rt.clone(t.latents))`.
 */
export interface StepTensors {
  /** UNet input after CFG duplication and input scaling [B or 2B, 4, h, w]. */
  modelInput: Tensor;
  /** CFG halves of the UNet output (only with CFG). */
  noisePredUncond?: Tensor;
  noisePredText?: Tensor;
  /** The (guided) noise prediction the scheduler step uses. */
  noisePred: Tensor;
  /** The scheduler's clean-latent estimate (LCM: its boundary-condition output). */
  denoised: Tensor;
  /** Latents after the step. */
  latents: Tensor;
  /** LCM-distilled UNets: the guidance embedding passed as timestep_cond [B, timeCondProjDim]. */
  timestepCond?: Tensor;
}

export interface TextToLatentOptions {
  /** One prompt (repeated batchSize times) or one per image. Or give `promptIds`. */
  prompt?: string | string[];
  /** CFG negative prompt(s); default "". Ignored without CFG. */
  negativePrompt?: string | string[];
  /** Token ids [B·77] instead of `prompt`. */
  promptIds?: Int32Array;
  /** Token ids [B·77] instead of `negativePrompt`. */
  negativeIds?: Int32Array;
  steps: number;
  /** Classifier-free guidance scale g (CFG runs when g > 1 and the UNet is not LCM-distilled); default 7.5. */
  guidanceScale?: number;
  scheduler: SchedulerKind;
  /** Default: SD-1.5's scheduler_config.json (see schedulerConfigFromDiffusers for diffusers files). */
  schedulerConfig?: SchedulerConfig;
  /** DDIM η (default 0). */
  eta?: number;
  /** Seed of the initial and per-step noise when they are not given. Default: random. */
  seed?: number;
  /** Initial latent noise z [B·4·h·w] (the latent starts as initNoiseSigma · z). */
  noise?: Float32Array;
  /** Fresh noise for each stochastic step (LCM: steps − 1 of them), each [B·4·h·w]. */
  stepNoise?: Float32Array[];
  /** Image size in pixels (latent = size / 8); default 512. */
  height?: number;
  width?: number;
  /** Number of images; default: the number of prompts (1 for a single prompt). */
  batchSize?: number;
  onProgress?: (step: number, total: number) => void;
  /** Per-step tensors (tests, previews). */
  onStep?: (step: number, t: StepTensors) => void;
  signal?: AbortSignal;
}

const OP = 'textToLatent';
const KINDS: readonly string[] = ['ddim', 'euler', 'lcm'];
/** More sampler steps than this is a mistake (SD trains on 1000 timesteps). */
const MAX_STEPS = 1000;

/**
 * Runs the SD sampler and resolves to the final scaled latent [B, 4, height/8, width/8] (still being computed on the GPU).
 * Validates before any GPU work, then runs as one job of the runtime's queue (`rt.exclusive`).
 */
export async function textToLatent(models: TextToLatentModels, o: TextToLatentOptions): Promise<Tensor> {
  const plan = preparePlan(models, o);
  return models.textEncoder.rt.exclusive(OP, () => runTextToLatent(models, o, plan), o.signal);
}

/** @internal textToLatent for callers already running inside `rt.exclusive` (the queue is not re-entrant). */
export async function textToLatentUnqueued(models: TextToLatentModels, o: TextToLatentOptions): Promise<Tensor> {
  return runTextToLatent(models, o, preparePlan(models, o));
}

async function runTextToLatent(models: TextToLatentModels, o: TextToLatentOptions, plan: Plan): Promise<Tensor> {
  throwIfAborted(o.signal, OP);
  const { textEncoder, unet } = models;
  const rt = textEncoder.rt;
  const { B, shape, n, cfg, g, schedule } = plan;
  const owned: Tensor[] = [];
  let x: Tensor | undefined;
  try {
    // Text embeddings: [uncond; cond] in one batch when guiding (CLIP treats batch items independently).
    const ids = cfg ? concatIds(plan.negativeIds!, plan.promptIds) : plan.promptIds;
    const context = textEncoder.encode(ids); // [B or 2B, 77, D]
    owned.push(context);
    let timestepCond: Tensor | undefined;
    const condDim = unet.config.timeCondProjDim;
    if (condDim !== null) {
      // LCM-distilled UNets take w = g − 1 (the LCM paper's w) through the guidance embedding.
      const w = rt.upload(new Float32Array(B).fill(g - 1), [B], { label: 'guidance' });
      owned.push(w);
      owned.push((timestepCond = guidanceEmbedding(rt, w, condDim)));
    }
    const z = plan.noise ?? randn(plan.seed, n, NOISE_STREAM.initial);
    x = rt.upload(z, shape, { label: 'latents' });
    if (schedule.initNoiseSigma !== 1) x = swap(x, scale(rt, x, schedule.initNoiseSigma));

    for (let i = 0; i < schedule.steps.length; i++) {
      throwIfAborted(o.signal, OP);
      const s = schedule.steps[i]!;
      const latents = x;
      const next = rt.scope(() => {
        const xin = s.inputScale === 1 ? latents : scale(rt, latents, s.inputScale);
        const modelInput = cfg ? concat(rt, [xin, xin], 0) : xin; // [2B, 4, h, w]: uncond half first
        const out = unet.forward(rt, modelInput, s.t, context, { timestepCond });
        let eps = out;
        let uncond: Tensor | undefined;
        let text: Tensor | undefined;
        if (cfg) {
          uncond = batchSlice(rt, out, 0, B);
          text = batchSlice(rt, out, B, B);
          eps = axpby(rt, 1 - g, uncond, g, text); // ε_u + g·(ε_c − ε_u)
        }
        let nx = axpby(rt, s.x, latents, s.eps, eps);
        if (s.noise !== 0) {
          const zi = plan.stepNoise?.[i] ?? randn(plan.seed, n, NOISE_STREAM.step(i));
          nx = axpby(rt, 1, nx, s.noise, rt.upload(zi, shape, { label: `step${i}.noise` }));
        }
        if (o.onStep) {
          const denoised = axpby(rt, s.denoised.x, latents, s.denoised.eps, eps);
          o.onStep(i, { modelInput, noisePredUncond: uncond, noisePredText: text, noisePred: eps, denoised, latents: nx, timestepCond });
        }
        return nx;
      });
      x = swap(latents, next);
      o.onProgress?.(i + 1, schedule.steps.length);
      if (i + 1 < schedule.steps.length) await nextTask();
    }
    const result = x;
    x = undefined;
    return result;
  } catch (e) {
    if (e instanceof Error && e.name === 'AbortError' && !(e instanceof AbortError)) throw new AbortError(OP);
    throw e;
  } finally {
    x?.dispose();
    for (const t of owned) t.dispose();
  }
}

interface Plan {
  B: number;
  shape: [number, number, number, number];
  n: number;
  cfg: boolean;
  g: number;
  schedule: ReturnType<typeof createScheduler>;
  promptIds: Int32Array;
  negativeIds: Int32Array | undefined;
  noise: Float32Array | undefined;
  stepNoise: Float32Array[] | undefined;
  seed: number;
}

/** Every check that can fail, before any GPU work. */
function preparePlan(models: TextToLatentModels, o: TextToLatentOptions): Plan {
  if (models === null || typeof models !== 'object' || !models.textEncoder || !models.unet) throw new ArgumentError(OP, 'models must hold textEncoder and unet (and tokenizer for text prompts)');
  if (o === null || typeof o !== 'object') throw new ArgumentError(OP, 'options are required');
  throwIfAborted(o.signal, OP);
  const { textEncoder, unet } = models;
  if (unet.convIn.weight.rt !== textEncoder.rt) throw new ArgumentError(OP, 'the text encoder and the UNet were loaded on different runtimes (devices)');
  if (!KINDS.includes(o.scheduler as string)) throw new ArgumentError(OP, `unknown scheduler '${String(o.scheduler)}' (ddim, euler, lcm)`);
  if (!Number.isSafeInteger(o.steps) || o.steps < 1 || o.steps > MAX_STEPS) throw new ArgumentError(OP, `steps must be an integer in [1, ${MAX_STEPS}], got ${String(o.steps)}`);
  const g = o.guidanceScale ?? 7.5;
  if (typeof g !== 'number' || !Number.isFinite(g)) throw new ArgumentError(OP, `guidanceScale must be a finite number, got ${String(g)}`);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) throw new ArgumentError(OP, `seed must be a non-negative integer, got ${String(o.seed)}`);
  if (o.batchSize !== undefined && (!Number.isSafeInteger(o.batchSize) || o.batchSize < 1)) throw new ArgumentError(OP, `batchSize must be an integer ≥ 1, got ${String(o.batchSize)}`);
  const height = o.height ?? 512;
  const width = o.width ?? 512;
  for (const [name, v] of [['height', height], ['width', width]] as const) {
    if (!Number.isSafeInteger(v) || v < VAE_SCALE_FACTOR || v % VAE_SCALE_FACTOR !== 0) throw new ArgumentError(OP, `${name} must be a positive multiple of ${VAE_SCALE_FACTOR}, got ${String(v)}`);
  }
  const h = height / VAE_SCALE_FACTOR;
  const w = width / VAE_SCALE_FACTOR;
  const m = unet.sizeMultiple;
  if (h % m !== 0 || w % m !== 0) throw new ArgumentError(OP, `the latent ${h}×${w} must be a multiple of ${m} for this UNet: use sizes that are multiples of ${m * VAE_SCALE_FACTOR}`);
  const C = unet.config.inChannels;
  if (unet.config.outChannels !== C) throw new ArgumentError(OP, `the UNet predicts ${unet.config.outChannels} channels for a ${C}-channel latent`);
  if (textEncoder.config.hiddenSize !== unet.config.crossAttentionDim) {
    throw new ArgumentError(OP, `the text encoder's width ${textEncoder.config.hiddenSize} is not the UNet's cross_attention_dim ${unet.config.crossAttentionDim}`);
  }
  const L = textEncoder.config.maxPositionEmbeddings;
  if (L !== CLIP_CONTEXT_LENGTH) throw new ArgumentError(OP, `the text encoder has ${L} positions; prompts are tokenized to ${CLIP_CONTEXT_LENGTH}`);

  // Batch: from the prompt list, the ids, or batchSize; every source must agree.
  if (o.prompt !== undefined && o.promptIds !== undefined) throw new ArgumentError(OP, 'give prompt or promptIds, not both');
  if (o.negativePrompt !== undefined && o.negativeIds !== undefined) throw new ArgumentError(OP, 'give negativePrompt or negativeIds, not both');
  const prompts = textList('prompt', o.prompt);
  const negatives = textList('negativePrompt', o.negativePrompt);
  let B: number;
  if (prompts) B = prompts.length > 1 ? prompts.length : o.batchSize ?? 1;
  else if (o.promptIds !== undefined) B = idRows('promptIds', o.promptIds);
  else throw new ArgumentError(OP, 'a prompt (or promptIds) is required');
  if (o.batchSize !== undefined && o.batchSize !== B) throw new ArgumentError(OP, `batchSize ${o.batchSize} does not match the ${B} prompts`);
  const cfg = g > 1 && unet.config.timeCondProjDim === null;
  const tokens = (what: string, texts: string[]): Int32Array => {
    if (!models.tokenizer) throw new ArgumentError(OP, `${what} is text, so models.tokenizer is required`);
    if (texts.length !== 1 && texts.length !== B) throw new ArgumentError(OP, `${texts.length} ${what}s for a batch of ${B}`);
    return models.tokenizer.encodeBatch(texts.length === B ? texts : Array(B).fill(texts[0]));
  };
  const promptIds = prompts ? tokens('prompt', prompts) : (o.promptIds as Int32Array);
  let negativeIds: Int32Array | undefined;
  if (o.negativeIds !== undefined) {
    const rows = idRows('negativeIds', o.negativeIds);
    if (rows !== B) throw new ArgumentError(OP, `negativeIds hold ${rows} prompts for a batch of ${B}`);
    negativeIds = o.negativeIds;
  } else if (cfg) negativeIds = tokens('negativePrompt', negatives ?? ['']);
  else if (negatives && negatives.length !== 1 && negatives.length !== B) throw new ArgumentError(OP, `${negatives.length} negative prompts for a batch of ${B}`);
  validateIds('promptIds', promptIds, textEncoder.config.vocabSize);
  if (negativeIds) validateIds('negativeIds', negativeIds, textEncoder.config.vocabSize);

  const eta = o.eta ?? 0;
  const schedule = createScheduler(o.scheduler, o.schedulerConfig ?? SD15_SCHEDULER_CONFIG, o.steps, { eta });
  const n = B * C * h * w;
  if (o.noise !== undefined && (!(o.noise instanceof Float32Array) || o.noise.length !== n)) {
    throw new ShapeError(OP, `noise must be a Float32Array of ${n} values ([${B}, ${C}, ${h}, ${w}]), got ${describe(o.noise)}`);
  }
  if (o.stepNoise !== undefined) {
    if (!Array.isArray(o.stepNoise)) throw new ArgumentError(OP, 'stepNoise must be an array of Float32Arrays');
    schedule.steps.forEach((s, i) => {
      const z = o.stepNoise![i];
      if (s.noise !== 0 && (!(z instanceof Float32Array) || z.length !== n)) {
        throw new ShapeError(OP, `stepNoise[${i}] must be a Float32Array of ${n} values ([${B}, ${C}, ${h}, ${w}]), got ${describe(z)}`);
      }
    });
  }
  return {
    B,
    shape: [B, C, h, w],
    n,
    cfg,
    g,
    schedule,
    promptIds,
    negativeIds: cfg ? negativeIds : undefined,
    noise: o.noise,
    stepNoise: o.stepNoise,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 32),
  };
}

function textList(name: string, v: string | string[] | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || v.length === 0) throw new ArgumentError(OP, `${name} must be a string or a non-empty array of strings, got ${describe(v)}`);
  v.forEach((s, i) => {
    if (typeof s !== 'string') throw new ArgumentError(OP, `${name}[${i}] must be a string, got ${describe(s)}`);
  });
  return v;
}

function idRows(name: string, ids: Int32Array): number {
  if (!(ids instanceof Int32Array) || ids.length === 0 || ids.length % CLIP_CONTEXT_LENGTH !== 0) {
    throw new ShapeError(OP, `${name} must be an Int32Array of B·${CLIP_CONTEXT_LENGTH} token ids, got ${describe(ids)}`);
  }
  return ids.length / CLIP_CONTEXT_LENGTH;
}

function validateIds(name: string, ids: Int32Array, vocab: number): void {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i]! < 0 || ids[i]! >= vocab) throw new ArgumentError(OP, `${name}[${i}] = ${ids[i]} is outside the vocabulary [0, ${vocab})`);
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as ArrayLike<number>).length})`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return typeof v;
}

function concatIds(a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Rows [start, start + count) of a [N, ...] tensor, copied. */
function batchSlice(rt: Runtime, t: Tensor, start: number, count: number): Tensor {
  const row = t.numel / t.shape[0]!;
  const out = rt.empty([count, ...t.shape.slice(1)], t.dtype, `${t.label}[${start}:${start + count}]`);
  rt.copy(t, start * row * 4, out, 0, count * row * 4);
  return out;
}

/** Disposes `old` and returns `next`. */
function swap(old: Tensor, next: Tensor): Tensor {
  old.dispose();
  return next;
}

/** Yields to the event loop without waiting for the GPU, so an abort from a UI event lands between steps. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
