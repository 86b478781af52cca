/**
 * Tiled VAE: the tile-copy kernel against a plain loop; exact tiled decode/encode = untiled (≤ 1e-4, ≥ 9 tiles,
 * non-square, sizes not multiples of the tile, batch 2); streaming decode with exact statistics = untiled;
 * streaming with estimated statistics is chosen automatically under a small budget, reported as inexact,
 * stays within the budget and the buffer cap; abort.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { AutoencoderKL, type TilingOptions } from '../../src/models/vae/model.js';
import { copyRect, splitLength, type CopyRect } from '../../src/models/vae/tiled.js';
import { AbortError } from '../../src/runtime/errors.js';
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
