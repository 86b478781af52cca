/**
 * Device loss in the middle of a run: the run rejects with DeviceLostError; the next run on the same pipeline
 * (rt.exclusive restores the device and re-uploads the weights; tokenizer and configs stay) gives the output it
 * gave before the loss for the same seed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelFromPath } from '../../src/node/model-folder.js';
import { FMBoostPipeline } from '../../src/pipelines/fmboost-pipeline.js';
import { DeviceLostError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { freshRuntime } from '../helpers/device.js';
import { failure } from './helpers.js';

const SLOW = 1_800_000;

let rt: Runtime;
let pipe: FMBoostPipeline;

beforeAll(async () => {
  rt = await freshRuntime();
  pipe = FMBoostPipeline.fromModels(rt, await loadModelFromPath(rt, undefined));
}, SLOW);
afterAll(() => {
  pipe?.dispose();
  rt?.destroy();
});

/** One 512² generation, shared by the device-loss and the concurrency test (each costs minutes on SwiftShader). */
const GEN = { prompt: 'a photo of a cat', size: 512 as const, steps: 2, seed: 9 };
let beforeLoss: Awaited<ReturnType<FMBoostPipeline['generate']>> | undefined;

const picture = () => ({ width: 64, height: 64, data: new Uint8ClampedArray(64 * 64 * 4).map((_, i) => (i * 29) & 255) });

describe('device loss', () => {
  it('device.destroy() mid-upscale: DeviceLostError; the next upscale() restores and matches the result before the loss', { timeout: SLOW }, async () => {
    const o = { factor: 2 as const, seed: 4, cfm: { steps: 3 } };
    const before = await pipe.upscale(picture(), o);
    const tokenizer = pipe.tokenizer;
    const weights = rt.memory().liveBytes;
    const e = await failure(() => pipe.upscale(picture(), { ...o, onProgress: (s, i) => s === 'refine' && i === 1 && rt.device.destroy() }));
    expect(e).toBeInstanceOf(DeviceLostError);
    expect(rt.isLost).toBe(true);
    const after = await pipe.upscale(picture(), o);
    expect(rt.isLost).toBe(false);
    expect(pipe.tokenizer).toBe(tokenizer);
    expect(Buffer.from(after.image.data).equals(Buffer.from(before.image.data))).toBe(true);
    expect(rt.memory().liveBytes).toBe(weights);
  });

  it('device.destroy() mid-generate: DeviceLostError; the next generate() restores and matches the result before the loss', { timeout: SLOW }, async () => {
    const o = GEN;
    const before = (beforeLoss = await pipe.generate(o));
    const e = await failure(() => pipe.generate({ ...o, onProgress: (s, i) => s === 'denoise' && i === 1 && rt.device.destroy() }));
    expect(e).toBeInstanceOf(DeviceLostError);
    const after = await pipe.generate(o);
    expect(Buffer.from(after.latent.data.buffer).equals(Buffer.from(before.latent.data.buffer))).toBe(true);
    expect(Buffer.from(after.image.data).equals(Buffer.from(before.image.data))).toBe(true);
  });
});

describe('concurrency on the facade', () => {
  it('two generate() calls at once on one pipeline both complete with the results they give alone', { timeout: SLOW }, async () => {
    const alone = beforeLoss ?? (await pipe.generate(GEN));
    const [a, b] = await Promise.all([pipe.generate(GEN), pipe.generate(GEN)]);
    for (const r of [a, b]) {
      expect(Buffer.from(r.image.data).equals(Buffer.from(alone.image.data))).toBe(true);
      expect(Buffer.from(r.latent.data.buffer).equals(Buffer.from(alone.latent.data.buffer))).toBe(true);
    }
  });
});
