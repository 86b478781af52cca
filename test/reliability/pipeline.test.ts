/**
 * Reliability of the public entry points on the bundled tiny model, at the smallest sizes (64×64 px pictures,
 * 8×8 latents; the facade's fixed 512² base where it is the facade under test): validation before GPU work,
 * out-of-memory, cancellation, NaN/Inf per stage, concurrent calls, and no leaks over a long mixed run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CfmUNet } from '../../src/models/cfm-unet.js';
import type { UNet2DConditionModel } from '../../src/models/unet-2d-condition/model.js';
import { loadModelFromPath } from '../../src/node/model-folder.js';
import { boost, cascade, decodeToImage, upscaleImage, type CascadeStage } from '../../src/pipelines/boost.js';
import { FMBoostPipeline } from '../../src/pipelines/fmboost-pipeline.js';
import { hiresFix } from '../../src/pipelines/hires-fix.js';
import type { ModelSet } from '../../src/pipelines/model-source.js';
import { textToLatent } from '../../src/pipelines/text-to-latent.js';
import { AbortError, ArgumentError, FmBoostError, NumericalError, OutOfMemoryError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { freshRuntime, testRuntime } from '../helpers/device.js';
import { randn, rng } from '../helpers/random.js';
import { failure, poisonedCfm, poisonedUNet } from './helpers.js';

/** SwiftShader compiles every kernel on first use; a loaded machine needs minutes. */
const SLOW = 1_800_000;

let rt: Runtime;
let other: Runtime;
let pipe: FMBoostPipeline;
let m: Required<ModelSet>;
let cfm: CfmUNet;
let badUnet: UNet2DConditionModel;
let badCfm: CfmUNet;

const PX = 64; // picture edge
const L = PX / 8; // latent edge

beforeAll(async () => {
  rt = await testRuntime();
  other = await freshRuntime();
  pipe = FMBoostPipeline.fromModels(rt, await loadModelFromPath(rt, undefined));
  m = pipe.models as Required<ModelSet>;
  cfm = m.cfmStages[0]!.cfm;
  badUnet = await poisonedUNet(rt);
  badCfm = await poisonedCfm(rt);
}, SLOW);
afterAll(() => {
  pipe?.dispose();
  other?.destroy();
});

const latent = (r: Runtime = rt, seed = 1, n = 1): Tensor => r.keep(r.upload(randn(n * 4 * L * L, seed), [n, 4, L, L], { label: 'test.latent' }));
const picture = (w = PX, h = PX) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4).map((_, i) => (i * 37) & 255) });

/** The low-level models at the smallest size. */
const t2l = (o: Record<string, unknown> = {}) =>
  textToLatent({ tokenizer: m.tokenizer, textEncoder: m.textEncoder, unet: m.unet }, { prompt: 'a cat', scheduler: 'ddim', steps: 1, seed: 1, height: PX, width: PX, ...o } as never);

describe('validation before GPU work: typed errors, no dispatch, no allocation', () => {
  it('every public entry point refuses bad input', { timeout: SLOW }, async () => {
    const z = latent();
    const z2 = latent(rt, 2, 2);
    const z16 = rt.keep(rt.upload(randn(4 * L * L, 3), [1, 4, L, L], { dtype: 'f16' }));
    const zOdd = rt.keep(rt.upload(randn(4 * 9 * 9, 4), [1, 4, 9, 9]));
    const zOther = latent(other);
    const img = rt.keep(rt.upload(randn(3 * PX * PX, 5), [1, 3, PX, PX]));
    const img16 = rt.keep(rt.upload(randn(3 * PX * PX, 5), [1, 3, PX, PX], { dtype: 'f16' }));
    const imgOdd = rt.keep(rt.upload(randn(3 * 60 * PX, 5), [1, 3, 60, PX]));
    const imgOther = other.keep(other.upload(randn(3 * PX * PX, 5), [1, 3, PX, PX]));
    const emb = rt.keep(rt.upload(randn(77 * 32, 6), [1, 77, 32]));
    const emb2 = rt.keep(rt.upload(randn(2 * 77 * 32, 6), [2, 77, 32]));
    const embOther = other.keep(other.upload(randn(77 * 32, 6), [1, 77, 32]));
    const bm = { vae: m.vae, cfm };
    const hm = { vae: m.vae, unet: m.unet };
    const hf = { factor: 2, strength: 0.5, steps: 2, scheduler: 'ddim', guidanceScale: 1, promptEmbeds: emb } as const;
    const st = (o: object) => [{ cfm, factor: 2, ...o }] as CascadeStage[];
    type Case = [string, () => unknown, new (...a: never[]) => Error];
    const cases: Case[] = [
      // textToLatent
      ['textToLatent: height not a multiple of 8', () => t2l({ height: 60 }), ArgumentError],
      ['textToLatent: latent not a multiple of the UNet', () => t2l({ height: 72 }), ArgumentError],
      ['textToLatent: NaN guidance', () => t2l({ guidanceScale: NaN }), ArgumentError],
      ['textToLatent: Infinity guidance', () => t2l({ guidanceScale: Infinity }), ArgumentError],
      ['textToLatent: unknown scheduler', () => t2l({ scheduler: 'pndm' }), ArgumentError],
      ['textToLatent: negative steps', () => t2l({ steps: -3 }), ArgumentError],
      ['textToLatent: absurd steps', () => t2l({ steps: 1001 }), ArgumentError],
      ['textToLatent: batch mismatch', () => t2l({ prompt: ['a', 'b'], batchSize: 3 }), ArgumentError],
      ['textToLatent: noise of the wrong size', () => t2l({ noise: new Float32Array(3) }), ShapeError],
      ['textToLatent: NaN seed', () => t2l({ seed: NaN }), ArgumentError],
      // boost
      ['boost: factor 3', () => boost(bm, z, { factor: 3 as 2, numSteps: 2 }), ArgumentError],
      ['boost: f16 latent', () => boost(bm, z16, { factor: 2, numSteps: 2 }), ShapeError],
      ['boost: unknown solver', () => boost(bm, z, { factor: 2, numSteps: 2, solver: 'heun' as 'euler' }), ArgumentError],
      ['boost: absurd steps', () => boost(bm, z, { factor: 2, numSteps: 5000 }), ArgumentError],
      ['boost: negative steps', () => boost(bm, z, { factor: 2, numSteps: -2 }), ArgumentError],
      ['boost: NaN noising step', () => boost(bm, z, { factor: 2, numSteps: 2, noisingStep: NaN }), ArgumentError],
      ['boost: Infinity seed', () => boost(bm, z, { factor: 2, numSteps: 2, seed: Infinity }), ArgumentError],
      ['boost: latent from another runtime', () => boost(bm, zOther, { factor: 2, numSteps: 2 }), ArgumentError],
      ['boost: low-res image batch mismatch', () => boost(bm, z2, { factor: 2, numSteps: 2, lowresImage: img }), ShapeError],
      ['boost: noise of the wrong size', () => boost(bm, z, { factor: 2, numSteps: 2, noise: new Float32Array(5) }), ShapeError],
      // cascade
      ['cascade: no stage', () => cascade([], z, { vae: m.vae }), ArgumentError],
      ['cascade: factor 3', () => cascade(st({ factor: 3 }), z, { vae: m.vae }), ArgumentError],
      ['cascade: absurd steps', () => cascade(st({ numSteps: 1e9 }), z, { vae: m.vae }), ArgumentError],
      ['cascade: latent from another runtime', () => cascade(st({}), zOther, { vae: m.vae }), ArgumentError],
      // upscaleImage
      ['upscaleImage: 60×64 picture', () => upscaleImage(bm, picture(60, 64), { factor: 2, numSteps: 2 }), ShapeError],
      ['upscaleImage: RGBA size mismatch', () => upscaleImage(bm, { width: PX, height: PX, data: new Uint8ClampedArray(7) }, { factor: 2, numSteps: 2 }), ShapeError],
      ['upscaleImage: f16 image tensor', () => upscaleImage(bm, img16, { factor: 2, numSteps: 2 }), ShapeError],
      ['upscaleImage: image from another runtime', () => upscaleImage(bm, imgOther, { factor: 2, numSteps: 2 }), ArgumentError],
      ['upscaleImage: Infinity steps', () => upscaleImage(bm, picture(), { factor: 2, numSteps: Infinity }), ArgumentError],
      // hiresFix
      ['hiresFix: NaN strength', () => hiresFix(hm, z, { ...hf, strength: NaN }), ArgumentError],
      ['hiresFix: absurd steps', () => hiresFix(hm, z, { ...hf, steps: 5000 }), ArgumentError],
      ['hiresFix: unknown scheduler', () => hiresFix(hm, z, { ...hf, scheduler: 'pndm' as 'ddim' }), ArgumentError],
      ['hiresFix: Infinity guidance', () => hiresFix(hm, z, { ...hf, guidanceScale: Infinity }), ArgumentError],
      ['hiresFix: embeddings batch mismatch', () => hiresFix(hm, z, { ...hf, promptEmbeds: emb2 }), ShapeError],
      ['hiresFix: latent from another runtime', () => hiresFix(hm, zOther, hf), ArgumentError],
      ['hiresFix: embeddings from another runtime', () => hiresFix(hm, z, { ...hf, promptEmbeds: embOther }), ArgumentError],
      // AutoencoderKL
      ['vae.decode: f16 latent', () => m.vae.decode(z16), ShapeError],
      ['vae.decode: 3-channel latent', () => m.vae.decode(img), ShapeError],
      ['vae.decode: latent from another runtime', () => m.vae.decode(zOther), ArgumentError],
      ['vae.decode: unknown tiling', () => m.vae.decode(z, { tiling: 'x' as 'auto' }), ArgumentError],
      ['vae.decode: tile size NaN', () => m.vae.decode(z, { tiling: { tileSize: NaN } }), ArgumentError],
      ['vae.encode: 60×64 picture', () => m.vae.encode(imgOdd), ShapeError],
      ['vae.encode: f16 picture', () => m.vae.encode(img16), ShapeError],
      ['vae.encode: picture from another runtime', () => m.vae.encode(imgOther), ArgumentError],
      // CfmUNet.forward
      ['cfm.forward: 9×9 latent', () => cfm.forward(rt, zOdd, zOdd, 0.5), ShapeError],
      ['cfm.forward: NaN time', () => cfm.forward(rt, z, z, NaN), ArgumentError],
      ['cfm.forward: context batch mismatch', () => cfm.forward(rt, z, z2, 0.5), ShapeError],
      ['cfm.forward: f16 x_t', () => cfm.forward(rt, z16, z, 0.5), ShapeError],
      // UNet forward
      ['unet.forward: 9×9 latent', () => m.unet.forward(rt, zOdd, 10, emb), ShapeError],
      ['unet.forward: NaN timestep', () => m.unet.forward(rt, z, NaN, emb), ArgumentError],
      ['unet.forward: context batch mismatch', () => m.unet.forward(rt, z, 10, emb2), ShapeError],
      ['unet.forward: f16 sample', () => m.unet.forward(rt, z16, 10, emb), ShapeError],
      // FMBoostPipeline
      ['FMBoostPipeline.load: no runtime', () => FMBoostPipeline.load(null as unknown as Runtime), ArgumentError],
      ['FMBoostPipeline.load: bad options', () => FMBoostPipeline.load(rt, 5 as never), ArgumentError],
      ['FMBoostPipeline.load: unknown dtype', () => FMBoostPipeline.load(rt, { dtype: 'f8' as 'f16' }), ArgumentError],
      ['generate: size 768', () => pipe.generate({ prompt: 'x', size: 768 as 512 }), ArgumentError],
      ['generate: absurd steps', () => pipe.generate({ prompt: 'x', steps: 1001 }), ArgumentError],
      ['generate: negative steps', () => pipe.generate({ prompt: 'x', steps: -1 }), ArgumentError],
      ['generate: NaN guidance', () => pipe.generate({ prompt: 'x', guidanceScale: NaN }), ArgumentError],
      ['generate: unknown scheduler', () => pipe.generate({ prompt: 'x', scheduler: 'pndm' as 'ddim' }), ArgumentError],
      ['generate: unknown solver', () => pipe.generate({ prompt: 'x', cfm: { solver: 'heun' as 'euler' } }), ArgumentError],
      ['generate: absurd ODE steps', () => pipe.generate({ prompt: 'x', cfm: { steps: 1001 } }), ArgumentError],
      ['generate: NaN seed', () => pipe.generate({ prompt: 'x', seed: NaN }), ArgumentError],
      ['upscale: 60×64 picture', () => pipe.upscale(picture(60, 64), { factor: 2 }), ShapeError],
      ['upscale: factor 3', () => pipe.upscale(picture(), { factor: 3 as 2 }), ArgumentError],
      ['upscale: NaN ODE steps', () => pipe.upscale(picture(), { factor: 2, cfm: { steps: NaN } }), ArgumentError],
    ];
    const wrong: string[] = [];
    for (const [name, run, type] of cases) {
      const d0 = rt.dispatches;
      const d1 = other.dispatches;
      const live = rt.memory().liveBytes;
      const e = await failure(run);
      if (!(e instanceof type)) wrong.push(`${name}: expected ${type.name}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      else if (rt.dispatches !== d0 || other.dispatches !== d1) wrong.push(`${name}: ${rt.dispatches - d0 + other.dispatches - d1} dispatches were recorded before the error`);
      else if (rt.memory().liveBytes !== live) wrong.push(`${name}: ${rt.memory().liveBytes - live} bytes stayed allocated`);
    }
    expect(wrong).toEqual([]);
    expect(cases.length).toBeGreaterThanOrEqual(60);
    for (const t of [z, z2, z16, zOdd, img, img16, imgOdd, emb, emb2]) t.dispose();
    for (const t of [zOther, imgOther, embOther]) t.dispose();
  });

  it('a tensor of another runtime is refused where GPU work would bind it', () => {
    const t = other.keep(other.upload([1, 2, 3, 4], [4]));
    expect(() => rt.clone(t)).toThrow(ArgumentError);
    t.dispose();
  });
});

describe('out of memory', () => {
  it('a tiny budget: OutOfMemoryError with requested and available bytes; everything freed; the runtime stays usable', { timeout: SLOW }, async () => {
    const z = latent();
    // Warm-up: constant tables (embedding frequencies) are uploaded once per runtime on first use and kept.
    (await boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 2, seed: 1 })).dispose();
    (await t2l()).dispose();
    const base = rt.memory();
    const budget = rt.allocator.budgetBytes;
    try {
      // Reusing a pooled buffer allocates nothing new: empty the pool so the smaller budget applies at once.
      rt.allocator.trim();
      rt.allocator.budgetBytes = base.liveBytes + 4 * 1024;
      for (const run of [() => boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 2, seed: 1 }), () => t2l(), () => m.vae.decode(z, { tiling: 'off' })]) {
        const e = await failure(run);
        expect(e).toBeInstanceOf(OutOfMemoryError);
        const oom = e as OutOfMemoryError;
        expect(oom.requestedBytes).toBeGreaterThan(0);
        expect(oom.availableBytes).toBeGreaterThanOrEqual(0);
        expect(oom.requestedBytes).toBeGreaterThan(oom.availableBytes);
        expect(oom.message).toMatch(/requested .*available/);
        expect(rt.memory().liveBytes).toBe(base.liveBytes);
      }
    } finally {
      rt.allocator.budgetBytes = budget;
    }
    const up = await boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 2, seed: 1 });
    expect(up.shape).toEqual([1, 4, 2 * L, 2 * L]);
    up.dispose();
    expect(rt.memory().liveBytes).toBe(base.liveBytes);
    z.dispose();
  });

  it('the tiled decoder retries with a smaller tile when a large buffer cannot be allocated, and gives up when none fits', { timeout: SLOW }, async () => {
    const z = latent();
    const ref = await m.vae.decode(z, { tiling: 'off' });
    const want = await rt.read(ref);
    ref.dispose();
    const alloc = rt.allocator;
    const live = rt.memory().liveBytes;
    let limit = 64 * 1024;
    let refused = 0;
    const real = alloc.alloc;
    // A device that cannot allocate large buffers (the GPU's own out-of-memory, not the budget).
    alloc.alloc = function (bytes, label, pooled) {
      if (bytes > limit) {
        refused++;
        throw new OutOfMemoryError(bytes, limit, `test: buffers over ${limit} B cannot be allocated`);
      }
      return real.call(this, bytes, label, pooled);
    };
    try {
      const r = await m.vae.decodeWithReport(z);
      expect(refused).toBeGreaterThan(0);
      expect(r.report.tileSize).toBeLessThan(L);
      const got = await rt.read(r.image);
      r.image.dispose();
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-4);
      expect(rt.memory().liveBytes).toBe(live);
      limit = 1024;
      await expect(m.vae.decode(z)).rejects.toThrow(OutOfMemoryError);
      expect(rt.memory().liveBytes).toBe(live);
    } finally {
      delete (alloc as { alloc?: unknown }).alloc;
    }
    expect(alloc.alloc).toBe(real);
    z.dispose();
  });

  it('the facade: a tiny budget fails the run, frees it, and the next run succeeds', { timeout: SLOW }, async () => {
    // Warm-up (constant tables are made on first use), cut short at the low-res decode.
    const ac = new AbortController();
    await expect(pipe.generate({ prompt: 'x', size: 512, steps: 1, seed: 1, signal: ac.signal, onProgress: (s) => s === 'decode-lowres' && ac.abort() })).rejects.toThrow(AbortError);
    const live = rt.memory().liveBytes;
    const budget = rt.allocator.budgetBytes;
    rt.allocator.trim();
    rt.allocator.budgetBytes = live + 256 * 1024;
    await expect(pipe.generate({ prompt: 'x', size: 512, steps: 1, seed: 1 })).rejects.toThrow(OutOfMemoryError);
    rt.allocator.budgetBytes = budget;
    expect(rt.memory().liveBytes).toBe(live);
  });
});

describe('numerical health: NaN/Inf named by stage', () => {
  it('a poisoned UNet: NumericalError at the low-res latent, nothing left allocated', { timeout: SLOW }, async () => {
    const live = rt.memory().liveBytes;
    const bad = FMBoostPipeline.fromModels(rt, { ...m, unet: badUnet, dispose: () => {} });
    const e = await failure(() => bad.generate({ prompt: 'x', size: 512, steps: 1, seed: 1 }));
    expect(e).toBeInstanceOf(NumericalError);
    expect((e as NumericalError).stage).toBe('low-res latent');
    expect(rt.memory().liveBytes).toBe(live);
  });

  it('a poisoned CFM network in a cascade: NumericalError naming the stage', { timeout: SLOW }, async () => {
    const z = latent();
    const live = rt.memory().liveBytes;
    const e = await failure(() => cascade([{ cfm: badCfm, factor: 2, numSteps: 2 }, { cfm, factor: 2, numSteps: 2 }], z, { vae: m.vae, seed: 1 }));
    expect(e).toBeInstanceOf(NumericalError);
    expect((e as NumericalError).stage).toBe('boosted latent (cascade stage 0)');
    expect(rt.memory().liveBytes).toBe(live);
    z.dispose();
  });
});

describe('cancellation', () => {
  /** Aborts when `when` first returns true; the call must reject with our AbortError and free everything. */
  async function cancelled(run: (signal: AbortSignal, abortIf: (c: boolean) => void) => Promise<unknown>): Promise<void> {
    const live = rt.memory().liveBytes;
    const ac = new AbortController();
    const e = await failure(() => run(ac.signal, (c) => c && ac.abort()));
    expect(e).toBeInstanceOf(AbortError);
    expect(e).toBeInstanceOf(FmBoostError);
    expect(rt.memory().liveBytes).toBe(live);
  }

  it('text-to-latent, boost, cascade and decode stop with AbortError and free everything', { timeout: SLOW }, async () => {
    const z = latent();
    // before start
    await cancelled((signal, abort) => (abort(true), t2l({ signal })));
    // during text-to-latent: after the first of three steps; at most one more UNet call is recorded
    let steps = 0;
    await cancelled((signal, abort) => t2l({ steps: 3, signal, onProgress: (i: number) => ((steps = i), abort(i === 1)) }));
    expect(steps).toBe(1);
    // during boost: at the first ODE evaluation of four
    let nfe = 0;
    await cancelled((signal, abort) => boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 5, seed: 1, signal, onProgress: (p) => p.stage === 'refine' && ((nfe = p.step), abort(true)) }));
    expect(nfe).toBe(1);
    // during boost's PSU decode (first progress report comes before the VAE runs)
    await cancelled((signal, abort) => boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 2, seed: 1, signal, onProgress: (p) => abort(p.stage === 'upsample' && p.step === 0) }));
    // during a cascade's second stage
    await cancelled((signal, abort) => cascade([{ cfm, factor: 2, numSteps: 2 }, { cfm, factor: 2, numSteps: 2 }], z, { vae: m.vae, seed: 1, signal, onProgress: (p) => abort(p.cascadeStage === 1) }));
    // during a tiled decode: one tile later
    await cancelled((signal, abort) => {
      const run = decodeToImage(m.vae, z, { signal, tiling: { tileSize: 2 } });
      abort(true);
      return run;
    });
    z.dispose();
  });

  it('the facade passes its signal down: text-to-latent, decode and refine stop', { timeout: SLOW }, async () => {
    for (const stop of ['denoise', 'decode-lowres'] as const) {
      await cancelled((signal, abort) => pipe.generate({ prompt: 'x', size: 512, steps: 2, seed: 1, signal, onProgress: (s) => abort(s === stop) }));
    }
    await cancelled((signal, abort) => pipe.upscale(picture(), { factor: 2, seed: 1, cfm: { steps: 3 }, signal, onProgress: (s, i) => abort(s === 'refine' && i === 1) }));
  });
});

describe('concurrency', () => {
  it('calls started at once queue through rt.exclusive and give the results they give alone; a cancelled one does not disturb the others', { timeout: SLOW }, async () => {
    const z = latent();
    const aloneLow = await t2l({ seed: 11, steps: 2 });
    const alone = await rt.read(aloneLow);
    aloneLow.dispose();
    const aloneBoost = await boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 2, seed: 5 });
    const aloneB = await rt.read(aloneBoost);
    aloneBoost.dispose();
    const live = rt.memory().liveBytes;

    const ac = new AbortController();
    const events: string[] = [];
    const [a, b, c, d] = await Promise.allSettled([
      t2l({ seed: 11, steps: 2, onProgress: () => events.push('a') }),
      boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 2, seed: 5, onProgress: () => events.push('b') }),
      t2l({ seed: 11, steps: 3, signal: ac.signal, onProgress: () => (events.push('c'), ac.abort()) }),
      boost({ vae: m.vae, cfm }, z, { factor: 2, numSteps: 2, seed: 5, onProgress: () => events.push('d') }),
    ]);
    // FIFO jobs: each call's progress is contiguous and in call order.
    expect(events.join('')).toMatch(/^a+b+cd+$/);
    expect(c.status).toBe('rejected');
    expect((c as PromiseRejectedResult).reason).toBeInstanceOf(AbortError);
    for (const [r, want] of [[a, alone], [b, aloneB], [d, aloneB]] as const) {
      expect(r.status).toBe('fulfilled');
      const t = (r as PromiseFulfilledResult<Tensor>).value;
      expect(Buffer.from((await rt.read(t)).buffer).equals(Buffer.from(want.buffer))).toBe(true);
      t.dispose();
    }
    expect(rt.memory().liveBytes).toBe(live);
    z.dispose();
  });

  it('two facade runs at once on one pipeline both complete, equal to running alone; a third, cancelled while queued, leaves them alone', { timeout: SLOW }, async () => {
    const o = { factor: 2 as const, seed: 21, cfm: { steps: 2 } };
    const alone = await pipe.upscale(picture(), o);
    const ac = new AbortController();
    const events: string[] = [];
    const tag = (name: string) => (s: string) => events.push(`${name}:${s}`);
    const runs = [
      pipe.upscale(picture(), { ...o, onProgress: tag('a') }),
      pipe.upscale(picture(), { ...o, signal: ac.signal, onProgress: tag('cancelled') }),
      pipe.upscale(picture(), { ...o, seed: 22, onProgress: tag('b') }),
    ];
    ac.abort();
    const [a, cancelledRun, b] = await Promise.allSettled(runs);
    expect(cancelledRun!.status).toBe('rejected');
    expect((cancelledRun as PromiseRejectedResult).reason).toBeInstanceOf(AbortError);
    expect(a!.status).toBe('fulfilled');
    expect(b!.status).toBe('fulfilled');
    // Queued, not interleaved: every event of the first run comes before any of the second; the cancelled one never ran.
    const owners = events.map((e) => e.split(':')[0]);
    expect(owners.lastIndexOf('a')).toBeLessThan(owners.indexOf('b'));
    expect(owners).not.toContain('cancelled');
    const ra = (a as PromiseFulfilledResult<Awaited<ReturnType<FMBoostPipeline['upscale']>>>).value;
    expect(Buffer.from(ra.image.data).equals(Buffer.from(alone.image.data))).toBe(true);
  });
});

describe('no leaks', () => {
  const ITERATIONS = 50;

  it(`${ITERATIONS} mixed iterations (generations, boosts, decodes, errors, cancellations): live bytes back to the weights, buffer count flat`, { timeout: SLOW }, async () => {
    const r = rng(0x1ea4);
    const weights = rt.memory().liveBytes;
    const kinds = ['t2l+boost+decode', 'decode', 'boost', 'bad-input', 'numerical', 'oom', 'abort-before', 'abort-t2l', 'abort-boost', 'abort-decode', 'upscale', 'abort-generate'] as const;
    const seen = new Map<string, number>();
    let warm = 0;
    let pooledMax = 0;
    const z = latent();
    let zLive = rt.memory().liveBytes;
    for (let i = 0; i < ITERATIONS; i++) {
      // Warm-up: two rounds of every kind (each variant once), then a seeded mix.
      const K = kinds.length;
      const kind = i < 2 * K ? kinds[i % K]! : kinds[Math.floor(r() * K)]!;
      const variant = i < 2 * K ? Math.floor(i / K) === 1 : r() < 0.5;
      seen.set(kind, (seen.get(kind) ?? 0) + 1);
      const ac = new AbortController();
      const signal = ac.signal;
      const bm = { vae: m.vae, cfm };
      try {
        switch (kind) {
          case 't2l+boost+decode': {
            const low = await t2l({ seed: i });
            const up = await boost(bm, low, { factor: 2, numSteps: 2, seed: i }).finally(() => low.dispose());
            await decodeToImage(m.vae, up).finally(() => up.dispose());
            break;
          }
          case 'decode':
            (await m.vae.decode(z, { tiling: variant ? 'off' : { tileSize: 4 } })).dispose();
            break;
          case 'boost':
            (await boost(bm, z, { factor: 2, numSteps: 2, seed: i, mode: variant ? 'psu' : 'lsu' })).dispose();
            break;
          case 'bad-input':
            await expect(boost(bm, z, { factor: 2, numSteps: 0 })).rejects.toThrow(ArgumentError);
            await expect(pipe.generate({ prompt: 'x', steps: 5000 })).rejects.toThrow(ArgumentError);
            break;
          case 'numerical':
            await expect(cascade([{ cfm: badCfm, factor: 2, numSteps: 2 }, { cfm, factor: 2, numSteps: 2 }], z, { vae: m.vae, seed: i })).rejects.toThrow(NumericalError);
            break;
          case 'oom': {
            const budget = rt.allocator.budgetBytes;
            rt.allocator.trim();
            rt.allocator.budgetBytes = rt.memory().liveBytes + 32 * 1024 + Math.floor(r() * 256 * 1024);
            try {
              await expect(boost(bm, z, { factor: 2, numSteps: 2, seed: i })).rejects.toThrow(OutOfMemoryError);
            } finally {
              rt.allocator.budgetBytes = budget;
            }
            break;
          }
          case 'abort-before':
            ac.abort();
            await expect(boost(bm, z, { factor: 2, numSteps: 2, signal })).rejects.toThrow(AbortError);
            break;
          case 'abort-t2l':
            await expect(t2l({ steps: 2, signal, onProgress: () => ac.abort() })).rejects.toThrow(AbortError);
            break;
          case 'abort-boost': {
            const at = 1 + Math.floor(r() * 2); // of 3 evaluations: an abort after the last one has nothing left to stop
            await expect(boost(bm, z, { factor: 2, numSteps: 4, seed: i, signal, onProgress: (p) => p.stage === 'refine' && p.step === at && ac.abort() })).rejects.toThrow(AbortError);
            break;
          }
          case 'abort-decode': {
            const run = decodeToImage(m.vae, z, { signal, tiling: { tileSize: 2 } });
            setTimeout(() => ac.abort(), Math.floor(r() * 5));
            await run.then((d) => expect(d.width).toBe(PX), (e) => expect(e).toBeInstanceOf(AbortError));
            break;
          }
          case 'upscale': {
            const out = await pipe.upscale(picture(), { factor: 2, seed: i, cfm: { steps: 2 } });
            expect(out.image.width).toBe(2 * PX);
            break;
          }
          case 'abort-generate': {
            const stop = variant ? 'denoise' : 'decode-lowres';
            await expect(pipe.generate({ prompt: 'x', size: 512, steps: 2, seed: i, signal, onProgress: (s) => s === stop && ac.abort() })).rejects.toThrow(AbortError);
            break;
          }
        }
      } catch (e) {
        throw new Error(`iteration ${i} (${kind}): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      // Free buffers kept for reuse are not leaks: empty the pool, then every buffer left is held by a tensor.
      pooledMax = Math.max(pooledMax, rt.memory().bufferCount);
      rt.allocator.trim();
      const mem = rt.memory();
      // Warm-up (two rounds: every kind and variant once) may add the constant tables kept per runtime; after it,
      // live bytes must come back exactly, and the number of buffers must not grow.
      if (i === 2 * kinds.length - 1) {
        expect(mem.liveBytes - zLive, 'constant tables made during warm-up').toBeLessThan(16 * 1024);
        zLive = mem.liveBytes;
        warm = mem.bufferCount;
      }
      if (i >= 2 * kinds.length) {
        expect(mem.liveBytes, `iteration ${i} (${kind})`).toBe(zLive);
        expect(mem.bufferCount, `iteration ${i} (${kind})`).toBe(warm);
      }
    }
    z.dispose();
    expect(rt.memory().liveBytes - weights).toBeLessThan(16 * 1024);
    // The pool stays bounded (each run needs a few hundred buffers at most, weights included ≈ 1,300).
    expect(pooledMax).toBeLessThan(warm + 1000);
    expect([...seen.keys()].sort()).toEqual([...kinds].sort());
  });
});
