import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FMBoostPipeline } from '../../src/pipelines/fmboost-pipeline.js';
import { bytesModelFiles, loadModelSet } from '../../src/pipelines/model-source.js';
import { bundledModelDir, folderModelFiles, loadModelFromPath } from '../../src/node/model-folder.js';
import { ArgumentError, ConfigError, ShapeError, AbortError } from '../../src/runtime/errors.js';
import { testRuntime } from '../helpers/device.js';
import type { Runtime } from '../../src/runtime/runtime.js';

/** SwiftShader compiles every kernel on first use; a loaded machine needs minutes. */
const SLOW = 1_800_000;

let rt: Runtime;
let pipe: FMBoostPipeline;

beforeAll(async () => {
  rt = await testRuntime();
  pipe = FMBoostPipeline.fromModels(rt, await loadModelFromPath(rt, undefined));
}, SLOW);
afterAll(() => pipe?.dispose());

describe('FMBoostPipeline on the bundled tiny model', () => {
  it('loads the hub layout: configs, tokenizer fallback, CFM stage from cfm/', () => {
    expect(pipe.models.cfmStages.map((s) => s.factor)).toEqual([2]);
    expect(pipe.models.unet!.config.blockOutChannels).toEqual([32, 64]);
    expect(pipe.models.vae.downsampleFactor).toBe(8);
    // LCM-distilled like LCM_Dreamshaper_v7: the LCM scheduler and 4 steps by default.
    expect(pipe.isLcm).toBe(true);
    expect(pipe.sizes).toEqual([512, 1024, 2048]);
    expect(pipe.tokenizer!.encode('a photo of a cat').ids[1]).toBe(320); // 'a</w>' in CLIP's vocabulary
  });

  it('generates 512² and a CFM-boosted 1024², deterministically per seed', { timeout: SLOW }, async () => {
    const stages: string[] = [];
    const a = await pipe.generate({ prompt: 'a photo of a cat', size: 1024, steps: 2, seed: 7, cfm: { steps: 3 }, onProgress: (s) => stages.push(s) });
    expect([a.image.width, a.image.height, a.image.data.length]).toEqual([1024, 1024, 1024 * 1024 * 4]);
    expect([a.lowres.width, a.lowres.height]).toEqual([512, 512]);
    expect(a.latent.shape).toEqual([1, 4, 128, 128]);
    expect([...new Set(stages)]).toEqual(['text', 'denoise', 'decode-lowres', 'upsample', 'refine', 'decode']);
    // Not a constant picture: random weights still give structure.
    const px = new Set<number>();
    for (let i = 0; i < a.image.data.length; i += 4 * 997) px.add(a.image.data[i]!);
    expect(px.size).toBeGreaterThan(8);
    const b = await pipe.generate({ prompt: 'a photo of a cat', size: 512, steps: 2, seed: 7 });
    expect([b.image.width, b.image.height]).toEqual([512, 512]);
    expect(Buffer.from(b.image.data).equals(Buffer.from(a.lowres.data))).toBe(true);
  });

  it('generates 2048²: the ×2 stage twice (cascade to a 256² latent), then the tiled decode', { timeout: SLOW }, async () => {
    // The fewest steps the options allow: 1 LCM step, 2 ODE grid points (1 CFM evaluation) per stage. Every stage
    // still runs for real: PSU at 512² → 1024² and 1024² → 2048² (VAE decode, bilinear, encode), both CFM stages,
    // and the 2048² decode.
    const events: [string, number, number][] = [];
    const r = await pipe.generate({ prompt: 'a photo of a cat', size: 2048, steps: 1, seed: 9, cfm: { steps: 2 }, onProgress: (s, i, n) => events.push([s, i, n]) });
    expect([r.image.width, r.image.height, r.image.data.length]).toEqual([2048, 2048, 2048 * 2048 * 4]);
    expect([r.lowres.width, r.lowres.height]).toEqual([512, 512]);
    expect(r.latent.shape).toEqual([1, 4, 256, 256]);
    expect(r.latent.data.every(Number.isFinite)).toBe(true);
    // Stage order with both cascade stages, each one CFM evaluation.
    const runs = events.map(([s]) => s).filter((s, i, a) => i === 0 || a[i - 1] !== s);
    expect(runs).toEqual(['text', 'denoise', 'decode-lowres', 'upsample', 'refine', 'upsample', 'refine', 'decode']);
    expect(events.filter(([s, i]) => s === 'refine' && i > 0)).toEqual([['refine', 1, 1], ['refine', 1, 1]]);
    expect(Object.keys(r.timings).sort()).toEqual(['decode', 'decode-lowres', 'denoise', 'refine']);
    // Not a constant picture, in every quadrant (each is decoded from its own tiles).
    for (const [x0, y0] of [[0, 0], [1024, 0], [0, 1024], [1024, 1024]]) {
      const px = new Set<number>();
      for (let y = y0; y < y0 + 1024; y += 61) for (let x = x0; x < x0 + 1024; x += 59) px.add(r.image.data[(y * 2048 + x) * 4]!);
      expect(px.size, `quadrant ${x0},${y0}`).toBeGreaterThan(8);
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of r.latent.data) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect(hi - lo).toBeGreaterThan(0.1);
  });

  it('validates every option before GPU work', async () => {
    await expect(pipe.generate({ prompt: 'x', size: 768 as 512 })).rejects.toThrow(ArgumentError);
    await expect(pipe.generate({ prompt: 'x', steps: 0 })).rejects.toThrow(/steps/);
    await expect(pipe.generate({ prompt: 'x', scheduler: 'pndm' as 'ddim' })).rejects.toThrow(/scheduler/);
    await expect(pipe.generate({ prompt: 'x', cfm: { solver: 'heun' as 'euler' } })).rejects.toThrow(/solver/);
    await expect(pipe.generate({ prompt: 'x', seed: -1 })).rejects.toThrow(/seed/);
    await expect(pipe.generate({ prompt: 42 as unknown as string })).rejects.toThrow(/prompt/);
    await expect(pipe.generate({ prompt: 'x', hiresFix: { strength: 2 } })).rejects.toThrow(/strength/);
    await expect(pipe.upscale({ width: 12, height: 16, data: new Uint8ClampedArray(12 * 16 * 4) }, { factor: 2 })).rejects.toThrow(ShapeError);
    await expect(pipe.upscale({ width: 16, height: 16, data: new Uint8ClampedArray(16 * 16 * 4) }, { factor: 3 as 2 })).rejects.toThrow(/factor/);
  });

  it('stops a run when its signal aborts', { timeout: SLOW }, async () => {
    const ac = new AbortController();
    const run = pipe.generate({ prompt: 'x', size: 1024, steps: 3, seed: 1, signal: ac.signal, onProgress: (s, i) => s === 'denoise' && i === 1 && ac.abort() });
    await expect(run).rejects.toThrow(AbortError);
    // The pipeline is usable afterwards.
    const r = await pipe.generate({ prompt: 'x', size: 512, steps: 1, seed: 1 });
    expect(r.image.width).toBe(512);
  });

  it('upscales a picture ×2', { timeout: SLOW }, async () => {
    const W = 64;
    const H = 48;
    const data = new Uint8ClampedArray(W * H * 4).map((_, i) => (i * 37) & 255);
    const r = await pipe.upscale({ width: W, height: H, data }, { factor: 2, seed: 3, cfm: { steps: 2 } });
    expect([r.image.width, r.image.height]).toEqual([128, 96]);
  });

  it('runs the hires-fix baseline instead of the CFM stage', { timeout: SLOW }, async () => {
    const r = await pipe.generate({ prompt: 'x', size: 1024, steps: 2, seed: 5, hiresFix: { strength: 0.5 } });
    expect(r.image.width).toBe(1024);
  });
});

describe('loadModelSet errors', () => {
  it('names a missing component of a hub folder', async () => {
    const dir = bundledModelDir();
    const files: Record<string, Uint8Array> = {};
    for (const p of ['model_index.json', 'text_encoder/config.json', 'unet/config.json']) files[p] = readFileSync(join(dir, p));
    await expect(loadModelSet(rt, bytesModelFiles(files), { cfm: false })).rejects.toThrow(ConfigError);
    await expect(loadModelSet(rt, bytesModelFiles(files), { cfm: false })).rejects.toThrow(/vae\/config\.json/);
  });

  it('refuses a file that is not an SD single-file checkpoint', async () => {
    const files = await folderModelFiles(bundledModelDir());
    const unet = await files.open('unet/diffusion_pytorch_model.safetensors');
    await expect(loadModelSet(rt, unet, { cfm: false })).rejects.toThrow(/single-file/);
  });
});
