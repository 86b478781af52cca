/**
 * The boost half of pipeline_{ddim,euler,lcm} from the stored float32 lowres_latent (PSU images and latent, noised
 * source, every ODE point, final latent and image), qSample, LSU, 8-bit output, upscaleImage, cascade, the hires-fix
 * comparison path, and typed errors for bad input.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { CfmUNet } from '../../src/models/cfm-unet.js';
import type { UNet2DConditionModel } from '../../src/models/unet-2d-condition/model.js';
import { AutoencoderKL } from '../../src/models/vae/model.js';
import { boost, cascade, decodeToImage, qSample, quantize, toRgba, upscaleImage, type BoostProgress } from '../../src/pipelines/boost.js';
import { forwardDiffusionAlphaBar } from '../../src/pipelines/flow-schedule.js';
import { hiresFix } from '../../src/pipelines/hires-fix.js';
import { NOISE_STREAM, randn } from '../../src/pipelines/random.js';
import { alphasCumprod, createScheduler, SD15_SCHEDULER_CONFIG } from '../../src/pipelines/schedulers/index.js';
import { AbortError, ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { compare, expectClose } from '../helpers/close.js';
import { nodeGPU } from '../../src/node/gpu.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import { fx, loadFixture, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { boostHalf, loadTinyCfm } from '../shared/fixtures-cfm.js';
import { loadTinyUNet } from '../shared/fixtures-unet.js';
import { fixtureSource, TINY_VAE_CONFIG } from '../shared/fixtures-vae.js';

// dawn.node (webgpu 0.6.2) crashes once the GPU object that made a device is garbage-collected, and
// testRuntime() keeps only the device: this file holds the GPU for as long as it runs.
let gpu: GPU | undefined;
let shared: Promise<Runtime> | undefined;
function testRuntime(): Promise<Runtime> {
  shared ??= nodeGPU().then((g) => createRuntime({ gpu: (gpu = g), log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }));
  return shared;
}


let rt: Runtime;
let vae: AutoencoderKL;
let cfm: CfmUNet;
beforeAll(async () => {
  rt = await testRuntime();
  vae = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await fixtureSource(nodeLoader, 'vae.safetensors') });
  cfm = await loadTinyCfm(rt, nodeLoader);
  return () => {
    cfm.dispose();
    vae.dispose();
  };
});

const lowres = (kind = 'ddim') => {
  const t = fx(`pipeline_${kind}.io.safetensors`, 'lowres_latent');
  return rt.upload(t.data, t.shape);
};

describe.each(['ddim', 'euler', 'lcm'])('boost on pipeline_%s (from the stored lowres_latent)', (kind) => {
  const file = `pipeline_${kind}.io.safetensors`;
  const rowTol = (out: string) => tolerance(`pipeline_${kind}`, out);
  it('PSU images and latent, noised source, every ODE point, final latent and image', async () => {
    const io = loadFixture(file);
    const got = await boostHalf(rt, vae, cfm, io);
    // No row of their own: the PSU images are decoder / bilinear outputs (vae.decoded), the noised source is
    // 0.81·psu.latent + 0.59·fixed noise (psu.latent's row), the ODE points are final_latent's predecessors.
    expectClose(got.get('psu.lowres_image')!, io.get('psu.lowres_image')!.data, tolerance('vae', 'decoded'), 'psu.lowres_image');
    expectClose(got.get('psu.upsampled_image')!, io.get('psu.upsampled_image')!.data, tolerance('vae', 'decoded'), 'psu.upsampled_image');
    expectClose(got.get('psu.latent')!, io.get('psu.latent')!.data, rowTol('psu.latent (from the float32 lowres_latent)'), 'psu.latent');
    expectClose(got.get('noised_source')!, io.get('noised_source')!.data, rowTol('psu.latent (from the float32 lowres_latent)'), 'noised_source');
    const traj = io.get('ode.traj')!.data;
    const n = io.get('ode.t_grid')!.shape[0]!;
    const per = traj.length / n;
    const latTol = rowTol('final_latent (from the float32 lowres_latent)');
    for (let i = 0; i < n; i++) expectClose(got.get(`ode.traj.${i}`)!, traj.subarray(i * per, (i + 1) * per), latTol, `ode.traj[${i}]`);
    expectClose(got.get('final_latent')!, io.get('final_latent')!.data, latTol, 'final_latent');
    expectClose(got.get('final_image')!, io.get('final_image')!.data, rowTol('final_image (from the float32 lowres_latent)'), 'final_image');
  });
});

describe('qSample', () => {
  it('√ᾱ·x + √(1−ᾱ)·ε with ᾱ₄₀₀ from the float32 table; given, uploaded and seeded noise', async () => {
    const io = loadFixture('pipeline_ddim.io.safetensors');
    expect(forwardDiffusionAlphaBar(400)).toBe(io.get('q_sample.alpha_bar')!.data[0]);
    const c = io.get('psu.latent')!;
    const eps = io.get('q_sample.noise')!;
    const want = io.get('noised_source')!.data;
    const tol = tolerance('pipeline_ddim', 'psu.latent (from the float32 lowres_latent)');
    const a = await rt.scopeAsync(async () => rt.read(qSample(rt, rt.upload(c.data, c.shape), 400, rt.upload(eps.data, eps.shape))));
    expectClose(a, want, tol, 'noise tensor');
    const b = await rt.scopeAsync(async () => rt.read(qSample(rt, rt.upload(c.data, c.shape), 400, eps.data as Float32Array)));
    expect(b).toEqual(a);
    const s = await rt.scopeAsync(async () => rt.read(qSample(rt, rt.upload(c.data, c.shape), 400, undefined, 7)));
    const z = randn(7, c.data.length, NOISE_STREAM.qSample);
    expectClose(s, Float32Array.from(c.data, (v, i) => 0.80864328 * v + 0.58829928 * z[i]!), { atol: 1e-6, rtol: 1e-6 }, 'seeded');
    const zero = await rt.scopeAsync(async () => rt.read(qSample(rt, rt.upload(c.data, c.shape), 0, eps.data as Float32Array)));
    expect(zero).toEqual(c.data); // ᾱ₀ = 1
  });

  it('refuses bad steps and noise', () => {
    const x = rt.upload(new Float32Array(8), [1, 2, 2, 2]);
    expect(() => qSample(rt, x, 1000)).toThrow(ArgumentError);
    expect(() => qSample(rt, x, -1)).toThrow(ArgumentError);
    expect(() => qSample(rt, x, 4.5)).toThrow(ArgumentError);
    expect(() => qSample(rt, x, 400, new Float32Array(7))).toThrow(ShapeError);
    expect(() => qSample(rt, x, 400, rt.upload(new Float32Array(8), [1, 2, 4, 1]))).toThrow(ShapeError);
    x.dispose();
  });
});

/** PyTorch bilinear (align_corners=False) ×s on [N, C, h, w] in float64. */
function bilinearRef(x: ArrayLike<number>, [N, C, h, w]: number[], s: number): Float64Array {
  const H = h * s;
  const W = w * s;
  const out = new Float64Array(N! * C! * H * W);
  const src = (d: number, I: number) => {
    const v = Math.max(0, (d + 0.5) / s - 0.5);
    const i0 = Math.floor(v);
    return [i0, Math.min(i0 + 1, I - 1), v - i0] as const;
  };
  for (let p = 0; p < N! * C!; p++)
    for (let y = 0; y < H; y++)
      for (let xx = 0; xx < W; xx++) {
        const [y0, y1, ly] = src(y, h!);
        const [x0, x1, lx] = src(xx, w!);
        const g = (yy: number, xq: number) => x[(p * h! + yy) * w! + xq]!;
        out[(p * H + y) * W + xx] = (1 - ly) * ((1 - lx) * g(y0, x0) + lx * g(y0, x1)) + ly * ((1 - lx) * g(y1, x0) + lx * g(y1, x1));
      }
  return out;
}

describe('boost options', () => {
  it('LSU: the context is the bilinear latent; progress covers the ODE; same seed, same result', async () => {
    const l = fx('pipeline_ddim.io.safetensors', 'lowres_latent');
    const debug = new Map<string, Tensor>();
    const seen: BoostProgress[] = [];
    const run = (seed: number, d?: Map<string, Tensor>) =>
      rt.scopeAsync(async () => rt.read(await boost({ vae, cfm }, lowres(), { mode: 'lsu', factor: 2, numSteps: 3, solver: 'midpoint', seed, debug: d, onProgress: (p) => seen.push(p) })));
    const a = await run(5, debug);
    try {
      expectClose(await rt.read(debug.get('psu.latent')!), bilinearRef(l.data, l.shape, 2), { atol: 1e-6, rtol: 1e-5 }, 'LSU context');
      expect(debug.has('psu.lowres_image')).toBe(false);
    } finally {
      for (const v of debug.values()) v.dispose();
    }
    expect(seen.map((p) => `${p.stage}:${p.step}/${p.total}`)).toEqual(['refine:1/4', 'refine:2/4', 'refine:3/4', 'refine:4/4']);
    expect(await run(5)).toEqual(a);
    expect(compare(await run(6), a, { atol: 1e-3, rtol: 0 }).bad).toBeGreaterThan(0);
  });

  it('factor 4 gives [1, 4, 32, 32]; PSU reports its two VAE passes', async () => {
    const seen: string[] = [];
    const out = await boost({ vae, cfm }, lowres(), { factor: 4, numSteps: 2, seed: 1, onProgress: (p) => seen.push(`${p.stage}:${p.step}`) });
    expect(out.shape).toEqual([1, 4, 32, 32]);
    expect(seen).toEqual(['upsample:0', 'upsample:1', 'upsample:2', 'refine:1']);
    out.dispose();
  });

  it('typed errors for bad inputs, before any GPU work', async () => {
    const l = lowres();
    const before = rt.dispatches;
    const m = { vae, cfm };
    await expect(boost(m, rt.upload(new Float32Array(3 * 64), [1, 3, 8, 8]), { factor: 2, numSteps: 5 })).rejects.toThrow(ShapeError);
    await expect(boost(m, rt.upload(new Float32Array(512), [4, 8, 8, 2]), { factor: 2, numSteps: 5 })).rejects.toThrow(ShapeError);
    await expect(boost(m, l, { factor: 3 as 2, numSteps: 5 })).rejects.toThrow(ArgumentError);
    await expect(boost(m, l, { factor: 2, numSteps: 1 })).rejects.toThrow(ArgumentError);
    await expect(boost(m, l, { factor: 2, numSteps: 5, solver: 'dopri5' as 'euler' })).rejects.toThrow(ArgumentError);
    await expect(boost(m, l, { factor: 2, numSteps: 5, mode: 'nearest' as 'psu' })).rejects.toThrow(ArgumentError);
    await expect(boost(m, l, { factor: 2, numSteps: 5, noisingStep: 1000 })).rejects.toThrow(ArgumentError);
    await expect(boost(m, l, { factor: 2, numSteps: 5, noise: new Float32Array(10) })).rejects.toThrow(ShapeError);
    await expect(boost(m, l, { factor: 2, numSteps: 5, seed: -1 })).rejects.toThrow(ArgumentError);
    await expect(boost(m, l, { factor: 2, numSteps: 5, lowresImage: rt.upload(new Float32Array(3 * 64), [1, 3, 8, 8]) })).rejects.toThrow(ShapeError);
    await expect(boost({ vae } as never, l, { factor: 2, numSteps: 5 })).rejects.toThrow(ArgumentError);
    expect(rt.dispatches).toBe(before);
    l.dispose();
  });

  it('aborts with an AbortError', async () => {
    const ctl = new AbortController();
    ctl.abort();
    await expect(boost({ vae, cfm }, lowres(), { factor: 2, numSteps: 5, seed: 1, signal: ctl.signal })).rejects.toThrow(AbortError);
    const ctl2 = new AbortController();
    await expect(
      boost({ vae, cfm }, lowres(), { factor: 2, numSteps: 9, seed: 1, signal: ctl2.signal, onProgress: (p) => p.stage === 'refine' && p.step === 2 && ctl2.abort() }),
    ).rejects.toThrow(AbortError);
  });
});

describe('8-bit output', () => {
  it('round(clamp(x/2 + 0.5, 0, 1)·255), ties to even, NaN → 0', () => {
    expect([-1, -2, 1, 3, 0, NaN].map(quantize)).toEqual([0, 0, 255, 255, 128, 0]);
    // x = 0 is the tie 127.5, which numpy rounds to the even 128
    expect(quantize(2 * (1 / 255) - 1)).toBe(1);
    const img = toRgba(Float32Array.from([-1, 0, 1, 0.5, -0.5, 1, 1, 1, 1, -1, -1, -1]), [1, 3, 2, 2]);
    expect([...img.rgba[0]!]).toEqual([0, 64, 255, 255, 128, 255, 0, 255, 255, 255, 0, 255, 191, 255, 0, 255]);
    expect(() => toRgba(new Float32Array(8), [1, 2, 2, 2])).toThrow(ShapeError);
  });

  it('decodeToImage: the float image is vae.decode(latent / sf); bytes follow it', async () => {
    const io = loadFixture('pipeline_ddim.io.safetensors');
    const fl = io.get('final_latent')!;
    const img = await rt.scopeAsync(async () => decodeToImage(vae, rt.upload(fl.data, fl.shape)));
    expect([img.width, img.height, img.rgba.length]).toEqual([32, 32, 1]);
    expectClose(img.float, io.get('final_image')!.data, tolerance('pipeline_ddim', 'final_image (from the float32 lowres_latent)'), 'final_image');
    const want = io.get('final_image')!.data;
    let off = 0;
    for (let p = 0; p < 32 * 32; p++) for (let c = 0; c < 3; c++) off = Math.max(off, Math.abs(img.rgba[0]![p * 4 + c]! - quantize(want[c * 1024 + p]!)));
    expect(off).toBeLessThanOrEqual(1);
  });
});

describe('upscaleImage', () => {
  it('RGBA in, RGBA ×2 out; an RGBA picture and its float tensor give the same result', async () => {
    const W = 16;
    const data = new Uint8ClampedArray(W * W * 4);
    for (let i = 0; i < W * W; i++) data.set([(i * 7) % 256, (i * 13) % 256, (i * 29) % 256, 255], i * 4);
    const a = await upscaleImage({ vae, cfm }, { width: W, height: W, data }, { factor: 2, numSteps: 3, seed: 3 });
    expect([a.image!.width, a.image!.height]).toEqual([32, 32]);
    expect(a.latent.shape).toEqual([1, 4, 16, 16]);
    const f = new Float32Array(3 * W * W);
    for (let p = 0; p < W * W; p++) for (let c = 0; c < 3; c++) f[c * W * W + p] = (data[p * 4 + c]! / 255) * 2 - 1;
    const t = rt.upload(f, [1, 3, W, W]);
    const b = await upscaleImage({ vae, cfm }, t, { factor: 2, numSteps: 3, seed: 3, decode: false });
    expect(b.image).toBeUndefined();
    expect(await rt.read(b.latent)).toEqual(await rt.read(a.latent));
    expect(t.isDisposed).toBe(false);
    for (const x of [a.latent, b.latent, t]) x.dispose();
  });

  it('refuses sizes the VAE cannot encode and malformed pictures', async () => {
    await expect(upscaleImage({ vae, cfm }, { width: 15, height: 16, data: new Uint8ClampedArray(15 * 16 * 4) }, { factor: 2, numSteps: 3 })).rejects.toThrow(ShapeError);
    await expect(upscaleImage({ vae, cfm }, { width: 16, height: 16, data: new Uint8ClampedArray(10) }, { factor: 2, numSteps: 3 })).rejects.toThrow(ShapeError);
    await expect(upscaleImage({ vae, cfm }, { width: 16 } as never, { factor: 2, numSteps: 3 })).rejects.toThrow(ArgumentError);
  });
});

describe('cascade', () => {
  it('two 2× stages: stage 0 is boost with the same seed, the result is [1, 4, 32, 32]', async () => {
    const debug = new Map<string, Tensor>();
    const stages = [{ cfm, factor: 2 as const, numSteps: 3 }, { cfm, factor: 2 as const, numSteps: 2, mode: 'lsu' as const }];
    const out = await cascade(stages, lowres(), { vae, seed: 11, debug });
    try {
      expect(out.shape).toEqual([1, 4, 32, 32]);
      const first = await boost({ vae, cfm }, lowres(), { factor: 2, numSteps: 3, seed: 11 });
      expect(await rt.read(debug.get('stage0.ode.traj.2')!)).toEqual(await rt.read(first));
      // Stage 2 starts from the noised PSU latent of stage 1's output, at the doubled size.
      expect((await rt.read(debug.get('stage1.ode.traj.0')!)).length).toBe(4 * 32 * 32);
      expect(await rt.read(debug.get('stage1.ode.traj.1')!)).toEqual(await rt.read(out));
      first.dispose();
    } finally {
      out.dispose();
      for (const v of debug.values()) v.dispose();
    }
  });

  it('validates every stage before running any', async () => {
    const before = rt.dispatches;
    await expect(cascade([], lowres(), { vae })).rejects.toThrow(ArgumentError);
    await expect(cascade([{ cfm, factor: 2 }, { cfm, factor: 3 as 2 }], lowres(), { vae })).rejects.toThrow(/stage 1/);
    await expect(cascade([{ cfm, factor: 2, numSteps: 1 }], lowres(), { vae })).rejects.toThrow(ArgumentError);
    await expect(cascade(Array(5).fill({ cfm, factor: 2 }), lowres(), { vae })).rejects.toThrow(ArgumentError);
    expect(rt.dispatches).toBe(before);
  });
});

describe('hiresFix (training-free comparison)', () => {
  let unet: UNet2DConditionModel;
  let embeds: Tensor;
  let negative: Tensor;
  beforeAll(async () => {
    unet = await loadTinyUNet(rt, nodeLoader);
    const io = loadFixture('pipeline_ddim.io.safetensors');
    embeds = rt.keep(rt.upload(io.get('prompt_embeds')!.data, io.get('prompt_embeds')!.shape));
    negative = rt.keep(rt.upload(io.get('negative_prompt_embeds')!.data, io.get('negative_prompt_embeds')!.shape));
    return () => {
      unet.dispose();
      embeds.dispose();
      negative.dispose();
    };
  });

  it('noises the upsampled latent to the timestep strength selects, runs ⌊steps·strength⌋ steps', async () => {
    const debug = new Map<string, Tensor>();
    const seen: BoostProgress[] = [];
    const noise = randn(9, 4 * 16 * 16, 99);
    const out = await hiresFix({ vae, unet }, lowres(), {
      factor: 2, strength: 0.5, steps: 6, scheduler: 'ddim', guidanceScale: 7.5, promptEmbeds: embeds, negativePromptEmbeds: negative, noise, debug,
      onProgress: (p) => seen.push(p),
    });
    try {
      expect(out.shape).toEqual([1, 4, 16, 16]);
      expect(seen.filter((p) => p.stage === 'refine').map((p) => p.step)).toEqual([1, 2, 3]);
      const t0 = createScheduler('ddim', SD15_SCHEDULER_CONFIG, 6).timesteps[3]!;
      const ab = alphasCumprod(SD15_SCHEDULER_CONFIG)[t0]!;
      const c = await rt.read(debug.get('psu.latent')!);
      expectClose(await rt.read(debug.get('noised_source')!), Float32Array.from(c, (v, i) => Math.sqrt(ab) * v + Math.sqrt(1 - ab) * noise[i]!), { atol: 1e-6, rtol: 1e-5 }, 'noised source');
      const o = await rt.read(out);
      expect(o.every(Number.isFinite)).toBe(true);
    } finally {
      out.dispose();
      for (const v of debug.values()) v.dispose();
    }
  });

  it('CFG with negative = prompt equals the conditional pass alone (ε_u + g(ε_c − ε_u) = ε_c); Euler and LCM run', async () => {
    const common = { factor: 2 as const, strength: 0.7, steps: 3, scheduler: 'euler' as const, promptEmbeds: embeds, seed: 4, mode: 'lsu' as const };
    const a = await hiresFix({ vae, unet }, lowres(), { ...common, guidanceScale: 1 });
    const b = await hiresFix({ vae, unet }, lowres(), { ...common, guidanceScale: 5, negativePromptEmbeds: embeds });
    expectClose(await rt.read(b), await rt.read(a), { atol: 1e-5, rtol: 1e-4 }, 'CFG wiring');
    const c = await hiresFix({ vae, unet }, lowres(), { ...common, guidanceScale: 5, negativePromptEmbeds: negative });
    expect(compare(await rt.read(c), await rt.read(a), { atol: 1e-4, rtol: 0 }).bad).toBeGreaterThan(0);
    const lcm = await hiresFix({ vae, unet }, lowres(), { ...common, scheduler: 'lcm', steps: 4, strength: 1, guidanceScale: 1 });
    expect((await rt.read(lcm)).every(Number.isFinite)).toBe(true);
    for (const x of [a, b, c, lcm]) x.dispose();
  });

  it('typed errors and abort', async () => {
    const m = { vae, unet };
    const o = { factor: 2 as const, strength: 0.5, steps: 4, scheduler: 'ddim' as const, guidanceScale: 1, promptEmbeds: embeds };
    await expect(hiresFix(m, lowres(), { ...o, strength: 0 })).rejects.toThrow(ArgumentError);
    await expect(hiresFix(m, lowres(), { ...o, strength: 1.5 })).rejects.toThrow(ArgumentError);
    await expect(hiresFix(m, lowres(), { ...o, strength: 0.1 })).rejects.toThrow(/no step/);
    await expect(hiresFix(m, lowres(), { ...o, guidanceScale: 7.5 })).rejects.toThrow(/negativePromptEmbeds/);
    await expect(hiresFix(m, lowres(), { ...o, factor: 3 as 2 })).rejects.toThrow(ArgumentError);
    await expect(hiresFix(m, lowres(), { ...o, promptEmbeds: rt.upload(new Float32Array(32), [1, 32]) })).rejects.toThrow(ShapeError);
    await expect(hiresFix(m, lowres(), { ...o, scheduler: 'pndm' as 'ddim' })).rejects.toThrow(ArgumentError);
    const ctl = new AbortController();
    await expect(hiresFix(m, lowres(), { ...o, signal: ctl.signal, onProgress: (p) => p.stage === 'refine' && ctl.abort() })).rejects.toThrow(AbortError);
  });
});
