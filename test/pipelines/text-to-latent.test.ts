import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CLIPTokenizer } from '../../src/models/clip-tokenizer.js';
import type { CLIPTextModel } from '../../src/models/clip-text-encoder.js';
import type { UNet2DConditionModel } from '../../src/models/unet-2d-condition/index.js';
import { schedulerConfigFromDiffusers } from '../../src/pipelines/schedulers/index.js';
import { textToLatent, type TextToLatentOptions } from '../../src/pipelines/text-to-latent.js';
import { AbortError, ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { nodeGPU } from '../../src/node/gpu.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import { FIXTURES, fx, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { loadTinyClip, loadTinyUNet, LOWRES_SPECS, lowresResults, TINY_UNET_LCM, UNET_TOL, type LowresSpec } from '../shared/fixtures-unet.js';

// dawn.node (webgpu 0.6.2) segfaults once the GPU object that made a device is garbage-collected, and
// createNodeRuntime keeps only the device: this module holds the GPU for as long as the file runs.
let gpu: GPU | null = null;
let shared: Promise<Runtime> | null = null;
function testRuntime(): Promise<Runtime> {
  shared ??= nodeGPU().then((g) => createRuntime({ gpu: (gpu = g), log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }));
  return shared;
}

const json = (name: string) => JSON.parse(readFileSync(FIXTURES + name, 'utf8')) as { scheduler: Record<string, unknown>; guidance_scale: number; num_inference_steps: number; timesteps: number[] };

describe('textToLatent against pipeline_{ddim,euler,lcm,lcm_distilled} (low-res half)', () => {
  let rt: Runtime;
  let clip: CLIPTextModel;
  let unet: UNet2DConditionModel;
  let unetLcm: UNet2DConditionModel;
  beforeAll(async () => {
    rt = await testRuntime();
    clip = await loadTinyClip(rt, nodeLoader);
    unet = await loadTinyUNet(rt, nodeLoader);
    unetLcm = await loadTinyUNet(rt, nodeLoader, 'unet_lcm.safetensors', TINY_UNET_LCM);
  });
  afterAll(() => {
    clip?.dispose();
    unet?.dispose();
    unetLcm?.dispose();
  });

  it('the fixture specs used in the browser are the pipeline_*.json settings', () => {
    for (const spec of Object.values(LOWRES_SPECS)) {
      const j = json(`pipeline_${spec.name}.json`);
      expect(spec.schedulerConfig, spec.name).toEqual(schedulerConfigFromDiffusers(j.scheduler));
      expect(spec.guidanceScale, spec.name).toBe(j.guidance_scale);
      expect(spec.steps, spec.name).toBe(j.num_inference_steps);
    }
    expect(UNET_TOL.pipeline).toEqual(tolerance('pipeline_ddim', 'lowres_latent'));
    expect(UNET_TOL.pipeline).toEqual(tolerance('pipeline_euler', 'lowres_latent'));
    expect(UNET_TOL.pipeline).toEqual(tolerance('pipeline_lcm', 'lowres_latent'));
    expect(UNET_TOL.pipelineLcmDistilled).toEqual(tolerance('pipeline_lcm_distilled', 'lowres_latent'));
    expect(UNET_TOL.unetLcmCond).toEqual(tolerance('pipeline_lcm_distilled', 'timestep_cond'));
  });

  it.each(['ddim', 'euler', 'lcm', 'lcm_distilled'] as const)('%s: every step and lowres_latent', async (name) => {
    const spec: LowresSpec = LOWRES_SPECS[name];
    const res = await lowresResults(rt, nodeLoader, spec, { clip, unet: name === 'lcm_distilled' ? unetLcm : unet });
    let worst = 0;
    for (const r of res) worst = Math.max(worst, expectClose(r.actual, r.expected, r, `${name} ${r.name}`).maxAbs);
    if (name === 'lcm_distilled') expect(res.map((r) => r.name)).toContain('timestep_cond');
    const last = res.find((r) => r.name === 'lowres_latent')!;
    const rep = expectClose(last.actual, last.expected, last, `${name} lowres_latent`);
    console.info(`pipeline_${name}: lowres_latent maxAbs ${rep.maxAbs.toExponential(2)}, worst step tensor ${worst.toExponential(2)} (${res.length - 1} step tensors)`);
  });

  it('LCM-distilled UNet: no CFG batch even with guidance 8 (guidance goes in through timestep_cond)', async () => {
    const seen: number[] = [];
    const latent = await textToLatent(
      { textEncoder: clip, unet: unetLcm },
      {
        promptIds: fx('pipeline_lcm_distilled.io.safetensors', 'prompt_ids').data as Int32Array,
        steps: 2,
        guidanceScale: 8,
        scheduler: 'lcm',
        noise: fx('pipeline_lcm_distilled.io.safetensors', 'noise').data as Float32Array,
        height: 64,
        width: 64,
        seed: 3,
        onStep: (_, t) => seen.push(t.modelInput.shape[0]!, t.noisePredUncond ? 1 : 0, t.timestepCond ? 1 : 0),
      },
    );
    latent.dispose();
    expect(seen).toEqual([1, 0, 1, 1, 0, 1]);
  });
});

describe('textToLatent: loop behaviour and validation', () => {
  let rt: Runtime;
  let clip: CLIPTextModel;
  let unet: UNet2DConditionModel;
  let tokenizer: CLIPTokenizer;
  const ids = () => fx('pipeline_ddim.io.safetensors', 'prompt_ids').data as Int32Array;
  const neg = () => fx('pipeline_ddim.io.safetensors', 'negative_prompt_ids').data as Int32Array;
  beforeAll(async () => {
    rt = await testRuntime();
    clip = await loadTinyClip(rt, nodeLoader);
    unet = await loadTinyUNet(rt, nodeLoader);
    tokenizer = await CLIPTokenizer.fromBpeGz(new Uint8Array(readFileSync(FIXTURES + 'bpe_simple_vocab_16e6.txt.gz')));
  });
  afterAll(() => {
    clip?.dispose();
    unet?.dispose();
  });
  const base = (): TextToLatentOptions => ({ prompt: 'a photo of an astronaut riding a horse on mars', steps: 2, guidanceScale: 7.5, scheduler: 'ddim', height: 64, width: 64, seed: 1 });

  it('text prompts tokenize to the fixture ids: same result as promptIds/negativeIds', async () => {
    const noise = fx('pipeline_ddim.io.safetensors', 'noise').data as Float32Array;
    const a = await textToLatent({ tokenizer, textEncoder: clip, unet }, { ...base(), noise });
    const b = await textToLatent({ textEncoder: clip, unet }, { ...base(), prompt: undefined, promptIds: ids(), negativeIds: neg(), noise });
    try {
      expect(await rt.read(a)).toEqual(await rt.read(b));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('batch: one prompt × batchSize, seeded noise is reproducible and differs per item', async () => {
    const a = await textToLatent({ tokenizer, textEncoder: clip, unet }, { ...base(), batchSize: 2 });
    const b = await textToLatent({ tokenizer, textEncoder: clip, unet }, { ...base(), prompt: [base().prompt as string, base().prompt as string] });
    try {
      expect(a.shape).toEqual([2, 4, 8, 8]);
      const va = await rt.read(a);
      expect(va).toEqual(await rt.read(b));
      expect(va.subarray(0, 256)).not.toEqual(va.subarray(256));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('progress fires per step, nothing is read back inside the loop, and nothing leaks', async () => {
    const live = rt.memory().liveBytes;
    const read = vi.spyOn(rt, 'read');
    const progress: [number, number][] = [];
    const latent = await textToLatent({ tokenizer, textEncoder: clip, unet }, { ...base(), steps: 3, onProgress: (i, n) => progress.push([i, n]) });
    expect(read).not.toHaveBeenCalled();
    read.mockRestore();
    expect(progress).toEqual([[1, 3], [2, 3], [3, 3]]);
    expect(rt.memory().liveBytes - live).toBe(latent.byteLength);
    latent.dispose();
    expect(rt.memory().liveBytes).toBe(live);
  });

  it('an AbortSignal stops between steps with AbortError and frees everything', async () => {
    const live = rt.memory().liveBytes;
    const ctl = new AbortController();
    const progress: number[] = [];
    const p = textToLatent({ tokenizer, textEncoder: clip, unet }, { ...base(), steps: 5, signal: ctl.signal, onProgress: (i) => { progress.push(i); if (i === 2) ctl.abort(); } });
    await expect(p).rejects.toThrow(AbortError);
    expect(progress).toEqual([1, 2]);
    expect(rt.memory().liveBytes).toBe(live);
    // an already-aborted signal fails before any GPU work
    const before = rt.dispatches;
    await expect(textToLatent({ tokenizer, textEncoder: clip, unet }, { ...base(), signal: AbortSignal.abort() })).rejects.toThrow(AbortError);
    expect(rt.dispatches).toBe(before);
  });

  it('bad options are typed errors before any GPU work', async () => {
    const m = { tokenizer, textEncoder: clip, unet };
    const before = rt.dispatches;
    const live = rt.memory().liveBytes;
    const bad: [Partial<TextToLatentOptions> | Record<string, unknown>, RegExp | (new (...a: never[]) => Error)][] = [
      [{ scheduler: 'pndm' }, /unknown scheduler 'pndm'/],
      [{ steps: 0 }, /steps must be an integer in \[1, 1000\]/],
      [{ steps: 2.5 }, ArgumentError],
      [{ guidanceScale: NaN }, /guidanceScale must be a finite number/],
      [{ prompt: 42 }, /prompt must be a string/],
      [{ prompt: ['a', 7] }, /prompt\[1\] must be a string/],
      [{ prompt: [] }, ArgumentError],
      [{ prompt: undefined }, /prompt \(or promptIds\) is required/],
      [{ prompt: ['a', 'b'], negativePrompt: ['x', 'y', 'z'] }, /3 negativePrompts for a batch of 2/],
      [{ prompt: ['a', 'b'], batchSize: 3 }, /batchSize 3 does not match the 2 prompts/],
      [{ prompt: undefined, promptIds: ids(), negativeIds: new Int32Array(154) }, /negativeIds hold 2 prompts for a batch of 1/],
      [{ prompt: undefined, promptIds: new Int32Array(70) }, ShapeError],
      [{ noise: new Float32Array(10) }, /noise must be a Float32Array of 256 values/],
      [{ batchSize: 2, noise: new Float32Array(256) }, /512 values/],
      [{ height: 60 }, /height must be a positive multiple of 8/],
      [{ width: 0 }, /width must be a positive multiple of 8/],
      [{ height: 72 }, /multiple of 2 for this UNet/],
      [{ seed: -1 }, ArgumentError],
      [{ scheduler: 'lcm', stepNoise: [new Float32Array(3)] }, /stepNoise\[0\] must be a Float32Array of 256 values/],
      [{ prompt: 'a', promptIds: ids() }, /not both/],
    ];
    for (const [o, err] of bad) {
      await expect(textToLatent(m, { ...base(), ...o } as TextToLatentOptions), JSON.stringify(o)).rejects.toThrow(err as RegExp);
    }
    await expect(textToLatent({ textEncoder: clip, unet }, base())).rejects.toThrow(/tokenizer is required/);
    await expect(textToLatent({ textEncoder: clip } as never, base())).rejects.toThrow(ArgumentError);
    expect(rt.dispatches).toBe(before);
    expect(rt.memory().liveBytes).toBe(live);
  });
});
