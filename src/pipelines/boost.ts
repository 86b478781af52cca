/**
 * The paper's pipeline (REFERENCE §4–§5, fm-boosting `trainer.py`): a low-resolution SD latent is upsampled (PSU:
 * VAE decode → bilinear ×s in pixels → VAE encode, posterior mean; LSU: bilinear on the latent), noised with the
 * forward diffusion at `noisingStep` (400), and carried to the high-resolution latent by the CFM ODE with the clean
 * upsampled latent as context. Also: several stages in a row (cascade), decoding to 8-bit RGBA, and upscaling a
 * user's own picture.
 */
import type { CfmUNet } from '../models/cfm-unet.js';
import type { AutoencoderKL, VaeRunOptions } from '../models/vae/model.js';
import { axpby, scale } from '../ops/elementwise.js';
import { interpolateBilinear } from '../ops/resize.js';
import { assertFinite } from '../ops/check-finite.js';
import { ArgumentError, ShapeError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { forwardDiffusionAlphaBar, ODE_EVALS_PER_STEP, type OdeMethod } from './flow-schedule.js';
import { flowNfe, sampleFlow } from './flow-matching.js';
import { NOISE_STREAM, randn } from './random.js';

const f32 = Math.fround;

/** fm-boosting's default noising step of the CFM source (configs/flow400_64-128: "flow400"). */
export const DEFAULT_NOISING_STEP = 400;
/** Forward-diffusion table length of fm-boosting's ForwardDiffusion. */
const DIFFUSION_STEPS = 1000;

export type UpsampleMode = 'psu' | 'lsu';

/** Progress of boost / hiresFix / cascade: `stage` names the phase, `step` of `total` within it. */
export interface BoostProgress {
  /** 'upsample' (PSU decode/encode), 'refine' (ODE network evaluations or SD denoising steps). */
  stage: 'upsample' | 'refine';
  step: number;
  total: number;
  /** Index of the cascade stage (0 for a single boost). */
  cascadeStage: number;
}

/** Options shared by every high-resolution path (boost, hiresFix, cascade). */
export interface UpscaleCommon {
  /** Spatial factor of the latent (and of the image). */
  factor: 2 | 4;
  /** 'psu' (default; what the released checkpoint expects) or 'lsu'. */
  mode?: UpsampleMode;
  /** Seed of the noise when `noise` is not given (default: a random seed). */
  seed?: number;
  onProgress?: (p: BoostProgress) => void;
  signal?: AbortSignal;
  /** VAE tiling for the PSU decode/encode (default 'auto'). */
  tiling?: VaeRunOptions['tiling'];
  /**
   * Receives copies of intermediates (caller owns them): `psu.lowres_image`, `psu.upsampled_image`, `psu.latent`
   * (the context; LSU too), `noised_source`, `ode.traj.{i}` (boost) — the fixture names.
   */
  debug?: Map<string, Tensor>;
  /** PSU: the decoded low-resolution image [N, 3, H, W] in [−1, 1] when already known (skips one VAE decode). */
  lowresImage?: Tensor;
}

export interface BoostOptions extends UpscaleCommon {
  /** ODE solver (default 'euler'). */
  solver?: OdeMethod;
  /** ODE grid points (numSteps − 1 intervals; fm-boosting's default 50, the paper's "40 NFE" Euler is 41). */
  numSteps: number;
  /** Forward-diffusion step for the source noise, in [0, 999] (default 400). */
  noisingStep?: number;
  /** The forward-diffusion noise ε [N, 4, s·h, s·w] (tensor or values); default seeded noise. */
  noise?: Tensor | Float32Array;
}

export interface BoostModels {
  vae: AutoencoderKL;
  cfm: CfmUNet;
}

/**
 * fm-boosting `q_sample`: √ᾱ·x + √(1 − ᾱ)·ε with ᾱ = ForwardDiffusion.alpha_bar_t[noisingStep] (float32, cosine
 * schedule). ε: the given tensor/values, else seeded noise (stream NOISE_STREAM.qSample of `seed`).
 */
export function qSample(rt: Runtime, x: Tensor, noisingStep = DEFAULT_NOISING_STEP, noise?: Tensor | Float32Array, seed?: number): Tensor {
  const op = 'qSample';
  if (!(x instanceof Tensor) || x.dtype !== 'f32') throw new ShapeError(op, `x must be an f32 tensor, got ${describe(x)}`);
  checkNoisingStep(op, noisingStep);
  const eps = noiseTensor(rt, op, x.shape, noise, seed, NOISE_STREAM.qSample);
  const ab = forwardDiffusionAlphaBar(noisingStep, DIFFUSION_STEPS);
  // torch: alpha_bar is a float32 buffer, so 1 − ᾱ and both square roots round to float32.
  const a = f32(Math.sqrt(ab));
  const b = f32(Math.sqrt(f32(1 - ab)));
  const y = axpby(rt, a, x, b, eps);
  if (eps !== noise) eps.dispose();
  return y;
}

/**
 * Low-resolution scaled latent [N, C, h, w] → high-resolution scaled latent [N, C, s·h, s·w] (REFERENCE §5.1):
 * c = upsample(latent) (PSU by default), x0 = qSample(c, noisingStep), x1 = ODE(x0 → t = 1, context c).
 */
export async function boost(models: BoostModels, latent: Tensor, o: BoostOptions): Promise<Tensor> {
  const { cfm } = checkModels('boost', models);
  return cfm.runtime.exclusive('boost', () => boostStage(models, latent, o, 0), o?.signal);
}

/** @internal boost for callers already running inside `rt.exclusive` (the queue is not re-entrant). */
export async function boostUnqueued(models: BoostModels, latent: Tensor, o: BoostOptions): Promise<Tensor> {
  return boostStage(models, latent, o, 0);
}

async function boostStage(models: BoostModels, latent: Tensor, o: BoostOptions, cascadeStage: number): Promise<Tensor> {
  const op = 'boost';
  const { vae, cfm } = checkModels(op, models);
  const { solver, noisingStep } = checkBoostOptions(op, o);
  const { rt, N, C, h, w, factor } = checkLatent(op, vae, latent, o, cfm.sizeMultiple, cfm.runtime);
  if (C !== cfm.latentChannels || C !== cfm.contextChannels) {
    throw new ShapeError(op, `the CFM network takes ${cfm.latentChannels} + ${cfm.contextChannels} channels, the latent has ${C}`);
  }
  const outShape = [N, C, h * factor, w * factor];
  if (o.noise !== undefined) checkNoise(op, o.noise, outShape, rt);
  throwIfAborted(o.signal, op);

  const context = await upsampleLatent(vae, latent, factor, o, cascadeStage);
  try {
    const x0 = rt.scope(() => qSample(rt, context, noisingStep, o.noise, o.seed ?? randomSeed()));
    capture(o.debug, 'noised_source', x0);
    try {
      const total = flowNfe(solver, o.numSteps);
      return await sampleFlow(rt, cfm, x0, context, {
        method: solver,
        numSteps: o.numSteps,
        signal: o.signal,
        onProgress: o.onProgress && ((nfe) => o.onProgress!({ stage: 'refine', step: nfe, total, cascadeStage })),
        onGridPoint: o.debug && ((i, _t, x) => capture(o.debug, `ode.traj.${i}`, x)),
      });
    } finally {
      x0.dispose();
    }
  } finally {
    context.dispose();
  }
}

/**
 * The upsampled clean latent [N, C, s·h, s·w] (scaled). PSU (fm-boosting `upsample_latent`, mode 'psu'):
 * encode(bilinear(decode(z / sf) — not clamped —, ×s)).mean · sf. LSU: bilinear ×s on the scaled latent.
 * @internal shared with hiresFix
 */
export async function upsampleLatent(vae: AutoencoderKL, latent: Tensor, factor: number, o: UpscaleCommon, cascadeStage: number): Promise<Tensor> {
  const rt = latent.rt;
  const [, , h, w] = latent.shape as [number, number, number, number];
  const mode = o.mode ?? 'psu';
  const report = (step: number) => o.onProgress?.({ stage: 'upsample', step, total: 2, cascadeStage });
  if (mode === 'lsu') {
    const c = interpolateBilinear(rt, latent, [h * factor, w * factor]);
    capture(o.debug, 'psu.latent', c);
    return c;
  }
  const sf = vae.scalingFactor;
  const shift = vae.shiftFactor;
  // scaled = (z − shift)·sf for every SD-family VAE; SD-1.x has shift 0
  report(0);
  let img: Tensor;
  if (o.lowresImage) {
    img = rt.clone(o.lowresImage);
  } else {
    // unscaled z = z_scaled / sf + shift (shift 0 for SD-1.x)
    const z = affine(rt, latent, 1 / sf, shift);
    try {
      img = await vae.decode(z, { tiling: o.tiling, signal: o.signal });
    } finally {
      z.dispose();
    }
  }
  capture(o.debug, 'psu.lowres_image', img);
  report(1);
  let up: Tensor;
  try {
    throwIfAborted(o.signal, 'boost');
    const [, , H, W] = img.shape as [number, number, number, number];
    up = interpolateBilinear(rt, img, [H * factor, W * factor]);
  } finally {
    img.dispose();
  }
  capture(o.debug, 'psu.upsampled_image', up);
  let mean: Tensor;
  try {
    const enc = await vae.encode(up, { tiling: o.tiling, signal: o.signal });
    enc.logvar.dispose();
    mean = enc.mean;
  } finally {
    up.dispose();
  }
  // the posterior mode (mean) is used, no sampling
  const c = affine(rt, mean, sf, -shift * sf);
  mean.dispose();
  report(2);
  capture(o.debug, 'psu.latent', c);
  return c;
}

export interface CascadeStage {
  /** This stage's CFM network (the same object may serve several stages). */
  cfm: CfmUNet;
  factor: 2 | 4;
  mode?: UpsampleMode;
  solver?: OdeMethod;
  /** Default 40 grid points. */
  numSteps?: number;
  noisingStep?: number;
}

export interface CascadeOptions extends Omit<UpscaleCommon, 'factor' | 'mode' | 'lowresImage'> {
  vae: AutoencoderKL;
}

/** Upper bound on stages: two 2× stages reach 2048² from 512²; more only multiplies memory. */
const MAX_STAGES = 4;

/**
 * Several boost stages in a row (REFERENCE §5.6b: e.g. 64² → 128² → 256² latents for 512 → 2048 px), each with its
 * own network and settings; the VAE runs with the given tiling (default 'auto': tiled when large) throughout.
 * Stage i draws its noise from its own stream of `seed`. Debug names get a `stage{i}.` prefix.
 */
export async function cascade(stages: readonly CascadeStage[], latent: Tensor, o: CascadeOptions): Promise<Tensor> {
  checkCascade(stages, latent, o);
  return stages[0]!.cfm.runtime.exclusive('cascade', () => runCascade(stages, latent, o), o.signal);
}

/** @internal cascade for callers already running inside `rt.exclusive` (the queue is not re-entrant). */
export async function cascadeUnqueued(stages: readonly CascadeStage[], latent: Tensor, o: CascadeOptions): Promise<Tensor> {
  checkCascade(stages, latent, o);
  return runCascade(stages, latent, o);
}

/** Validates every stage's geometry before any GPU work. */
function checkCascade(stages: readonly CascadeStage[], latent: Tensor, o: CascadeOptions): void {
  const op = 'cascade';
  if (!Array.isArray(stages) || stages.length === 0 || stages.length > MAX_STAGES) throw new ArgumentError(op, `needs 1 to ${MAX_STAGES} stages, got ${Array.isArray(stages) ? stages.length : String(stages)}`);
  if (typeof o !== 'object' || o === null || !o.vae) throw new ArgumentError(op, 'options { vae } are required');
  // Validate every stage's geometry before any GPU work.
  if (!(latent instanceof Tensor) || latent.shape.length !== 4) throw new ShapeError(op, `latent must be an f32 [N, 4, h, w] tensor, got ${describe(latent)}`);
  let [, , h, w] = latent.shape as number[];
  stages.forEach((s, i) => {
    const where = `${op} stage ${i}`;
    if (typeof s !== 'object' || s === null || !s.cfm) throw new ArgumentError(where, 'needs { cfm, factor }');
    checkFactor(where, s.factor);
    if (s.numSteps !== undefined) checkNumSteps(where, s.numSteps);
    if (s.cfm.runtime !== latent.rt) throw new ArgumentError(where, 'its CFM network and the latent belong to different runtimes (devices)');
    if (s.noisingStep !== undefined) checkNoisingStep(where, s.noisingStep);
    h! *= s.factor;
    w! *= s.factor;
    const m = s.cfm.sizeMultiple;
    if (h! % m !== 0 || w! % m !== 0) throw new ShapeError(where, `its output latent ${h}×${w} is not a multiple of ${m}, which its network needs`);
  });
  throwIfAborted(o.signal, op);
}

async function runCascade(stages: readonly CascadeStage[], latent: Tensor, o: CascadeOptions): Promise<Tensor> {
  let cur = latent;
  try {
    for (const [i, s] of stages.entries()) {
      const debug = o.debug && new Map<string, Tensor>();
      const next = await boostStage(
        { vae: o.vae, cfm: s.cfm },
        cur,
        {
          factor: s.factor,
          mode: s.mode,
          solver: s.solver,
          numSteps: s.numSteps ?? 40,
          noisingStep: s.noisingStep,
          // One seed for the run; each stage its own noise (seed + i is an independent Philox key).
          seed: (o.seed ?? randomSeed()) + i,
          onProgress: o.onProgress,
          signal: o.signal,
          tiling: o.tiling,
          debug,
        },
        i,
      );
      if (debug) for (const [k, v] of debug) o.debug!.set(`stage${i}.${k}`, v);
      if (cur !== latent) cur.dispose();
      cur = next;
      // One small readback per stage: NaN/Inf are reported at the stage that made them.
      if (stages.length > 1) await assertFinite(cur.rt, cur, `boosted latent (cascade stage ${i})`);
    }
  } catch (e) {
    if (cur !== latent) cur.dispose();
    throw e;
  }
  return cur;
}

/** A decoded picture: 8-bit RGBA per batch item, and the float image it came from. */
export interface DecodedImage {
  width: number;
  height: number;
  /** One RGBA buffer (width·height·4, alpha 255) per batch item, ready for `new ImageData(rgba, width)`. */
  rgba: Uint8ClampedArray[];
  /** The decoder output [N, 3, H, W], not clamped (≈ [−1, 1]). */
  float: Float32Array;
  shape: [number, number, number, number];
}

/**
 * vae.decode(latent / sf) read back and quantised as diffusers does (`VaeImageProcessor.postprocess` then
 * `numpy_to_pil`): v = clamp(x/2 + 0.5, 0, 1) in float32, byte = round(v·255) with numpy's half-to-even rounding.
 * Chosen over fm-boosting's `clip(x·127.5 + 127.5, 0, 255)` with a truncating cast, which darkens by ½ level on average.
 */
export async function decodeToImage(vae: AutoencoderKL, latent: Tensor, o: { tiling?: VaeRunOptions['tiling']; signal?: AbortSignal } = {}): Promise<DecodedImage> {
  const op = 'decodeToImage';
  if (!vae || typeof vae.decode !== 'function') throw new ArgumentError(op, 'a VAE with a decoder is required');
  if (!(latent instanceof Tensor) || latent.shape.length !== 4 || latent.dtype !== 'f32') throw new ShapeError(op, `latent must be an f32 [N, C, h, w] tensor, got ${describe(latent)}`);
  const rt = latent.rt;
  const sf = vae.scalingFactor;
  const shift = vae.shiftFactor;
  const z = affine(rt, latent, 1 / sf, shift);
  let img: Tensor;
  try {
    img = await vae.decode(z, { tiling: o.tiling, signal: o.signal });
  } finally {
    z.dispose();
  }
  let float: Float32Array;
  const shape = [...img.shape] as [number, number, number, number];
  try {
    float = await rt.read(img);
  } finally {
    img.dispose();
  }
  return toRgba(float, shape);
}

/** NCHW float in [−1, 1] (3 channels) → RGBA bytes per item, diffusers rounding (see decodeToImage). */
export function toRgba(float: Float32Array, shape: readonly [number, number, number, number]): DecodedImage {
  const [N, C, H, W] = shape;
  if (C !== 3) throw new ShapeError('toRgba', `expected 3 image channels, got [${shape}]`);
  if (float.length !== N * C * H * W) throw new ShapeError('toRgba', `${float.length} values for [${shape}]`);
  const plane = H * W;
  const rgba: Uint8ClampedArray[] = [];
  for (let n = 0; n < N; n++) {
    const out = new Uint8ClampedArray(plane * 4);
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      for (let p = 0; p < plane; p++) out[p * 4 + c] = quantize(float[base + p]!);
    }
    for (let p = 0; p < plane; p++) out[p * 4 + 3] = 255;
    rgba.push(out);
  }
  return { width: W, height: H, rgba, float, shape: [N, C, H, W] };
}

/** round(clamp(x/2 + 0.5, 0, 1)·255), float32 arithmetic, ties to even (numpy). */
export function quantize(x: number): number {
  let v = f32(f32(x / 2) + 0.5);
  if (!(v > 0)) v = 0; // NaN → 0 as well
  else if (v > 1) v = 1;
  const s = f32(v * 255);
  const r = Math.round(s);
  return r - s === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** An 8-bit picture (e.g. ImageData): width·height·4 RGBA bytes; alpha is ignored. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8ClampedArray | Uint8Array;
}

export interface UpscaleImageOptions extends BoostOptions {
  /** Decode the result too (default true); false returns only the latent. */
  decode?: boolean;
}

/**
 * A user's own picture → ×factor picture: encode (posterior mean · sf) → boost (PSU reuses the picture itself as
 * the low-resolution image, as fm-boosting does when it is given) → decode. `image`: RGBA bytes or an f32
 * [1, 3, H, W] tensor in [−1, 1]; H and W must be multiples of the VAE factor.
 */
export async function upscaleImage(models: BoostModels, image: RgbaImage | Tensor, o: UpscaleImageOptions): Promise<{ latent: Tensor; image?: DecodedImage }> {
  const { cfm } = checkModels('upscaleImage', models);
  return cfm.runtime.exclusive('upscaleImage', () => upscaleImageUnqueued(models, image, o), o?.signal);
}

/** @internal upscaleImage for callers already running inside `rt.exclusive` (the queue is not re-entrant). */
export async function upscaleImageUnqueued(models: BoostModels, image: RgbaImage | Tensor, o: UpscaleImageOptions): Promise<{ latent: Tensor; image?: DecodedImage }> {
  const op = 'upscaleImage';
  const { vae, cfm } = checkModels(op, models);
  checkBoostOptions(op, o);
  if (o.decode !== undefined && typeof o.decode !== 'boolean') throw new ArgumentError(op, 'decode must be a boolean');
  const rt = cfm.runtime;
  const f = vae.downsampleFactor;
  let x: Tensor;
  if (image instanceof Tensor) {
    if (image.shape.length !== 4 || image.shape[1] !== 3 || image.dtype !== 'f32') throw new ShapeError(op, `an image tensor must be f32 [N, 3, H, W] in [−1, 1], got ${describe(image)}`);
    if (image.rt !== rt) throw new ArgumentError(op, 'the image tensor belongs to another runtime (device) than the models');
    const [, , H, W] = image.shape as number[];
    checkImageSize(op, H!, W!, f);
    checkUpscaledLatent(op, H! / f, W! / f, o.factor, cfm.sizeMultiple);
    x = image;
  } else {
    if (typeof image !== 'object' || image === null || !Number.isInteger(image.width) || !Number.isInteger(image.height) || !image.data) {
      throw new ArgumentError(op, 'image must be { width, height, data: RGBA bytes } or an f32 [N, 3, H, W] tensor');
    }
    const { width: W, height: H, data } = image;
    if (data.length !== W * H * 4) throw new ShapeError(op, `RGBA data has ${data.length} bytes, ${W}×${H}×4 = ${W * H * 4} expected`);
    checkImageSize(op, H, W, f);
    checkUpscaledLatent(op, H / f, W / f, o.factor, cfm.sizeMultiple);
    x = rt.upload(rgbaToFloat(data, H, W), [1, 3, H, W], { label: 'upscaleImage.input' });
  }
  try {
    const enc = await vae.encode(x, { tiling: o.tiling, signal: o.signal });
    enc.logvar.dispose();
    const sf = vae.scalingFactor;
    const shift = vae.shiftFactor;
    const lowres = affine(rt, enc.mean, sf, -shift * sf);
    enc.mean.dispose();
    let latent: Tensor;
    try {
      latent = await boostStage(models, lowres, { ...o, lowresImage: (o.mode ?? 'psu') === 'psu' ? x : undefined }, 0);
    } finally {
      lowres.dispose();
    }
    if (o.decode === false) return { latent };
    try {
      return { latent, image: await decodeToImage(vae, latent, { tiling: o.tiling, signal: o.signal }) };
    } catch (e) {
      latent.dispose();
      throw e;
    }
  } finally {
    if (x !== image) x.dispose();
  }
}

/** RGBA bytes → [3, H, W] in [−1, 1] (x/255·2 − 1, the inverse of the ToTensor + 2x − 1 of training). */
export function rgbaToFloat(data: ArrayLike<number>, H: number, W: number): Float32Array {
  const plane = H * W;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) out[c * plane + p] = (data[p * 4 + c]! / 255) * 2 - 1;
  return out;
}

// ------------------------------------------------------------------------------------------ validation

/** The ODE options of boost / upscaleImage (checked before any GPU work). */
function checkBoostOptions(op: string, o: BoostOptions): { solver: OdeMethod; noisingStep: number } {
  if (typeof o !== 'object' || o === null) throw new ArgumentError(op, 'options { factor, numSteps, … } are required');
  checkFactor(op, o.factor);
  const solver = o.solver ?? 'euler';
  if (!(solver in ODE_EVALS_PER_STEP)) throw new ArgumentError(op, `solver must be 'euler', 'midpoint' or 'rk4', got '${String(solver)}'`);
  checkNumSteps(op, o.numSteps);
  const noisingStep = o.noisingStep ?? DEFAULT_NOISING_STEP;
  checkNoisingStep(op, noisingStep);
  const mode = o.mode ?? 'psu';
  if (mode !== 'psu' && mode !== 'lsu') throw new ArgumentError(op, `mode must be 'psu' or 'lsu', got '${String(mode)}'`);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) throw new ArgumentError(op, `seed must be a non-negative safe integer, got ${String(o.seed)}`);
  return { solver, noisingStep };
}

/** @internal */
export function checkModels(op: string, models: BoostModels): BoostModels {
  if (typeof models !== 'object' || models === null || !models.vae || !models.cfm) throw new ArgumentError(op, 'models { vae, cfm } are required');
  return models;
}

function checkFactor(op: string, factor: unknown): asserts factor is 2 | 4 {
  if (factor !== 2 && factor !== 4) throw new ArgumentError(op, `factor must be 2 or 4, got ${String(factor)}`);
}

/** @internal Validates the low-resolution latent and the shared options; returns its geometry. */
export function checkLatent(op: string, vae: AutoencoderKL, latent: Tensor, o: UpscaleCommon, sizeMultiple: number, owner?: Runtime) {
  checkFactor(op, o.factor);
  const mode = o.mode ?? 'psu';
  if (mode !== 'psu' && mode !== 'lsu') throw new ArgumentError(op, `mode must be 'psu' or 'lsu', got '${String(mode)}'`);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) throw new ArgumentError(op, `seed must be a non-negative safe integer, got ${String(o.seed)}`);
  if (!(latent instanceof Tensor) || latent.shape.length !== 4 || latent.dtype !== 'f32') {
    throw new ShapeError(op, `latent must be an f32 [N, ${vae.latentChannels}, h, w] tensor (scaled), got ${describe(latent)}`);
  }
  if (owner && latent.rt !== owner) throw new ArgumentError(op, 'the latent belongs to another runtime (device) than the models');
  const [N, C, h, w] = latent.shape as [number, number, number, number];
  if (C !== vae.latentChannels) throw new ShapeError(op, `latent has ${C} channels, the VAE's latent has ${vae.latentChannels}`);
  if (N < 1 || h < 1 || w < 1) throw new ShapeError(op, `latent [${latent.shape}] is empty`);
  const factor = o.factor;
  if ((h * factor) % sizeMultiple !== 0 || (w * factor) % sizeMultiple !== 0) {
    throw new ShapeError(op, `the upsampled latent ${h * factor}×${w * factor} must be a multiple of ${sizeMultiple} for the network`);
  }
  if (o.lowresImage !== undefined) {
    const f = vae.downsampleFactor;
    const li = o.lowresImage;
    if (!(li instanceof Tensor) || li.shape.length !== 4 || li.shape[0] !== N || li.shape[1] !== 3 || li.shape[2] !== h * f || li.shape[3] !== w * f) {
      throw new ShapeError(op, `lowresImage must be [${N}, 3, ${h * f}, ${w * f}] for latent [${latent.shape}], got ${describe(li)}`);
    }
    if (li.dtype !== 'f32') throw new ShapeError(op, `lowresImage must be f32, got ${li.dtype}`);
    if (li.rt !== latent.rt) throw new ArgumentError(op, 'lowresImage belongs to another runtime (device) than the latent');
  }
  return { rt: latent.rt, N, C, h, w, factor };
}

/** ODE grid points: at least one step, at most MAX_ODE_STEPS. */
export const MAX_ODE_STEPS = 1000;

/** @internal */
export function checkNumSteps(op: string, numSteps: unknown): void {
  if (!Number.isSafeInteger(numSteps) || (numSteps as number) < 2 || (numSteps as number) > MAX_ODE_STEPS) {
    throw new ArgumentError(op, `numSteps counts ODE grid points and must be an integer in [2, ${MAX_ODE_STEPS}], got ${String(numSteps)}`);
  }
}

/** @internal */
export function checkNoisingStep(op: string, step: number): void {
  if (!Number.isInteger(step) || step < 0 || step >= DIFFUSION_STEPS) throw new ArgumentError(op, `noisingStep must be an integer in [0, ${DIFFUSION_STEPS - 1}], got ${String(step)}`);
}

function checkNoise(op: string, noise: Tensor | Float32Array, shape: readonly number[], rt?: Runtime): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (noise instanceof Tensor) {
    if (noise.dtype !== 'f32' || noise.shape.length !== shape.length || noise.shape.some((d, i) => d !== shape[i])) {
      throw new ShapeError(op, `noise must be f32 [${shape}], got ${describe(noise)}`);
    }
    if (rt && noise.rt !== rt) throw new ArgumentError(op, 'the noise tensor belongs to another runtime (device)');
  } else if (noise instanceof Float32Array) {
    if (noise.length !== n) throw new ShapeError(op, `noise has ${noise.length} values, [${shape}] needs ${n}`);
  } else {
    throw new ArgumentError(op, 'noise must be a Tensor or a Float32Array');
  }
}

/** @internal The noise tensor for `shape`: the caller's (validated), their values uploaded, or seeded. */
export function noiseTensor(rt: Runtime, op: string, shape: readonly number[], noise: Tensor | Float32Array | undefined, seed: number | undefined, stream: number): Tensor {
  if (noise !== undefined) {
    checkNoise(op, noise, shape);
    return noise instanceof Tensor ? noise : rt.upload(noise, shape, { label: `${op}.noise` });
  }
  const n = shape.reduce((a, b) => a * b, 1);
  return rt.upload(randn(seed ?? randomSeed(), n, stream), shape, { label: `${op}.noise` });
}

function checkUpscaledLatent(op: string, h: number, w: number, factor: number, m: number): void {
  if ((h * factor) % m !== 0 || (w * factor) % m !== 0) throw new ShapeError(op, `the upsampled latent ${h * factor}×${w * factor} must be a multiple of ${m} for the network`);
}

function checkImageSize(op: string, H: number, W: number, f: number): void {
  if (!(H > 0 && W > 0) || H % f !== 0 || W % f !== 0) throw new ShapeError(op, `image ${W}×${H}: width and height must be positive multiples of ${f} (the VAE's factor); crop or pad it`);
}

/** @internal */
export function capture(debug: Map<string, Tensor> | undefined, name: string, t: Tensor): void {
  if (debug) debug.set(name, t.rt.keep(t.rt.clone(t)));
}

/** a·x + b (b = 0 for SD-1.x VAEs, the common case: one scale op). */
function affine(rt: Runtime, x: Tensor, a: number, b: number): Tensor {
  if (b === 0) return scale(rt, x, a);
  return rt.scope(() => axpby(rt, a, x, b, rt.upload(new Float32Array(x.numel).fill(1), x.shape)));
}

/** @internal A fresh seed when the caller gave none (results then differ between runs, by design). */
export function randomSeed(): number {
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint32Array) => Uint32Array } }).crypto;
  if (c?.getRandomValues) return c.getRandomValues(new Uint32Array(1))[0]!;
  return Math.floor(Math.random() * 2 ** 32);
}

function describe(v: unknown): string {
  if (v instanceof Tensor) return `[${v.shape}] ${v.dtype}`;
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}
