/**
 * Fixture checks of the text → low-res latent stage (CLIP text encoder, SD UNet, the DDIM/Euler/LCM sampler loops)
 * against clip.io, unet.io, unet_lcm.io and pipeline_*.io. Runs in Node and in the browser; the helpers here are
 * also used by the Node model/pipeline tests, so both sides compare the same way.
 */
import type { TensorSource } from '../../src/io/safetensors.js';
import type { WeightScope } from '../../src/io/weights.js';
import { CLIPTextConfig, CLIPTextModel } from '../../src/models/clip-text-encoder.js';
import { UNet2DConditionConfig, UNet2DConditionModel } from '../../src/models/unet-2d-condition/index.js';
import { textToLatent } from '../../src/pipelines/text-to-latent.js';
import { SD15_SCHEDULER_CONFIG, type SchedulerConfig, type SchedulerKind } from '../../src/pipelines/schedulers/index.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { get, type CheckResult, type FixtureCheck, type FixtureFile, type FixtureLoader } from './fixture-check.js';

/** tolerances.json, copied here because the browser cannot read it (Node tests check they agree). */
export const UNET_TOL = {
  clip: { atol: 5e-5, rtol: 1e-3 }, // clip.last_hidden_state
  unet: { atol: 5e-5, rtol: 1e-3 }, // unet.out
  unetLcmCond: { atol: 2e-3, rtol: 1e-3 }, // unet_lcm.timestep_cond
  unetLcm: { atol: 2e-4, rtol: 1e-3 }, // unet_lcm.out
  pipeline: { atol: 1e-3, rtol: 1e-3 }, // pipeline_{ddim,euler,lcm}.lowres_latent
  pipelineLcmDistilled: { atol: 5e-3, rtol: 1e-3 }, // pipeline_lcm_distilled.lowres_latent
};

/** clip.config.json as CLIPTextConfig. */
export const TINY_CLIP: CLIPTextConfig = {
  vocabSize: 49408,
  hiddenSize: 32,
  intermediateSize: 37,
  numHiddenLayers: 3,
  numAttentionHeads: 4,
  maxPositionEmbeddings: 77,
  hiddenAct: 'quick_gelu',
  layerNormEps: 1e-5,
};

/** unet.config.json (unet_lcm: the same with timeCondProjDim 32). */
export const TINY_UNET: UNet2DConditionConfig = {
  ...UNet2DConditionConfig.sd15,
  blockOutChannels: [32, 64],
  downBlockTypes: ['CrossAttnDownBlock2D', 'DownBlock2D'],
  upBlockTypes: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  crossAttentionDim: 32,
  numAttentionHeads: [8, 8],
  transformerLayersPerBlock: [1, 1],
  timeEmbeddingDim: 128,
};
export const TINY_UNET_LCM: UNet2DConditionConfig = { ...TINY_UNET, timeCondProjDim: 32 };

/** A fixture file's tensors as a TensorSource (what loadWeights reads), in Node and in the page alike. */
export function fixtureSource(file: FixtureFile, name: string): TensorSource {
  return {
    name,
    keys: () => [...file.keys()],
    info: (k) => {
      const t = get(file, k);
      return { dtype: t.data instanceof Int32Array ? 'I32' : 'F32', shape: [...t.shape] };
    },
    read: async (k) => {
      const t = get(file, k);
      return t.data instanceof Int32Array ? { dtype: 'i32', shape: [...t.shape], data: t.data } : { dtype: 'f32', shape: [...t.shape], data: t.data };
    },
  };
}

/** Every key and shape a model constructor asks for, from a stand-in WeightScope (no GPU, no weights). */
export function recordShapes(build: (w: WeightScope) => void): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const fake = (shape: readonly number[]): Tensor => ({ shape, dtype: 'f32', reshape: (s: number[]) => fake(s), rt: { keep: (t: Tensor) => t } }) as unknown as Tensor;
  const scope = (prefix: string): WeightScope =>
    ({
      pp: (n: string | number) => scope(`${prefix}${n}.`),
      get: (k: string, shape: readonly number[]) => (shapes.set(prefix + k, [...shape]), fake(shape)),
      getReshaped: (k: string, shape: readonly number[]) => (shapes.set(prefix + k, [...shape]), fake(shape)),
      has: () => false,
    }) as unknown as WeightScope;
  build(scope(''));
  return shapes;
}

export async function loadTinyClip(rt: Runtime, load: FixtureLoader, o: { maxChunkBytes?: number } = {}): Promise<CLIPTextModel> {
  return CLIPTextModel.load(rt, fixtureSource(await load('clip.safetensors'), 'clip.safetensors'), { config: TINY_CLIP, ...o });
}

export async function loadTinyUNet(rt: Runtime, load: FixtureLoader, file = 'unet.safetensors', config = TINY_UNET): Promise<UNet2DConditionModel> {
  return UNet2DConditionModel.load(rt, fixtureSource(await load(file), file), config);
}

/** Reads the debug copies and disposes them. */
async function readDebug(rt: Runtime, debug: Map<string, Tensor>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  try {
    for (const [k, t] of debug) out.set(k, await rt.read(t));
  } finally {
    for (const t of debug.values()) t.dispose();
  }
  return out;
}

/** CLIP on clip.io's ids: last_hidden_state and every debug output. */
export async function clipResults(rt: Runtime, load: FixtureLoader, o: { maxChunkBytes?: number } = {}): Promise<(CheckResult & { name: string })[]> {
  const f = await load('clip.io.safetensors');
  const clip = await loadTinyClip(rt, load, o);
  try {
    const debug = new Map<string, Tensor>();
    const out = clip.encode(get(f, 'input_ids').data as Int32Array, { debug });
    const actual = await rt.read(out).finally(() => out.dispose());
    const dbg = await readDebug(rt, debug);
    const res = [{ name: 'last_hidden_state', actual, expected: get(f, 'last_hidden_state').data, ...UNET_TOL.clip }];
    for (const [k, v] of dbg) res.push({ name: `debug.${k}`, actual: v, expected: get(f, `debug.${k}`).data, ...UNET_TOL.clip });
    return res;
  } finally {
    clip.dispose();
  }
}

/** The UNet on a unet.io-style file: `out` and every `debug.*` the file has. */
export async function unetResults(
  rt: Runtime,
  load: FixtureLoader,
  o: { io?: string; weights?: string; config?: UNet2DConditionConfig; timestepCond?: boolean; tol?: { atol: number; rtol: number }; model?: UNet2DConditionModel } = {},
): Promise<(CheckResult & { name: string })[]> {
  const f = await load(o.io ?? 'unet.io.safetensors');
  const unet = o.model ?? (await loadTinyUNet(rt, load, o.weights, o.config));
  const tol = o.tol ?? UNET_TOL.unet;
  try {
    const debug = new Map<string, Tensor>();
    const actual = await rt.scopeAsync(async () => {
      const up = (k: string) => rt.upload(get(f, k).data as Float32Array, get(f, k).shape);
      const timestepCond = o.timestepCond ? up('timestep_cond') : undefined;
      return rt.read(unet.forward(rt, up('sample'), up('timestep'), up('encoder_hidden_states'), { timestepCond, debug }));
    });
    const dbg = await readDebug(rt, debug);
    const res = [{ name: 'out', actual, expected: get(f, 'out').data, ...tol }];
    for (const [k, v] of dbg) {
      const e = f.get(`debug.${k}`);
      if (e) res.push({ name: `debug.${k}`, actual: v, expected: e.data, ...tol });
    }
    return res;
  } finally {
    if (!o.model) unet.dispose();
  }
}

export interface LowresSpec {
  /** pipeline_<name>.io.safetensors */
  name: 'ddim' | 'euler' | 'lcm' | 'lcm_distilled';
  scheduler: SchedulerKind;
  schedulerConfig: SchedulerConfig;
  steps: number;
  guidanceScale: number;
}

/** The fixtures' scheduler settings (pipeline_*.json; the Node tests check them against the JSON files). */
export const LOWRES_SPECS: Record<LowresSpec['name'], LowresSpec> = {
  ddim: { name: 'ddim', scheduler: 'ddim', schedulerConfig: { ...SD15_SCHEDULER_CONFIG, timestepSpacing: 'leading' }, steps: 3, guidanceScale: 7.5 },
  euler: { name: 'euler', scheduler: 'euler', schedulerConfig: { ...SD15_SCHEDULER_CONFIG, timestepSpacing: 'leading' }, steps: 3, guidanceScale: 7.5 },
  // LCMScheduler() library defaults
  lcm: { name: 'lcm', scheduler: 'lcm', schedulerConfig: { ...SD15_SCHEDULER_CONFIG, stepsOffset: 0, setAlphaToOne: true, timestepSpacing: 'leading' }, steps: 4, guidanceScale: 1 },
  // LCMScheduler.from_config(SD-1.5 scheduler config), as LCM recipes build it
  lcm_distilled: { name: 'lcm_distilled', scheduler: 'lcm', schedulerConfig: { ...SD15_SCHEDULER_CONFIG, timestepSpacing: 'leading' }, steps: 4, guidanceScale: 8 },
};

const STEP_FIELDS = [
  ['model_input', 'modelInput'],
  ['noise_pred_uncond', 'noisePredUncond'],
  ['noise_pred_text', 'noisePredText'],
  ['noise_pred', 'noisePred'],
  ['latents', 'latents'],
  ['denoised', 'denoised'],
] as const;

/**
 * textToLatent from the fixture's token ids and noise, compared step by step (every per-step tensor the file has)
 * and at the end (lowres_latent).
 */
export async function lowresResults(rt: Runtime, load: FixtureLoader, spec: LowresSpec, models?: { clip: CLIPTextModel; unet: UNet2DConditionModel }): Promise<(CheckResult & { name: string })[]> {
  const f = await load(`pipeline_${spec.name}.io.safetensors`);
  const distilled = spec.name === 'lcm_distilled';
  const clip = models?.clip ?? (await loadTinyClip(rt, load));
  let unet: UNet2DConditionModel | undefined;
  const kept = new Map<string, Tensor>();
  try {
    unet = models?.unet ?? (distilled ? await loadTinyUNet(rt, load, 'unet_lcm.safetensors', TINY_UNET_LCM) : await loadTinyUNet(rt, load));
    const [, , h, w] = get(f, 'noise').shape as [number, number, number, number];
    const stepNoise = f.get('lcm_step_noise');
    const n = get(f, 'noise').data.length;
    const latent = await textToLatent(
      { textEncoder: clip, unet },
      {
        promptIds: get(f, 'prompt_ids').data as Int32Array,
        negativeIds: f.has('negative_prompt_ids') && spec.guidanceScale > 1 && !distilled ? (get(f, 'negative_prompt_ids').data as Int32Array) : undefined,
        steps: spec.steps,
        guidanceScale: spec.guidanceScale,
        scheduler: spec.scheduler,
        schedulerConfig: spec.schedulerConfig,
        noise: get(f, 'noise').data as Float32Array,
        stepNoise: stepNoise ? Array.from({ length: stepNoise.shape[0]! }, (_, i) => (stepNoise.data as Float32Array).subarray(i * n, (i + 1) * n)) : undefined,
        height: 8 * h,
        width: 8 * w,
        onStep: (i, t) => {
          if (i === 0 && t.timestepCond && f.has('timestep_cond')) kept.set('timestep_cond', rt.keep(rt.clone(t.timestepCond)));
          for (const [key, field] of STEP_FIELDS) {
            const v = t[field];
            if (v && f.has(`step${i}.${key}`)) kept.set(`step${i}.${key}`, rt.keep(rt.clone(v)));
          }
        },
      },
    );
    kept.set('lowres_latent', latent);
    const tol = distilled ? UNET_TOL.pipelineLcmDistilled : UNET_TOL.pipeline;
    const res: (CheckResult & { name: string })[] = [];
    for (const [k, t] of kept) res.push({ name: k, actual: await rt.read(t), expected: get(f, k).data, ...(k === 'timestep_cond' ? UNET_TOL.unetLcmCond : tol) });
    const expected = [...f.keys()].filter((k) => /^step\d+\./.test(k) || k === 'lowres_latent' || (k === 'timestep_cond' && distilled)).length;
    if (res.length !== expected) throw new Error(`pipeline_${spec.name}: compared ${res.length} of the ${expected} step/result tensors`);
    return res;
  } finally {
    for (const t of kept.values()) t.dispose();
    if (!models) {
      clip.dispose();
      unet?.dispose();
    }
  }
}

function check(name: string, run: (rt: Runtime, load: FixtureLoader) => Promise<(CheckResult & { name: string })[]>): FixtureCheck {
  return { name, run: async (rt, load) => (await run(rt, load)).map(({ actual, expected, atol, rtol }) => ({ actual, expected, atol, rtol })) };
}

export const unetChecks: FixtureCheck[] = [
  check('models/clip', (rt, load) => clipResults(rt, load)),
  check('models/unet', (rt, load) => unetResults(rt, load)),
  check('pipelines/ddim-lowres', (rt, load) => lowresResults(rt, load, LOWRES_SPECS.ddim)),
];
