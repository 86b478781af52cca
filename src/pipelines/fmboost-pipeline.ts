/**
 * The product-level API: load a model set once, then `generate` (text → 512² SD latent → CFM boost to 1024² or
 * 2048² → tiled decode) and `upscale` (a picture → ×2 / ×4). Every option is validated before GPU work; progress
 * is reported per stage and step; an AbortSignal stops a run between steps.
 */
import { CLIPTokenizer } from '../models/clip-tokenizer.js';
import { assertFinite } from '../ops/check-finite.js';
import { AbortError, ArgumentError, NumericalError, ShapeError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { boostUnqueued, cascadeUnqueued, decodeToImage, toRgba, upscaleImageUnqueued, type BoostProgress, type CascadeStage, type DecodedImage, type RgbaImage } from './boost.js';
import type { OdeMethod } from './flow-schedule.js';
import { hiresFixUnqueued } from './hires-fix.js';
import { scale } from '../ops/elementwise.js';
import { bundledTinyModelUrl, loadModelSet, type CfmStageInput, type LoadedCfmStage, type LoadModelSetOptions, type ModelInput, type ModelSet } from './model-source.js';
import { randomSeed } from './boost.js';
import type { SchedulerKind } from './schedulers/index.js';
import { textToLatentUnqueued } from './text-to-latent.js';

/** The SD-1.5 resolution every run starts from. */
export const BASE_SIZE = 512;
export const OUTPUT_SIZES = [512, 1024, 2048] as const;
export type OutputSize = (typeof OUTPUT_SIZES)[number];

/** Stages of a run, in order: 'text' (CLIP), 'denoise' (SD sampler), 'decode-lowres', 'upsample' (PSU), 'refine' (ODE or hires-fix steps), 'decode'. */
export type GenerateStage = 'text' | 'denoise' | 'decode-lowres' | 'upsample' | 'refine' | 'decode';

export interface FMBoostLoadOptions extends Omit<LoadModelSetOptions, 'cfm'> {
  /** Default: the bundled tiny model (next to the library bundle). */
  model?: ModelInput;
  /** CFM stages; default the model folder's `cfm/`. false: no CFM (512² only, or hiresFix). */
  cfm?: CfmStageInput | CfmStageInput[] | false;
}

export interface CfmRunOptions {
  /** ODE solver (default: the stage's, else 'euler'). */
  solver?: OdeMethod;
  /** ODE grid points (default: the stage's, else 40; the paper's 40-NFE Euler is 41). */
  steps?: number;
  /** Forward-diffusion step of the source noise (default: the stage's, 400). */
  noisingStep?: number;
  /** 'psu' (pixel-space upsampling, what the released checkpoint expects; default) or 'lsu'. */
  mode?: 'psu' | 'lsu';
}

export interface HiresFixRunOptions {
  /** Fraction of the schedule re-run at high resolution (default 0.5). */
  strength?: number;
  /** Steps of the full schedule (default: the generate steps). */
  steps?: number;
}

export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  /** Output edge in pixels (default 1024 when a CFM stage is loaded, else 512). */
  size?: OutputSize;
  /** Default 'lcm' for LCM-distilled UNets, else 'ddim'. */
  scheduler?: SchedulerKind;
  /** Sampler steps (default 4 with LCM, else 25). */
  steps?: number;
  /** CFG scale (default 8.5 for LCM-distilled UNets, else 7.5). */
  guidanceScale?: number;
  /** Default: random (reported in the result). */
  seed?: number;
  cfm?: CfmRunOptions;
  /** Run the SD UNet's img2img "hires fix" instead of the CFM stage (the paper's baseline). */
  hiresFix?: boolean | HiresFixRunOptions;
  onProgress?: (stage: GenerateStage, step: number, total: number) => void;
  signal?: AbortSignal;
}

/** An 8-bit RGBA picture (ImageData-compatible). */
export interface RgbaResult {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

export interface GenerateResult {
  image: RgbaResult;
  /** The 512² SD result the boost started from. */
  lowres: RgbaResult;
  /** The final scaled latent [1, 4, size/8, size/8], on the CPU. */
  latent: { shape: number[]; data: Float32Array };
  seed: number;
  /** Milliseconds per stage. */
  timings: Partial<Record<GenerateStage, number>>;
}

export interface UpscaleOptions {
  factor: 2 | 4;
  cfm?: CfmRunOptions;
  seed?: number;
  onProgress?: (stage: GenerateStage, step: number, total: number) => void;
  signal?: AbortSignal;
}

const SCHEDULERS: readonly string[] = ['ddim', 'euler', 'lcm'];
const SOLVERS: readonly string[] = ['euler', 'midpoint', 'rk4'];
const MAX_STEPS = 1000;

/** FM-Boost: SD-1.5 text → 512² latent, CFM ×2/×4 in latent space, tiled VAE decode. */
export class FMBoostPipeline {
  private disposed = false;

  private constructor(
    readonly rt: Runtime,
    readonly models: ModelSet,
  ) {}

  /** Loads every model (see FMBoostLoadOptions). The bundled tiny model is the default. */
  static async load(rt: Runtime, o: FMBoostLoadOptions = {}): Promise<FMBoostPipeline> {
    if (!rt || typeof (rt as Runtime).upload !== 'function') throw new ArgumentError('FMBoostPipeline.load', 'a Runtime (createRuntime()) is required');
    if (typeof o !== 'object' || o === null) throw new ArgumentError('FMBoostPipeline.load', 'options must be an object');
    const { model, ...rest } = o;
    const models = await loadModelSet(rt, model ?? bundledTinyModelUrl().href, rest);
    return new FMBoostPipeline(rt, models);
  }

  /** Wraps models loaded elsewhere (e.g. loadModelFromPath in Node). The pipeline owns them from now on. */
  static fromModels(rt: Runtime, models: ModelSet): FMBoostPipeline {
    return new FMBoostPipeline(rt, models);
  }

  /** Undefined when loaded with components 'upscale'. */
  get tokenizer(): CLIPTokenizer | undefined {
    return this.models.tokenizer;
  }

  /** True when the UNet is LCM-distilled (guidance embedding, no CFG batch). */
  get isLcm(): boolean {
    return (this.models.unet?.config.timeCondProjDim ?? null) !== null;
  }

  /** Output sizes this pipeline can make with its CFM stages (512 always; hiresFix reaches every size). */
  get sizes(): OutputSize[] {
    return OUTPUT_SIZES.filter((s) => s === BASE_SIZE || this.stagesFor(s / BASE_SIZE) !== null);
  }

  /** Text → image. See GenerateOptions for the defaults. */
  async generate(o: GenerateOptions): Promise<GenerateResult> {
    const plan = this.checkGenerate(o);
    return this.exclusive('FMBoostPipeline.generate', o.signal, async () => {
      const { rt } = this;
      const m = this.models as Required<ModelSet>;
      const timings: GenerateResult['timings'] = {};
      let t0 = now();
      const mark = (stage: GenerateStage): void => {
        const t = now();
        timings[stage] = (timings[stage] ?? 0) + (t - t0);
        t0 = t;
      };
      const report = o.onProgress ?? (() => {});
      report('text', 0, 1);
      const lowLatent = await textToLatentUnqueued(
        { tokenizer: m.tokenizer, textEncoder: m.textEncoder, unet: m.unet },
        {
          prompt: o.prompt,
          negativePrompt: o.negativePrompt,
          scheduler: plan.scheduler,
          schedulerConfig: m.schedulerConfig,
          steps: plan.steps,
          guidanceScale: plan.guidanceScale,
          seed: plan.seed,
          height: BASE_SIZE,
          width: BASE_SIZE,
          signal: o.signal,
          onProgress: (step, total) => report('denoise', step, total),
        },
      );
      const owned: Tensor[] = [lowLatent];
      try {
        await assertFinite(rt, lowLatent, 'low-res latent');
        mark('denoise');
        // The 512² picture: shown next to the boosted one, and (kept on the GPU) PSU's first decode.
        report('decode-lowres', 0, 1);
        let lowres: DecodedImage;
        let lowImage: Tensor | undefined;
        if (m.vae.shiftFactor === 0) {
          const z = scale(rt, lowLatent, 1 / m.vae.scalingFactor);
          try {
            lowImage = await m.vae.decode(z, { signal: o.signal });
          } finally {
            z.dispose();
          }
          owned.push(lowImage);
          lowres = toRgba(await rt.read(lowImage), lowImage.shape as [number, number, number, number]);
        } else {
          lowres = await decodeToImage(m.vae, lowLatent, { signal: o.signal });
        }
        assertFiniteValues(lowres.float, 'low-res image');
        report('decode-lowres', 1, 1);
        mark('decode-lowres');
        let latent = lowLatent;
        if (plan.factor > 1) {
          const onBoost = (p: BoostProgress): void => report(p.stage, p.step, p.total);
          if (plan.hires) {
            latent = await this.runHiresFix(lowLatent, plan, o, onBoost);
          } else if (plan.stages!.length === 1) {
            const s = plan.stages![0]!;
            latent = await boostUnqueued({ vae: m.vae, cfm: s.cfm }, lowLatent, {
              factor: s.factor,
              mode: o.cfm?.mode,
              solver: o.cfm?.solver ?? s.solver,
              numSteps: o.cfm?.steps ?? s.steps,
              noisingStep: o.cfm?.noisingStep ?? s.noisingStep,
              seed: plan.seed,
              signal: o.signal,
              onProgress: onBoost,
              lowresImage: (o.cfm?.mode ?? 'psu') === 'psu' ? lowImage : undefined,
            });
          } else {
            const stages: CascadeStage[] = plan.stages!.map((s) => ({
              cfm: s.cfm,
              factor: s.factor,
              mode: o.cfm?.mode,
              solver: o.cfm?.solver ?? s.solver,
              numSteps: o.cfm?.steps ?? s.steps,
              noisingStep: o.cfm?.noisingStep ?? s.noisingStep,
            }));
            latent = await cascadeUnqueued(stages, lowLatent, { vae: m.vae, seed: plan.seed, signal: o.signal, onProgress: onBoost });
          }
          owned.push(latent);
          await assertFinite(rt, latent, plan.hires ? 'hires-fix latent' : 'boosted latent');
          mark('refine');
        }
        throwIfAborted(o.signal, 'generate');
        let image: DecodedImage = lowres;
        if (latent !== lowLatent) {
          report('decode', 0, 1);
          image = await decodeToImage(m.vae, latent, { signal: o.signal });
          assertFiniteValues(image.float, 'decoded image');
          report('decode', 1, 1);
          mark('decode');
        }
        const data = await rt.read(latent);
        return { image: rgba(image), lowres: rgba(lowres), latent: { shape: [...latent.shape], data }, seed: plan.seed, timings };
      } finally {
        owned.forEach((t) => t.dispose());
      }
    });
  }

  /** A picture (RGBA, edges multiples of 8) → ×2 or ×4 with the CFM stage(s): encode → boost → decode. */
  async upscale(image: RgbaImage, o: UpscaleOptions): Promise<{ image: RgbaResult; seed: number }> {
    const where = 'FMBoostPipeline.upscale';
    this.assertUsable(where);
    if (typeof o !== 'object' || o === null) throw new ArgumentError(where, 'options { factor } are required');
    if (o.factor !== 2 && o.factor !== 4) throw new ArgumentError(where, `factor must be 2 or 4, got ${String(o.factor)}`);
    checkCfmOptions(where, o.cfm);
    const seed = checkSeed(where, o.seed);
    if (typeof image !== 'object' || image === null || !Number.isInteger(image.width) || !Number.isInteger(image.height) || !image.data) {
      throw new ArgumentError(where, 'image must be { width, height, data: RGBA bytes } (e.g. ImageData)');
    }
    if (image.data.length !== image.width * image.height * 4) throw new ShapeError(where, `RGBA data has ${image.data.length} bytes, ${image.width}×${image.height}×4 expected`);
    const f = this.models.vae.downsampleFactor;
    if (image.width < f || image.height < f || image.width % f !== 0 || image.height % f !== 0) {
      throw new ShapeError(where, `the picture is ${image.width}×${image.height}; both edges must be positive multiples of ${f} (crop it)`);
    }
    const stages = this.stagesFor(o.factor);
    if (!stages) throw new ArgumentError(where, `no CFM stage for ×${o.factor} is loaded (${this.describeStages()})`);
    throwIfAborted(o.signal, where);
    return this.exclusive(where, o.signal, async () => {
      let cur: RgbaImage = image;
      for (const [i, s] of stages.entries()) {
        const out = await upscaleImageUnqueued({ vae: this.models.vae, cfm: s.cfm }, cur, {
          factor: s.factor,
          mode: o.cfm?.mode,
          solver: o.cfm?.solver ?? s.solver,
          numSteps: o.cfm?.steps ?? s.steps,
          noisingStep: o.cfm?.noisingStep ?? s.noisingStep,
          seed: seed + i,
          signal: o.signal,
          onProgress: (p) => o.onProgress?.(p.stage, p.step, p.total),
          decode: false,
        });
        let decoded: DecodedImage;
        try {
          await assertFinite(this.rt, out.latent, stages.length > 1 ? `boosted latent (stage ${i})` : 'boosted latent');
          decoded = await decodeToImage(this.models.vae, out.latent, { signal: o.signal });
        } finally {
          out.latent.dispose();
        }
        assertFiniteValues(decoded.float, 'decoded image');
        cur = rgba(decoded);
      }
      return { image: cur as RgbaResult, seed };
    });
  }

  /** Frees every GPU weight. The pipeline cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.models.dispose();
  }

  // ------------------------------------------------------------------------------------------ internals

  /** CFM stages whose factors multiply to `factor`: one matching stage, or the first 2× stage twice (or a 2× then another). */
  private stagesFor(factor: number): LoadedCfmStage[] | null {
    if (factor === 1) return [];
    const st = this.models.cfmStages;
    const exact = st.find((s) => s.factor === factor);
    if (exact) return [exact];
    const twos = st.filter((s) => s.factor === 2);
    if (factor === 4 && twos.length) return [twos[0]!, twos[1] ?? twos[0]!];
    return null;
  }

  private describeStages(): string {
    const st = this.models.cfmStages;
    return st.length ? `loaded: ${st.map((s) => `×${s.factor}`).join(', ')}` : 'none is loaded; pass { cfm } to FMBoostPipeline.load';
  }

  private checkGenerate(o: GenerateOptions) {
    const where = 'FMBoostPipeline.generate';
    this.assertUsable(where);
    if (typeof o !== 'object' || o === null) throw new ArgumentError(where, 'options { prompt, … } are required');
    if (!this.models.unet || !this.models.textEncoder || !this.models.tokenizer) throw new ArgumentError(where, "this pipeline was loaded with components 'upscale' (no text encoder or UNet)");
    if (typeof o.prompt !== 'string') throw new ArgumentError(where, `prompt must be a string, got ${typeof o.prompt}`);
    if (o.negativePrompt !== undefined && typeof o.negativePrompt !== 'string') throw new ArgumentError(where, 'negativePrompt must be a string');
    const size = o.size ?? (this.stagesFor(2) ? 1024 : 512);
    if (!(OUTPUT_SIZES as readonly number[]).includes(size)) throw new ArgumentError(where, `size must be 512, 1024 or 2048, got ${String(o.size)}`);
    const scheduler = o.scheduler ?? (this.isLcm ? 'lcm' : 'ddim');
    if (!SCHEDULERS.includes(scheduler)) throw new ArgumentError(where, `scheduler must be 'ddim', 'euler' or 'lcm', got '${String(o.scheduler)}'`);
    const steps = o.steps ?? (scheduler === 'lcm' ? 4 : 25);
    if (!Number.isSafeInteger(steps) || steps < 1 || steps > MAX_STEPS) throw new ArgumentError(where, `steps must be an integer in [1, ${MAX_STEPS}], got ${String(o.steps)}`);
    const guidanceScale = o.guidanceScale ?? (this.isLcm ? 8.5 : 7.5);
    if (typeof guidanceScale !== 'number' || !Number.isFinite(guidanceScale) || guidanceScale < 0 || guidanceScale > 50) {
      throw new ArgumentError(where, `guidanceScale must be a number in [0, 50], got ${String(o.guidanceScale)}`);
    }
    const seed = checkSeed(where, o.seed);
    checkCfmOptions(where, o.cfm);
    if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new ArgumentError(where, 'onProgress must be a function');
    if (o.signal !== undefined && !(typeof AbortSignal !== 'undefined' && o.signal instanceof AbortSignal)) throw new ArgumentError(where, 'signal must be an AbortSignal');
    const factor = size / BASE_SIZE;
    let hires: Required<HiresFixRunOptions> | null = null;
    if (o.hiresFix !== undefined && o.hiresFix !== false) {
      const h = o.hiresFix === true ? {} : o.hiresFix;
      if (typeof h !== 'object' || h === null) throw new ArgumentError(where, 'hiresFix must be a boolean or { strength?, steps? }');
      const strength = h.strength ?? 0.5;
      if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) throw new ArgumentError(where, `hiresFix.strength must be in (0, 1], got ${String(h.strength)}`);
      const hs = h.steps ?? steps;
      if (!Number.isSafeInteger(hs) || hs < 1 || hs > MAX_STEPS) throw new ArgumentError(where, `hiresFix.steps must be an integer in [1, ${MAX_STEPS}], got ${String(h.steps)}`);
      if (Math.floor(hs * strength) < 1) throw new ArgumentError(where, `hiresFix strength ${strength} × steps ${hs} leaves no step to run`);
      hires = { strength, steps: hs };
    }
    const stages = hires ? [] : this.stagesFor(factor);
    if (!stages) throw new ArgumentError(where, `size ${size} needs CFM stages multiplying to ×${factor} (${this.describeStages()}), or hiresFix: true`);
    throwIfAborted(o.signal, where);
    return { size, scheduler: scheduler as SchedulerKind, steps, guidanceScale, seed, factor, hires, stages };
  }

  private async runHiresFix(lowLatent: Tensor, plan: ReturnType<FMBoostPipeline['checkGenerate']>, o: GenerateOptions, onBoost: (p: BoostProgress) => void): Promise<Tensor> {
    const m = this.models as Required<ModelSet>;
    const cfg = plan.guidanceScale > 1 && !this.isLcm;
    const prompt = m.textEncoder.encode(m.tokenizer.encode(o.prompt).ids);
    const negative = cfg ? m.textEncoder.encode(m.tokenizer.encode(o.negativePrompt ?? '').ids) : undefined;
    try {
      return await hiresFixUnqueued({ vae: m.vae, unet: m.unet }, lowLatent, {
        factor: plan.factor as 2 | 4,
        mode: o.cfm?.mode,
        strength: plan.hires!.strength,
        steps: plan.hires!.steps,
        scheduler: plan.scheduler,
        schedulerConfig: m.schedulerConfig,
        guidanceScale: cfg ? plan.guidanceScale : 1,
        promptEmbeds: prompt,
        negativePromptEmbeds: negative,
        seed: plan.seed,
        signal: o.signal,
        onProgress: onBoost,
      });
    } finally {
      prompt.dispose();
      negative?.dispose();
    }
  }

  /**
   * Runs go through the runtime's FIFO job queue: calls started at once wait for each other (they share the
   * GPU memory budget and the command stream), an aborted waiting call leaves without running, and a lost
   * device is restored (weights re-uploaded) before the next run starts.
   */
  private async exclusive<T>(where: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.rt.exclusive(where, async () => {
        this.assertUsable(where);
        return fn();
      }, signal);
    } catch (e) {
      if (e instanceof Error && e.name === 'AbortError' && !(e instanceof AbortError)) throw new AbortError(where);
      throw e;
    }
  }

  private assertUsable(where: string): void {
    if (this.disposed) throw new ArgumentError(where, 'the pipeline was disposed');
  }
}

function checkSeed(where: string, seed: unknown): number {
  if (seed === undefined) return randomSeed();
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new ArgumentError(where, `seed must be an integer in [0, 2³²), got ${String(seed)}`);
  return seed;
}

function checkCfmOptions(where: string, c: CfmRunOptions | undefined): void {
  if (c === undefined) return;
  if (typeof c !== 'object' || c === null) throw new ArgumentError(where, 'cfm must be { solver?, steps?, noisingStep?, mode? }');
  if (c.solver !== undefined && !SOLVERS.includes(c.solver)) throw new ArgumentError(where, `cfm.solver must be 'euler', 'midpoint' or 'rk4', got '${String(c.solver)}'`);
  if (c.steps !== undefined && (!Number.isSafeInteger(c.steps) || c.steps < 2 || c.steps > MAX_STEPS)) throw new ArgumentError(where, `cfm.steps counts ODE grid points: an integer in [2, ${MAX_STEPS}], got ${String(c.steps)}`);
  if (c.noisingStep !== undefined && (!Number.isInteger(c.noisingStep) || c.noisingStep < 0 || c.noisingStep > 999)) throw new ArgumentError(where, `cfm.noisingStep must be an integer in [0, 999], got ${String(c.noisingStep)}`);
  if (c.mode !== undefined && c.mode !== 'psu' && c.mode !== 'lsu') throw new ArgumentError(where, `cfm.mode must be 'psu' or 'lsu', got '${String(c.mode)}'`);
}

function rgba(d: DecodedImage | RgbaImage): RgbaResult {
  if ('rgba' in d) return { width: d.width, height: d.height, data: d.rgba[0]! };
  return { width: d.width, height: d.height, data: d.data instanceof Uint8ClampedArray ? d.data : new Uint8ClampedArray(d.data) };
}

/** NumericalError naming `stage` when CPU values (already read back) hold NaN or Inf. */
function assertFiniteValues(v: Float32Array, stage: string): void {
  let bad = 0;
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) bad++;
  if (bad > 0) throw new NumericalError(stage, `${bad} of ${v.length} values are NaN or Inf; with f16 weights or compute, try f32`);
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
