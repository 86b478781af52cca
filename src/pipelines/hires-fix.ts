/**
 * The training-free baseline the paper compares against: "hires fix" / SDEdit. Upsample the low-resolution latent
 * (the same PSU or LSU as boost), noise it to the timestep that `strength` selects with the scheduler's own noise
 * schedule, and denoise the remaining steps with the SD UNet at the higher resolution (diffusers img2img semantics:
 * `init = min(⌊steps·strength⌋, steps)`, the last `init` of `steps` timesteps are run). Same inputs, result type,
 * progress and abort as `boost`, so the two can be run side by side.
 */
import type { UNet2DConditionModel } from '../models/unet-2d-condition/model.js';
import type { AutoencoderKL } from '../models/vae/model.js';
import { axpby, concat, scale } from '../ops/elementwise.js';
import { ArgumentError, ShapeError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { capture, checkLatent, noiseTensor, randomSeed, upsampleLatent, type UpscaleCommon } from './boost.js';
import { NOISE_STREAM } from './random.js';
import { alphasCumprod, createScheduler, SD15_SCHEDULER_CONFIG, type SchedulerConfig, type SchedulerKind } from './schedulers/index.js';

const f32 = Math.fround;

export interface HiresFixModels {
  vae: AutoencoderKL;
  unet: UNet2DConditionModel;
}

export interface HiresFixOptions extends UpscaleCommon {
  /** Fraction of the schedule re-run, in (0, 1]: 1 = from pure noise (the low-res latent is ignored), small = light touch-up. */
  strength: number;
  /** Inference steps of the full schedule (only ⌊steps·strength⌋ of them run). */
  steps: number;
  scheduler: SchedulerKind;
  /** Default SD-1.5's scheduler_config.json. */
  schedulerConfig?: SchedulerConfig;
  /** Classifier-free guidance scale; ≤ 1 runs the conditional pass only. */
  guidanceScale: number;
  /** Text embeddings [N, 77, D] of the prompt (the same as for the low-resolution pass). */
  promptEmbeds: Tensor;
  /** Unconditional embeddings [N, 77, D] (the empty prompt); required when guidanceScale > 1. */
  negativePromptEmbeds?: Tensor;
  /** The noise added at the start timestep [N, 4, s·h, s·w]; default seeded noise. */
  noise?: Tensor | Float32Array;
}

/**
 * Low-resolution scaled latent [N, 4, h, w] → high-resolution scaled latent [N, 4, s·h, s·w] by SDEdit with the SD
 * UNet: x = a_t·up(latent) + b_t·ε (DDIM/LCM: a = √ᾱ_t, b = √(1 − ᾱ_t); Euler: a = 1, b = σ_t), then the
 * scheduler's remaining steps with CFG `ε_u + g·(ε_c − ε_u)` (negative embeddings first in the batch).
 */
export async function hiresFix(models: HiresFixModels, latent: Tensor, o: HiresFixOptions): Promise<Tensor> {
  if (typeof models !== 'object' || models === null || !models.vae || !models.unet) throw new ArgumentError('hiresFix', 'models { vae, unet } are required');
  return models.unet.convIn.weight.rt.exclusive('hiresFix', () => hiresFixUnqueued(models, latent, o), o?.signal);
}

/** @internal hiresFix for callers already running inside `rt.exclusive` (the queue is not re-entrant). */
export async function hiresFixUnqueued(models: HiresFixModels, latent: Tensor, o: HiresFixOptions): Promise<Tensor> {
  const op = 'hiresFix';
  if (typeof models !== 'object' || models === null || !models.vae || !models.unet) throw new ArgumentError(op, 'models { vae, unet } are required');
  if (typeof o !== 'object' || o === null) throw new ArgumentError(op, 'options { factor, strength, steps, scheduler, guidanceScale, promptEmbeds } are required');
  const { vae, unet } = models;
  if (!(typeof o.strength === 'number' && o.strength > 0 && o.strength <= 1)) throw new ArgumentError(op, `strength must be in (0, 1], got ${String(o.strength)}`);
  if (!Number.isInteger(o.steps) || o.steps < 1 || o.steps > 1000) throw new ArgumentError(op, `steps must be an integer in [1, 1000], got ${String(o.steps)}`);
  if (typeof o.guidanceScale !== 'number' || !Number.isFinite(o.guidanceScale)) throw new ArgumentError(op, `guidanceScale must be a finite number, got ${String(o.guidanceScale)}`);
  const config = o.schedulerConfig ?? SD15_SCHEDULER_CONFIG;
  const schedule = createScheduler(o.scheduler, config, o.steps);
  const init = Math.min(Math.floor(o.steps * o.strength), o.steps);
  if (init < 1) throw new ArgumentError(op, `strength ${o.strength} × steps ${o.steps} leaves no step to run; raise either`);
  const run = schedule.steps.slice(o.steps - init);
  const { rt, N, C, h, w, factor } = checkLatent(op, vae, latent, o, unet.sizeMultiple, unet.convIn.weight.rt);
  if (C !== unet.config.inChannels) throw new ShapeError(op, `the UNet takes ${unet.config.inChannels} channels, the latent has ${C}`);
  const cfg = o.guidanceScale > 1;
  const embeds = checkEmbeds(op, o.promptEmbeds, N, 'promptEmbeds', rt);
  if (cfg) {
    if (o.negativePromptEmbeds === undefined) throw new ArgumentError(op, 'negativePromptEmbeds are required when guidanceScale > 1');
    checkEmbeds(op, o.negativePromptEmbeds, N, 'negativePromptEmbeds', rt);
    if (o.negativePromptEmbeds.shape[1] !== embeds.shape[1] || o.negativePromptEmbeds.shape[2] !== embeds.shape[2]) {
      throw new ShapeError(op, `negativePromptEmbeds [${o.negativePromptEmbeds.shape}] must match promptEmbeds [${embeds.shape}]`);
    }
  }
  const shape = [N, C, h * factor, w * factor];
  const seed = o.seed ?? randomSeed();
  throwIfAborted(o.signal, op);

  const up = await upsampleLatent(vae, latent, factor, o, 0);
  // Noise to the first remaining timestep: a·x0 + b·ε with the scheduler's own parametrisation.
  const first = run[0]!;
  let a: number;
  let b: number;
  if (o.scheduler === 'euler') {
    a = 1;
    b = -first.denoised.eps; // σ_t
  } else {
    const ab = alphasCumprod(config)[first.t]!;
    a = f32(Math.sqrt(ab));
    b = f32(Math.sqrt(f32(1 - ab)));
  }
  let x = rt.scope(() => axpby(rt, a, up, b, noiseTensor(rt, op, shape, o.noise, seed, NOISE_STREAM.initial)));
  up.dispose();
  capture(o.debug, 'noised_source', x);
  const ctx = cfg ? concat(rt, [o.negativePromptEmbeds!, embeds], 0) : embeds; // unconditional FIRST
  try {
    for (const [i, s] of run.entries()) {
      throwIfAborted(o.signal, op);
      const next = rt.scope(() => {
        const inp = s.inputScale === 1 ? x : scale(rt, x, s.inputScale);
        let eps: Tensor;
        if (cfg) {
          const out = unet.forward(rt, concat(rt, [inp, inp], 0), s.t, ctx); // [2N, C, H, W]
          const half = N * C * shape[2]! * shape[3]!;
          const u = rt.empty(shape, 'f32', 'eps.uncond');
          const c = rt.empty(shape, 'f32', 'eps.text');
          rt.copy(out, 0, u, 0, half * 4);
          rt.copy(out, half * 4, c, 0, half * 4);
          eps = axpby(rt, 1 - o.guidanceScale, u, o.guidanceScale, c);
        } else {
          eps = unet.forward(rt, inp, s.t, embeds);
        }
        const last = i === run.length - 1;
        // LCM returns its boundary-condition estimate after the last step.
        if (last && o.scheduler === 'lcm') return axpby(rt, s.denoised.x, x, s.denoised.eps, eps);
        let y = axpby(rt, s.x, x, s.eps, eps);
        if (s.noise !== 0) {
          const z = noiseTensor(rt, op, shape, undefined, seed, NOISE_STREAM.step(i));
          y = axpby(rt, 1, y, s.noise, z);
        }
        return y;
      });
      x.dispose();
      x = next;
      o.onProgress?.({ stage: 'refine', step: i + 1, total: run.length, cascadeStage: 0 });
    }
  } catch (e) {
    x.dispose();
    throw e;
  } finally {
    if (ctx !== embeds) ctx.dispose();
  }
  return x;
}

function checkEmbeds(op: string, t: Tensor | undefined, N: number, name: string, rt: Runtime): Tensor {
  if (!(t instanceof Tensor) || t.shape.length !== 3 || t.dtype !== 'f32' || t.shape[0] !== N) {
    throw new ShapeError(op, `${name} must be f32 [${N}, L, D], got ${t instanceof Tensor ? `[${t.shape}] ${t.dtype}` : String(t)}`);
  }
  if (t.rt !== rt) throw new ArgumentError(op, `${name} belongs to another runtime (device) than the models`);
  return t;
}
