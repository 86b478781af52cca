/**
 * Tiled VAE: the tile-copy kernel against a plain loop; exact tiled decode/encode = untiled (≤ 1e-4, ≥ 9 tiles,
 * non-square, sizes not multiples of the tile, batch 2); streaming decode with exact statistics = untiled;
 * streaming with estimated statistics is chosen automatically under a small budget, reported as inexact,
 * stays within the budget and the buffer cap; streaming encode (whole-image statistics from repeated passes)
 * = untiled under a budget that forces it, one and two streamed stages; allocation-only runs
 * (rt.executeDispatches = false) allocate exactly what full runs do; abort.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { AutoencoderKLConfig } from '../../src/models/vae/config.js';
import { AutoencoderKL, type EncodeStagePlan, type TilingOptions } from '../../src/models/vae/model.js';
import { copyRect, splitLength, type CopyRect } from '../../src/models/vae/tiled.js';
import { AbortError, OutOfMemoryError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { compare, expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { FIXTURES, fx, nodeLoader } from '../helpers/fixtures.js';
import { randn, randu } from '../helpers/random.js';
import { crop, TINY_VAE_CONFIG, vaeChecks, widen } from '../shared/fixtures-vae.js';

const SEAM = { atol: 1e-4, rtol: 0 };

describe('vae-tile-copy kernel', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it.each<[string, CopyRect]>([
    ['rectangle', { rows: 3, cols: 5, sy: 1, sx: 2, dy: 2, dx: 0 }],
    ['nearest ×2 source', { rows: 7, cols: 6, sy: 3, sx: 1, dy: 0, dx: 1, F: 2 }],
    ['channel slice with clamp', { rows: 4, cols: 4, sy: 0, sx: 0, dy: 1, dx: 1, channels: 2, srcC0: 3, dstC0: 1, clamp: [-0.5, 0.25] }],
  ])('%s', async (_, o) => {
    const [N, C, H, W] = [2, 5, 6, 7];
    const [Cd, Hd, Wd] = [6, 9, 8];
    const src = randn(N * C * H * W, 11);
    const init = randn(N * Cd * Hd * Wd, 12);
    const want = Float32Array.from(init);
    const F = o.F ?? 1;
    const nc = o.channels ?? C;
    for (let n = 0; n < N; n++)
      for (let c = 0; c < nc; c++)
        for (let y = 0; y < o.rows; y++)
          for (let x = 0; x < o.cols; x++) {
            let v = src[((n * C + (o.srcC0 ?? 0) + c) * H + Math.floor((o.sy + y) / F)) * W + Math.floor((o.sx + x) / F)]!;
            if (o.clamp) v = Math.min(Math.max(v, o.clamp[0]), o.clamp[1]);
            want[((n * Cd + (o.dstC0 ?? 0) + c) * Hd + o.dy + y) * Wd + o.dx + x] = v;
          }
    const got = await rt.scopeAsync(async () => {
      const s = rt.upload(src, [N, C, H, W]);
      const d = rt.upload(init, [N, Cd, Hd, Wd]);
      copyRect(rt, s, d, o);
      return rt.read(d);
    });
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  it('splits lengths into near-equal tiles of at most T', () => {
    expect(splitLength(12, 5)).toEqual([0, 4, 8, 12]);
    expect(splitLength(20, 7)).toEqual([0, 6, 13, 20]);
    expect(splitLength(10, 5)).toEqual([0, 5, 10]);
    expect(splitLength(3, 5)).toEqual([0, 3]);
    expect(splitLength(64, 63, 8)).toEqual([0, 256, 512]);
  });
});

describe('tiled AutoencoderKL (fixture VAE)', () => {
  let rt: Runtime;
  let vae: AutoencoderKL;
  beforeAll(async () => {
    rt = await testRuntime();
    vae = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await SafetensorsFile.open(bytesSource(readFileSync(FIXTURES + 'vae.safetensors'))) });
  });

  // z [2, 4, 12, 20]: the fixture latent cropped, widened and negated for the second item.
  const latent = (): Float32Array => {
    const one = widen(crop(fx('vae.io.safetensors', 'z').data, 4, 16, 16, 12, 14, 2), 4, 12, 14, 20);
    const two = new Float32Array(2 * one.length);
    two.set(one);
    for (let i = 0; i < one.length; i++) two[one.length + i] = -0.7 * one[i]! + 0.1;
    return two;
  };

  it('the shared tiled check passes (decode and encode, 12 tiles each)', async () => {
    const check = vaeChecks.find((c) => c.name === 'models/vae/tiled-equals-untiled')!;
    const res = await check.run(rt, nodeLoader);
    for (const [i, r] of (Array.isArray(res) ? res : [res]).entries()) {
      const rep = expectClose(r.actual, r.expected, r, `tiled#${i}`);
      console.info(`tiled vs untiled #${i}: max abs diff ${rep.maxAbs.toExponential(2)}`);
    }
  });

  it.each([2, 3, 7])('decode with tile %i (batch 2, 12×20) equals untiled', async (tileSize) => {
    await rt.scopeAsync(async () => {
      const z = rt.upload(latent(), [2, 4, 12, 20]);
      const ref = await rt.read(await vae.decode(z, { tiling: 'off' }));
      const { image, report } = await vae.decodeWithReport(z, { tiling: { mode: 'exact', tileSize } });
      expect(report).toMatchObject({ mode: 'exact', exact: true, tileSize });
      expect(report.tiles).toBe(Math.ceil(12 / tileSize) * Math.ceil(20 / tileSize));
      const rep = expectClose(await rt.read(image), ref, SEAM, `tile ${tileSize}`);
      console.info(`decode tile ${tileSize}: ${report.tiles} tiles, max abs diff ${rep.maxAbs.toExponential(2)}`);
    });
  });

  it.each([2, 3, 5])('encode with tile %i (batch 2, 24×40 image) equals untiled', async (tileSize) => {
    await rt.scopeAsync(async () => {
      const img = rt.upload(randu(2 * 3 * 24 * 40, 7), [2, 3, 24, 40]);
      const ref = await vae.encode(img, { tiling: 'off' });
      const { mean, logvar, report } = await vae.encodeWithReport(img, { tiling: { mode: 'exact', tileSize } });
      expect(report.tiles).toBe(Math.ceil(12 / tileSize) * Math.ceil(20 / tileSize));
      expect(report.tiles).toBeGreaterThanOrEqual(9);
      const a = expectClose(await rt.read(mean), await rt.read(ref.mean), SEAM, 'mean');
      const b = expectClose(await rt.read(logvar), await rt.read(ref.logvar), SEAM, 'logvar');
      console.info(`encode tile ${tileSize}: ${report.tiles} tiles, max abs diff mean ${a.maxAbs.toExponential(2)} logvar ${b.maxAbs.toExponential(2)}`);
    });
  });

  it('streaming decode with exact statistics equals untiled (halo = receptive field)', async () => {
    expect(vae.upPathHalo()).toBe(7); // 4 + 0.5 + 2 + 0.5 latent px
    await rt.scopeAsync(async () => {
      const z = rt.upload(latent(), [2, 4, 12, 20]);
      const ref = await rt.read(await vae.decode(z, { tiling: 'off' }));
      const tiling: TilingOptions = { mode: 'streaming', statistics: 'exact', tileSize: 3, streamTileSize: 5 };
      const { image, report } = await vae.decodeWithReport(z, { tiling });
      expect(report).toMatchObject({ mode: 'streaming', exact: true, halo: 7 });
      expect(report.streamTiles).toBe(3 * 4);
      const rep = expectClose(await rt.read(image), ref, SEAM, 'streaming, exact statistics');
      console.info(`streaming (exact stats): ${report.streamTiles} output tiles of ${JSON.stringify(report)}, max abs diff ${rep.maxAbs.toExponential(2)}`);
    });
  });

  it('streaming decode with statistics from passes equals untiled, in streaming memory', async () => {
    await rt.scopeAsync(async () => {
      const z = rt.upload(latent(), [2, 4, 12, 20]);
      const ref = await rt.read(await vae.decode(z, { tiling: 'off' }));
      const tiling: TilingOptions = { mode: 'streaming', statistics: 'passes', tileSize: 4, streamTileSize: 7 };
      const { image, report } = await vae.decodeWithReport(z, { tiling });
      // 2 levels × 2 resnets × 2 GroupNorms + conv_norm_out, + the pass that writes the image.
      expect(report).toMatchObject({ mode: 'streaming', exact: true, halo: 7, proxyFactor: 1, passes: 10 });
      expect(report.streamTiles).toBe(2 * 3);
      const rep = expectClose(await rt.read(image), ref, SEAM, 'streaming, statistics from passes');
      console.info(`streaming (passes): ${JSON.stringify(report)}, max abs diff ${rep.maxAbs.toExponential(2)}`);
    });
  }, 900_000); // 10 passes over the up path: minutes on SwiftShader under load

  it('auto picks streaming under a small budget, reports it inexact, and stays within budget and cap', async () => {
    const budget = rt.allocator.budgetBytes;
    await rt.scopeAsync(async () => {
      const N = 1;
      const [h, w] = [48, 40];
      // A smooth latent, as real latents are: the proxy's downsampling keeps its statistics (white noise would not).
      const zData = new Float32Array(N * 4 * h * w);
      for (let c = 0; c < 4; c++)
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) zData[(c * h + y) * w + x] = Math.sin(0.3 * y + c) + 0.8 * Math.cos(0.25 * x - 0.5 * c) + 0.3 * Math.sin(0.2 * (x + y));
      const z = rt.upload(zData, [N, 4, h, w]);
      const ref = await rt.read(await vae.decode(z, { tiling: 'off' }));
      const cap = 256 * 1024; // ≥ the attention's K and V (32 channels × 1920 tokens), which are single buffers
      rt.allocator.trim();
      rt.allocator.resetPeak();
      const live = rt.memory().liveBytes;
      const exact = vae.planTiling(rt, 'decode', N, h, w, { mode: 'exact', maxBufferBytes: cap });
      const stream = vae.planTiling(rt, 'decode', N, h, w, { mode: 'streaming', streamTileSize: 16, maxBufferBytes: cap });
      expect(stream.estimatedBytes).toBeLessThan(exact.estimatedBytes);
      // Room for streaming, not for exact tiling.
      rt.allocator.budgetBytes = live + Math.floor((stream.estimatedBytes + exact.estimatedBytes) / 2);
      try {
        const { image, report } = await vae.decodeWithReport(z, { tiling: { maxBufferBytes: cap, streamTileSize: 16 } });
        expect(report.mode).toBe('streaming');
        expect(report.exact).toBe(false);
        expect(report.maxTileBytes).toBeLessThanOrEqual(cap);
        const got = await rt.read(image);
        expect(rt.memory().peakLiveBytes).toBeLessThanOrEqual(rt.allocator.budgetBytes);
        expect(rt.memory().peakLiveBytes - live).toBeLessThanOrEqual(report.estimatedBytes);
        const r = compare(got, ref, { atol: 0, rtol: 0 });
        console.info(`streaming (estimated stats): nmse vs exact ${r.nmse.toExponential(2)}`);
        // Estimated statistics: close to, but not equal to, the exact image.
        expect(r.nmse).toBeLessThan(0.05);
        console.info(`streaming (estimated stats): ${JSON.stringify(report)}; peak live ${rt.memory().peakLiveBytes - live} B over the baseline (budget ${rt.allocator.budgetBytes - live} B); nmse vs exact ${r.nmse.toExponential(2)}, max abs ${r.maxAbs.toExponential(2)}`);
      } finally {
        rt.allocator.budgetBytes = budget;
      }
    });
  });

  it('an aborted signal stops a tiled decode with AbortError and frees its tensors', async () => {
    const live = rt.memory().liveBytes;
    await rt.scopeAsync(async () => {
      const z = rt.upload(latent(), [2, 4, 12, 20]);
      const ac = new AbortController();
      const p = vae.decode(z, { tiling: { mode: 'exact', tileSize: 2 }, signal: ac.signal });
      ac.abort();
      await expect(p).rejects.toThrow(AbortError);
    });
    expect(rt.memory().liveBytes).toBe(live);
  });
});

/** Diffusers-named weight shapes of an AutoencoderKL config (both halves). */
function vaeWeightShapes(c: AutoencoderKLConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const conv = (k: string, o: number, i: number, ks: number) => (m.set(`${k}.weight`, [o, i, ks, ks]), m.set(`${k}.bias`, [o]));
  const norm = (k: string, ch: number) => (m.set(`${k}.weight`, [ch]), m.set(`${k}.bias`, [ch]));
  const resnet = (k: string, i: number, o: number) => {
    norm(`${k}.norm1`, i);
    conv(`${k}.conv1`, o, i, 3);
    norm(`${k}.norm2`, o);
    conv(`${k}.conv2`, o, o, 3);
    if (i !== o) conv(`${k}.conv_shortcut`, o, i, 1);
  };
  const mid = (k: string, ch: number) => {
    resnet(`${k}.resnets.0`, ch, ch);
    resnet(`${k}.resnets.1`, ch, ch);
    norm(`${k}.attentions.0.group_norm`, ch);
    for (const q of ['to_q', 'to_k', 'to_v', 'to_out.0']) m.set(`${k}.attentions.0.${q}.weight`, [ch, ch]).set(`${k}.attentions.0.${q}.bias`, [ch]);
  };
  const ch = c.block_out_channels;
  const top = ch[ch.length - 1]!;
  conv('encoder.conv_in', ch[0]!, c.in_channels, 3);
  ch.forEach((o, i) => {
    for (let j = 0; j < c.layers_per_block; j++) resnet(`encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? (i === 0 ? ch[0]! : ch[i - 1]!) : o, o);
    if (i < ch.length - 1) conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, o, o, 3);
  });
  mid('encoder.mid_block', top);
  norm('encoder.conv_norm_out', top);
  conv('encoder.conv_out', 2 * c.latent_channels, top, 3);
  conv('quant_conv', 2 * c.latent_channels, 2 * c.latent_channels, 1);
  conv('post_quant_conv', c.latent_channels, c.latent_channels, 1);
  const rev = [...ch].reverse();
  conv('decoder.conv_in', top, c.latent_channels, 3);
  mid('decoder.mid_block', top);
  rev.forEach((o, i) => {
    for (let j = 0; j < c.layers_per_block + 1; j++) resnet(`decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? (i === 0 ? top : rev[i - 1]!) : o, o);
    if (i < rev.length - 1) conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, o, o, 3);
  });
  norm('decoder.conv_norm_out', rev[rev.length - 1]!);
  conv('decoder.conv_out', c.out_channels, rev[rev.length - 1]!, 3);
  return m;
}

/** A random-weight VAE (kernels N(0, 1/fan_in), norm gains around 1, small biases) as a safetensors file. */
function randomVaeFile(c: AutoencoderKLConfig, seed: number): Promise<SafetensorsFile> {
  let k = seed;
  const tensors = [...vaeWeightShapes(c)].map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = shape.length === 1 ? randn(n, ++k, 0.1).map((v) => (name.includes('norm') && name.endsWith('.weight') ? 1 + v : v)) : randn(n, ++k, 1 / Math.sqrt(n / shape[0]!));
    return { name, tensor: { dtype: 'f32' as const, shape, data } };
  });
  return SafetensorsFile.open(bytesSource(writeSafetensors(tensors)));
}

describe('streaming encode (exact statistics from repeated passes)', () => {
  let rt: Runtime;
  let vae: AutoencoderKL;
  beforeAll(async () => {
    rt = await testRuntime();
    vae = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await SafetensorsFile.open(bytesSource(readFileSync(FIXTURES + 'vae.safetensors'))) });
  });

  /** Runs `fn` with the budget set to the live bytes + `bytes`, from an empty pool and a reset peak. */
  async function underBudget<R>(bytes: number, fn: () => Promise<R>): Promise<{ result: R; peak: number; peakLive: number; budget: number }> {
    const saved = rt.allocator.budgetBytes;
    rt.allocator.trim();
    rt.allocator.resetPeak();
    rt.allocator.budgetBytes = rt.memory().liveBytes + bytes;
    try {
      const result = await fn();
      return { result, peak: rt.memory().peakBytes, peakLive: rt.memory().peakLiveBytes, budget: rt.allocator.budgetBytes };
    } finally {
      rt.allocator.budgetBytes = saved;
    }
  }

  it('auto streams under a budget exact tiling exceeds; = untiled within 1e-4 (fixture VAE, 1 and 2 images, ≥ 9 tiles, 44×76)', async () => {
    for (const N of [1, 2]) {
      await rt.scopeAsync(async () => {
        // 22×38 latent px: not a multiple of the output tile (6) nor of the sub-image tiles.
        const img = rt.upload(randu(N * 3 * 44 * 76, 21 + N), [N, 3, 44, 76]);
        const ref = await vae.encode(img, { tiling: 'off' });
        const want = { mean: await rt.read(ref.mean), logvar: await rt.read(ref.logvar) };
        ref.mean.dispose();
        ref.logvar.dispose();
        // Buffer cap ≥ the attention's K and V (32 channels × 836 tokens × N f32), which are single buffers. In this
        // VAE the mid block needs as much as the image-resolution layers, so small tiles (4 latent px) are what
        // leaves streaming (smaller sub-image tiles) below exact tiling.
        const tiling: TilingOptions = { maxBufferBytes: N * 110 * 1024, tileSize: 4, streamTileSize: 6 };
        const exact = vae.planTiling(rt, 'encode', N, 22, 38, { ...tiling, mode: 'exact' });
        const stream = vae.planTiling(rt, 'encode', N, 22, 38, { ...tiling, mode: 'streaming' });
        expect(stream.estimatedBytes).toBeLessThan(exact.estimatedBytes);
        const room = Math.floor((stream.estimatedBytes + exact.estimatedBytes) / 2); // streaming fits, exact does not
        const run = await underBudget(room, async () => {
          expect(() => vae.planTiling(rt, 'encode', N, 22, 38, { ...tiling, mode: 'exact' })).toThrow(OutOfMemoryError);
          const r = await vae.encodeWithReport(img, { tiling });
          return { mean: await rt.read(r.mean), logvar: await rt.read(r.logvar), report: r.report };
        });
        const { report } = run.result;
        expect(report).toMatchObject({ mode: 'streaming', exact: true, streamedStages: 1, passes: 3 }); // 2 GroupNorms in stage 0, + 1
        expect(report.streamTiles).toBe(Math.ceil(22 / 6) * Math.ceil(38 / 6));
        expect(report.streamTiles).toBeGreaterThanOrEqual(9);
        expect(report.maxTileBytes).toBeLessThanOrEqual(tiling.maxBufferBytes!);
        expect(run.peak).toBeLessThanOrEqual(run.budget);
        const a = expectClose(run.result.mean, want.mean, SEAM, 'mean');
        const b = expectClose(run.result.logvar, want.logvar, SEAM, 'logvar');
        console.info(
          `streaming encode N=${N}: ${JSON.stringify(report)}; peak ${run.peak} B ≤ budget ${run.budget} B (live peak ${run.peakLive} B); ` +
            `max abs diff mean ${a.maxAbs.toExponential(2)} logvar ${b.maxAbs.toExponential(2)}`,
        );
      });
    }
  });
});

describe('streaming encode: abort and failure leave nothing behind', () => {
  let rt: Runtime;
  let vae: AutoencoderKL;
  beforeAll(async () => {
    rt = await testRuntime();
    vae = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await SafetensorsFile.open(bytesSource(readFileSync(FIXTURES + 'vae.safetensors'))) });
  });

  it('an abort in the first or the last pass is an AbortError and frees every tensor (moments, statistics, stage output)', async () => {
    const img = rt.upload(randu(3 * 24 * 40, 9), [1, 3, 24, 40]);
    const tiling: TilingOptions = { mode: 'streaming', tileSize: 3, streamTileSize: 3 };
    const sync = rt.sync.bind(rt);
    const alloc = rt.allocator.alloc.bind(rt.allocator);
    const live = rt.memory().liveBytes;
    // The last pass is the one that allocates the stage output ('vae.stage'); each streamed tile ends with a sync.
    let lastPass = false;
    let syncs = 0;
    let abort = (): boolean => false;
    const ac = { current: new AbortController() };
    rt.allocator.alloc = (bytes, label, pooled) => {
      if (label === 'vae.stage') lastPass = true;
      return alloc(bytes, label, pooled);
    };
    rt.sync = async () => {
      syncs++;
      if (abort()) ac.current.abort();
      return sync();
    };
    try {
      for (const [when, test] of [
        ['first pass', () => syncs === 5 && !lastPass],
        ['last pass', () => lastPass && !ac.current.signal.aborted],
      ] as const) {
        [syncs, lastPass, abort, ac.current] = [0, false, test, new AbortController()];
        await expect(vae.encode(img, { tiling, signal: ac.current.signal }), when).rejects.toThrow(AbortError);
        expect(ac.current.signal.aborted, when).toBe(true);
        expect(rt.memory().liveBytes, when).toBe(live);
      }
    } finally {
      rt.sync = sync;
      rt.allocator.alloc = alloc;
      img.dispose();
    }
  });
});

describe('streaming encode, two streamed stages (random 3-level VAE)', () => {
  const config: AutoencoderKLConfig = {
    ...AutoencoderKLConfig.sd15,
    block_out_channels: [8, 16, 32],
    down_block_types: Array<string>(3).fill('DownEncoderBlock2D'),
    up_block_types: Array<string>(3).fill('UpDecoderBlock2D'),
    norm_num_groups: 4,
  };
  let rt: Runtime;
  let vae: AutoencoderKL;
  beforeAll(async () => {
    rt = await testRuntime();
    vae = await AutoencoderKL.load(rt, { config, weights: await randomVaeFile(config, 100) });
  });

  it('a budget that only fits two streamed stages: = untiled within 1e-4, peak ≤ budget, buffers ≤ cap', async () => {
    const [N, h, w] = [1, 10, 14]; // 40×56 image
    const tiling: TilingOptions = { maxBufferBytes: 64 * 1024, streamTileSize: 4 };
    const live = rt.memory().liveBytes;
    const exact = vae.planTiling(rt, 'encode', N, h, w, { ...tiling, mode: 'exact' });
    // The largest budget (in 1 KiB steps below exact tiling's estimate) at which the plan streams two stages.
    const saved = rt.allocator.budgetBytes;
    let room = 0;
    let stages: EncodeStagePlan[] = [];
    try {
      for (let b = exact.estimatedBytes; b > 0 && !room; b -= 1024) {
        rt.allocator.budgetBytes = live + b;
        try {
          const plan = vae.planTiling(rt, 'encode', N, h, w, tiling);
          if (plan.encodeStages?.length === 2) [room, stages] = [b, plan.encodeStages];
        } catch (e) {
          if (!(e instanceof OutOfMemoryError)) throw e;
        }
      }
    } finally {
      rt.allocator.budgetBytes = saved;
    }
    expect(room).toBeGreaterThan(0);
    await rt.scopeAsync(async () => {
      const img = rt.upload(randu(N * 3 * 4 * h * 4 * w, 5), [N, 3, 4 * h, 4 * w]);
      const ref = await vae.encode(img, { tiling: 'off' });
      const want = { mean: await rt.read(ref.mean), logvar: await rt.read(ref.logvar) };
      ref.mean.dispose();
      ref.logvar.dispose();
      rt.allocator.trim();
      rt.allocator.resetPeak();
      rt.allocator.budgetBytes = rt.memory().liveBytes + room; // the weights and the image, + room
      try {
        const { mean, logvar, report } = await vae.encodeWithReport(img, { tiling });
        expect(report).toMatchObject({ mode: 'streaming', exact: true, streamedStages: 2, passes: 2 * 5 }); // 4 GroupNorms per stage, + 1
        expect(report.streamTiles).toBe(stages.reduce((n, s) => n + Math.ceil(h / s.S) * Math.ceil(w / s.S), 0));
        expect(report.streamTiles).toBeGreaterThanOrEqual(2 * 9);
        expect(report.maxTileBytes).toBeLessThanOrEqual(tiling.maxBufferBytes!);
        expect(rt.memory().peakBytes).toBeLessThanOrEqual(rt.allocator.budgetBytes);
        const a = expectClose(await rt.read(mean), want.mean, SEAM, 'mean');
        const b = expectClose(await rt.read(logvar), want.logvar, SEAM, 'logvar');
        console.info(
          `two-stage streaming encode: ${JSON.stringify(report)}; stages ${JSON.stringify(stages)}; peak ${rt.memory().peakBytes} B ≤ budget ${rt.allocator.budgetBytes} B ` +
            `(exact tiling: ${exact.estimatedBytes} B); max abs diff mean ${a.maxAbs.toExponential(2)} logvar ${b.maxAbs.toExponential(2)}`,
        );
      } finally {
        rt.allocator.budgetBytes = saved;
      }
    });
  });
});

describe('allocation-only runs (rt.executeDispatches = false)', () => {
  let rt: Runtime;
  let vae: AutoencoderKL;
  beforeAll(async () => {
    rt = await testRuntime();
    vae = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await SafetensorsFile.open(bytesSource(readFileSync(FIXTURES + 'vae.safetensors'))) });
  });

  /** Peak allocated and live bytes, dispatches and report of one decode/encode, from an empty pool. */
  async function measure(what: 'decode' | 'encode', tiling: TilingOptions | 'off', execute: boolean) {
    rt.allocator.trim();
    rt.allocator.resetPeak();
    const d0 = rt.dispatches;
    rt.executeDispatches = execute;
    try {
      const report = await rt.scopeAsync(async () => {
        if (what === 'decode') {
          const r = await vae.decodeWithReport(rt.upload(randn(4 * 12 * 20, 3), [1, 4, 12, 20]), { tiling });
          await rt.read(r.image);
          return r.report;
        }
        const r = await vae.encodeWithReport(rt.upload(randu(3 * 24 * 40, 4), [1, 3, 24, 40]), { tiling });
        await rt.read(r.mean);
        return r.report;
      });
      return { peakBytes: rt.memory().peakBytes, peakLiveBytes: rt.memory().peakLiveBytes, dispatches: rt.dispatches - d0, report };
    } finally {
      rt.executeDispatches = true;
    }
  }

  it.each<['decode' | 'encode', TilingOptions | 'off']>([
    ['decode', 'off'],
    ['decode', { mode: 'exact', tileSize: 3 }],
    ['decode', { mode: 'streaming', tileSize: 3, streamTileSize: 5 }],
    ['encode', 'off'],
    ['encode', { mode: 'exact', tileSize: 3 }],
    ['encode', { mode: 'streaming', tileSize: 3, streamTileSize: 4 }],
  ])('%s %j: the same peak bytes, live peak, dispatches and report as a full run', async (what, tiling) => {
    const full = await measure(what, tiling, true);
    const dry = await measure(what, tiling, false);
    expect(dry).toEqual(full);
    expect(full.dispatches).toBeGreaterThan(0);
    console.info(`${what} ${JSON.stringify(tiling)}: ${JSON.stringify(full)}`);
  });
});
