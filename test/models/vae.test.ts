/**
 * AutoencoderKL: key renaming (all dialects, the real SD VAE key lists), config validation, the fixture VAE
 * against vae.io.safetensors (three weight files, debug intermediates), and typed errors for bad input.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, writeSafetensors, type HostTensor } from '../../src/io/safetensors.js';
import { detectVaeDialect, vaeKeyRenamer } from '../../src/models/keys.js';
import { AutoencoderKLConfig, parseAutoencoderKLConfig } from '../../src/models/vae/config.js';
import { AutoencoderKL } from '../../src/models/vae/model.js';
import { TileExec, TiledAct } from '../../src/models/vae/tiled.js';
import { ArgumentError, ConfigError, OutOfMemoryError, ShapeError, WeightError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { compare, expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { FIXTURES, fx, loadFixture, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { TINY_VAE_CONFIG, vaeChecks } from '../shared/fixtures-vae.js';

const KEYS = new URL('../fixtures/keys/', import.meta.url);

function tsvKeys(name: string): string[] {
  return readFileSync(new URL(name, KEYS), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t')[1]!);
}

describe('vaeKeyRenamer', () => {
  const ldm = tsvKeys('sd_vae_ldm_fmboost.tsv');
  const diffusers = tsvKeys('sd_vae_diffusers.tsv');

  it('maps the 248 SD VAE LDM keys onto the diffusers keys, bare and under each prefix', () => {
    expect(ldm.length).toBe(248);
    for (const prefix of ['', 'first_stage_model.', 'first_stage.']) {
      const keys = ldm.map((k) => prefix + k);
      expect(detectVaeDialect(keys)).toEqual({ dialect: 'ldm', prefix });
      const rename = vaeKeyRenamer(keys);
      expect(keys.map(rename).sort()).toEqual([...diffusers].sort());
    }
  });

  it('keeps diffusers keys, maps old diffusers attention names, drops other models of a single file', () => {
    const r = vaeKeyRenamer(diffusers);
    expect(diffusers.map(r)).toEqual(diffusers);
    const old = diffusers.map((k) => k.replace('to_q', 'query').replace('to_k', 'key').replace('to_v', 'value').replace('to_out.0', 'proj_attn'));
    expect(detectVaeDialect(old).dialect).toBe('diffusers-old-attention');
    expect(old.map(vaeKeyRenamer(old))).toEqual(diffusers);
    const single = [...ldm.map((k) => 'first_stage_model.' + k), 'model.diffusion_model.out.0.weight', 'cond_stage_model.transformer.text_model.final_layer_norm.weight', 'alphas_cumprod'];
    const rs = vaeKeyRenamer(single);
    expect(rs('model.diffusion_model.out.0.weight')).toBeNull();
    expect(rs('alphas_cumprod')).toBeNull();
    expect(rs('first_stage_model.decoder.up.3.upsample.conv.weight')).toBe('decoder.up_blocks.0.upsamplers.0.conv.weight');
    expect(rs('first_stage_model.encoder.mid.attn_1.proj_out.bias')).toBe('encoder.mid_block.attentions.0.to_out.0.bias');
  });

  it('reverses LDM up levels by the checkpoint own level count (the 2-level fixture)', () => {
    const keys = [...loadFixture('vae_ldm.safetensors').keys()];
    const r = vaeKeyRenamer(keys);
    const want = [...loadFixture('vae.safetensors').keys()].sort();
    expect(keys.map(r).sort()).toEqual(want);
  });
});

describe('AutoencoderKLConfig', () => {
  it('parses the fixture config and the SD-1.5 preset', () => {
    const c = parseAutoencoderKLConfig(JSON.parse(readFileSync(FIXTURES + 'vae.config.json', 'utf8')));
    expect(c.block_out_channels).toEqual([16, 32]);
    expect(c.scaling_factor).toBe(0.18215);
    expect(parseAutoencoderKLConfig(AutoencoderKLConfig.sd15)).toMatchObject({ block_out_channels: [128, 256, 512, 512], layers_per_block: 2 });
  });

  it.each([
    ['a string channel count', { block_out_channels: ['16', 32] }],
    ['a fractional layer count', { layers_per_block: 1.5 }],
    ['a missing latent_channels', { latent_channels: undefined }],
    ['channels not divisible by the groups', { block_out_channels: [12, 32] }],
    ['another activation', { act_fn: 'gelu' }],
    ['another block type', { up_block_types: ['UpDecoderBlock2D', 'AttnUpDecoderBlock2D'] }],
    ['block types of the wrong length', { down_block_types: ['DownEncoderBlock2D'] }],
    ['a boolean scaling factor', { scaling_factor: true }],
  ])('rejects %s with ConfigError', (_, patch) => {
    expect(() => parseAutoencoderKLConfig({ ...TINY_VAE_CONFIG, ...patch })).toThrow(ConfigError);
  });
});

describe('AutoencoderKL on the fixture VAE', () => {
  let rt: Runtime;
  let vae: AutoencoderKL;
  beforeAll(async () => {
    rt = await testRuntime();
    vae = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await SafetensorsFile.open(bytesSource(readFileSync(FIXTURES + 'vae.safetensors'))) });
  });

  it.each(vaeChecks.filter((c) => !c.name.includes('tiled')).map((c) => [c.name, c] as const))('%s matches the reference outputs', async (name, check) => {
    const res = await check.run(rt, nodeLoader);
    const list = Array.isArray(res) ? res : [res];
    for (const [i, r] of list.entries()) {
      const rep = expectClose(r.actual, r.expected, r, `${name}#${i}`);
      console.info(`${name}#${i}: max abs err ${rep.maxAbs.toExponential(2)} (atol ${r.atol})`);
    }
  });

  it('matches the debug intermediates of the decoder and encoder', async () => {
    const io = 'vae.io.safetensors';
    const dec = vae.decoder!;
    const enc = vae.encoder!;
    const tol = tolerance('vae', 'decoded');
    await rt.scopeAsync(async () => {
      const ex = new TileExec(rt);
      const wrap = (t: Tensor) => new TiledAct(t.shape[0]!, t.shape[1]!, [0, t.shape[2]!], [0, t.shape[3]!], [t]);
      const z = fx(io, 'z');
      let x = wrap(rt.upload(z.data, z.shape));
      x = await ex.conv(vae.postQuantConv!, x, { consume: true });
      x = await dec.head(ex, x);
      expectClose(await rt.read(x.tile(0, 0)), fx(io, 'debug.decoder.mid_block').data, tol, 'decoder.mid_block');
      x = await dec.upBlocks[0]!.forward(ex, x);
      expectClose(await rt.read(x.tile(0, 0)), fx(io, 'debug.decoder.up_blocks.0').data, tol, 'decoder.up_blocks.0');
      x = await dec.upBlocks[1]!.forward(ex, x);
      expectClose(await rt.read(x.tile(0, 0)), fx(io, 'debug.decoder.up_blocks.1').data, tol, 'decoder.up_blocks.1');
      const img = fx(io, 'image');
      let e = wrap(rt.upload(img.data, img.shape));
      e = await ex.conv(enc.convIn, e, { consume: true });
      e = await enc.downBlocks[0]!.forward(ex, e);
      expectClose(await rt.read(e.tile(0, 0)), fx(io, 'debug.encoder.down_blocks.0').data, tol, 'encoder.down_blocks.0');
      e = await enc.downBlocks[1]!.forward(ex, e);
      expectClose(await rt.read(e.tile(0, 0)), fx(io, 'debug.encoder.down_blocks.1').data, tol, 'encoder.down_blocks.1');
      e = await enc.midBlock.forward(ex, e);
      expectClose(await rt.read(e.tile(0, 0)), fx(io, 'debug.encoder.mid_block').data, tol, 'encoder.mid_block');
    });
  });

  it('decodes a batch of two like two single decodes', async () => {
    const z = fx('vae.io.safetensors', 'z');
    const two = new Float32Array(2 * z.data.length);
    two.set(z.data);
    for (let i = 0; i < z.data.length; i++) two[z.data.length + i] = -0.5 * z.data[i]!;
    await rt.scopeAsync(async () => {
      const both = await rt.read(await vae.decode(rt.upload(two, [2, 4, 16, 16])));
      const second = await rt.read(await vae.decode(rt.upload(two.subarray(z.data.length), [1, 4, 16, 16])));
      expectClose(both.subarray(0, both.length / 2), fx('vae.io.safetensors', 'decoded').data, tolerance('vae', 'decoded'), 'batch item 0');
      expect(compare(both.subarray(both.length / 2), second, { atol: 1e-5, rtol: 0 }).bad).toBe(0);
    });
  });

  it('exposes the config scaling factor', () => {
    expect(vae.scalingFactor).toBe(0.18215);
    expect(vae.downsampleFactor).toBe(2);
  });

  it('rejects bad inputs with typed errors before any GPU work', async () => {
    await rt.scopeAsync(async () => {
      const dispatches = rt.dispatches;
      await expect(vae.decode(rt.zeros([1, 3, 8, 8]))).rejects.toThrow(ShapeError);
      await expect(vae.decode(rt.zeros([4, 8, 8]))).rejects.toThrow(ShapeError);
      await expect(vae.encode(rt.zeros([1, 3, 15, 16]))).rejects.toThrow(ShapeError);
      await expect(vae.encode(rt.zeros([1, 4, 16, 16]))).rejects.toThrow(ShapeError);
      await expect(vae.decode(rt.zeros([1, 4, 8, 8]), { tiling: 'sometimes' as never })).rejects.toThrow(ArgumentError);
      await expect(vae.decode(rt.zeros([1, 4, 8, 8]), { tiling: { tileSize: 0 } })).rejects.toThrow(ArgumentError);
      await expect(vae.decode(rt.zeros([1, 4, 8, 8]), { tiling: { mode: 'streaming', statistics: 'maybe' as never } })).rejects.toThrow(ArgumentError);
      await expect(vae.encode(rt.zeros([1, 3, 16, 16]), { tiling: { mode: 'streaming', streamTileSize: 0 } })).rejects.toThrow(ArgumentError);
      await expect(vae.encode(rt.zeros([1, 3, 16, 16]), { tiling: { mode: 'streamed' as never } })).rejects.toThrow(ArgumentError);
      expect(rt.dispatches).toBe(dispatches);
    });
  });

  it('exact mode names the memory it would need when the budget is too small', async () => {
    const budget = rt.allocator.budgetBytes;
    rt.allocator.budgetBytes = rt.memory().liveBytes + 64 * 1024;
    try {
      await rt.scopeAsync(async () => {
        const z = rt.upload(new Float32Array(4 * 64 * 64), [1, 4, 64, 64]);
        const err = await vae.decode(z, { tiling: { mode: 'exact' } }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(OutOfMemoryError);
        expect((err as OutOfMemoryError).requestedBytes).toBeGreaterThan(64 * 1024);
      });
    } finally {
      rt.allocator.budgetBytes = budget;
    }
  });
});

describe('AutoencoderKL.load', () => {
  let rt: Runtime;
  const base = () => {
    const f = loadFixture('vae.safetensors');
    return [...f].map(([name, t]) => ({ name, tensor: { dtype: 'f32', shape: t.shape, data: new Float32Array(t.data) } as HostTensor }));
  };
  const open = (list: { name: string; tensor: HostTensor }[]) => SafetensorsFile.open(bytesSource(writeSafetensors(list), 'test.safetensors'));
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('refuses unused, missing, mis-shaped and NaN weights with WeightError, leaking nothing', async () => {
    const live = rt.memory().liveBytes;
    const extra = [...base(), { name: 'decoder.extra.weight', tensor: { dtype: 'f32', shape: [2], data: new Float32Array(2) } as HostTensor }];
    await expect(AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await open(extra) })).rejects.toThrow(/decoder\.extra\.weight/);
    const missing = base().filter((t) => t.name !== 'decoder.conv_in.bias');
    await expect(AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await open(missing) })).rejects.toThrow(WeightError);
    const bad = base().map((t) => (t.name === 'encoder.conv_in.weight' ? { ...t, tensor: { ...t.tensor, shape: [16, 3, 3, 2], data: (t.tensor.data as Float32Array).slice(0, 288) } } : t));
    await expect(AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await open(bad) })).rejects.toThrow(WeightError);
    const nan = base().map((t) => (t.name === 'quant_conv.bias' ? { ...t, tensor: { ...t.tensor, data: Float32Array.from([0, NaN, 0, 0, 0, 0, 0, 0]) } } : t));
    await expect(AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await open(nan) })).rejects.toThrow(/quant_conv\.bias/);
    await expect(AutoencoderKL.load(rt, { config: { ...TINY_VAE_CONFIG, norm_num_groups: 'eight' }, weights: await open(base()) })).rejects.toThrow(ConfigError);
    expect(rt.memory().liveBytes).toBe(live);
  });

  it('loads only the decoder, or only the encoder, from the full file', async () => {
    const dec = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await open(base()), parts: 'decoder' });
    expect(dec.encoder).toBeUndefined();
    await expect(dec.encode(rt.zeros([1, 3, 8, 8]))).rejects.toThrow(ArgumentError);
    dec.dispose();
    const enc = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await open(base()), parts: 'encoder', dtype: 'f16' });
    expect(enc.decoder).toBeUndefined();
    enc.dispose();
  });
});
