/**
 * Model sources: dropped-file path matching, the URL folder (files.json, Range reads, progress, only the needed
 * files), the hub-layout/single-file loaders' early failures, SD single-file checkpoints (.safetensors and .ckpt)
 * built from the fixture files and checked against their reference outputs, singleFileConfig, and
 * WeightScope.synthesize (make-tiny's key lists).
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightScope } from '../../src/io/weights.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { bytesSource } from '../../src/io/byte-source.js';
import { bytesModelFiles, fileListModelFiles, loadModelSet, urlModelFiles, type LoadProgress } from '../../src/pipelines/model-source.js';
import { bundledModelDir, folderModelFiles, resolveModelPath } from '../../src/node/model-folder.js';
import { AutoencoderKL } from '../../src/models/vae/model.js';
import { parseAutoencoderKLConfig } from '../../src/models/vae/config.js';
import { ArgumentError, ConfigError, IOError, WeightError } from '../../src/runtime/errors.js';
import { startStaticServer, type StaticServer } from '../browser/harness.js';
import { testRuntime } from '../helpers/device.js';
import { expectClose } from '../helpers/close.js';
import { FIXTURES, fx, loadFixture, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { TINY_CLIP, TINY_UNET, unetResults } from '../shared/fixtures-unet.js';
import { stateDictPickle, torchZip, type TensorSpec } from '../io/torch-zip.js';
import { UNet2DConditionConfig } from '../../src/models/unet-2d-condition/index.js';
import { SD15_SCHEDULER_CONFIG } from '../../src/pipelines/schedulers/index.js';
import type { HostTensor } from '../../src/io/safetensors.js';
import type { ModelSet } from '../../src/pipelines/model-source.js';
import type { Runtime } from '../../src/runtime/runtime.js';

const TINY = bundledModelDir();

describe('fileListModelFiles', () => {
  const file = (name: string, body = 'x', rel = '') => {
    const f = new File([body], name);
    if (rel) Object.defineProperty(f, 'webkitRelativePath', { value: rel });
    return f;
  };

  it('drops the shared top folder of a picked directory', async () => {
    const files = fileListModelFiles([file('config.json', '{}', 'tiny/unet/config.json'), file('model_index.json', '{}', 'tiny/model_index.json')]);
    expect(files.list()).toEqual(['model_index.json', 'unet/config.json']);
    expect((await files.open('unet/config.json')).size).toBe(2);
  });

  it('takes explicit paths from dropped entries and resolves unique suffixes', async () => {
    const files = fileListModelFiles([{ path: 'm/vae/config.json', file: file('config.json', 'abc') }, { path: 'm/cfm/cfm.safetensors', file: file('cfm.safetensors') }]);
    expect(files.list()).toEqual(['cfm/cfm.safetensors', 'vae/config.json']);
    expect((await files.open('x/vae/config.json')).size).toBe(3);
    await expect(files.open('unet/config.json')).rejects.toThrow(IOError);
  });

  it('refuses non-files', () => {
    expect(() => fileListModelFiles([])).toThrow(ArgumentError);
    expect(() => fileListModelFiles(['a' as unknown as File])).toThrow(ArgumentError);
  });
});

describe('model folders over HTTP', () => {
  let server: StaticServer;
  beforeAll(async () => {
    server = await startStaticServer();
  });
  afterAll(() => server?.close());

  it('lists the folder from files.json and reads files with Range requests', async () => {
    const files = await urlModelFiles(`${server.origin}/weights/tiny/`);
    expect(files.list()).toContain('unet/diffusion_pytorch_model.safetensors');
    server.resetCounters();
    const src = await files.open('unet/diffusion_pytorch_model.safetensors');
    const b = await src.read(100, 50);
    expect(Buffer.from(b).equals(readFileSync(join(TINY, 'unet/diffusion_pytorch_model.safetensors')).subarray(100, 150))).toBe(true);
    expect(server.requests('/weights/tiny/unet/diffusion_pytorch_model.safetensors')).toContain('bytes=100-149');
    expect(server.bytesServed()).toBe(50);
  });

  it("components 'upscale' reads only the VAE and CFM files, with byte progress to the total", { timeout: 600_000 }, async () => {
    const rt = await testRuntime();
    server.resetCounters();
    const seen: LoadProgress[] = [];
    const set = await loadModelSet(rt, `${server.origin}/weights/tiny/`, { components: 'upscale', onProgress: (p) => seen.push(p) });
    try {
      expect(set.textEncoder).toBeUndefined();
      expect(set.cfmStages.map((s) => [s.factor, s.noisingStep, s.solver, s.steps])).toEqual([[2, 400, 'euler', 4]]);
      const size = (p: string) => statSync(join(TINY, p)).size;
      const served = (p: string) => server.bytesServed('/weights/tiny/' + p);
      expect(served('text_encoder/model.safetensors')).toBe(0);
      expect(served('unet/diffusion_pytorch_model.safetensors')).toBe(0);
      expect(served('vae/diffusion_pytorch_model.safetensors')).toBeGreaterThan(0.9 * size('vae/diffusion_pytorch_model.safetensors'));
      expect(served('vae/diffusion_pytorch_model.safetensors')).toBeLessThanOrEqual(size('vae/diffusion_pytorch_model.safetensors'));
      expect(served('cfm/cfm.safetensors')).toBeLessThanOrEqual(size('cfm/cfm.safetensors'));
      const last = seen.at(-1)!;
      expect(last.totalBytes).toBe(size('vae/diffusion_pytorch_model.safetensors') + size('cfm/cfm.safetensors'));
      expect(last.loadedBytes).toBeGreaterThan(0.9 * last.totalBytes);
      expect(seen.every((p, i) => i === 0 || p.loadedBytes >= seen[i - 1]!.loadedBytes)).toBe(true);
    } finally {
      set.dispose();
    }
  });

  it('a missing server folder is an IOError', async () => {
    await expect(urlModelFiles(`${server.origin}/no/such/model/`)).rejects.toThrow(IOError);
  });
});

describe('loaders fail early and name the problem', () => {
  it('a hub folder without vae/config.json', async () => {
    const rt = await testRuntime();
    const files: Record<string, Uint8Array> = {};
    for (const p of ['model_index.json', 'text_encoder/config.json', 'unet/config.json']) files[p] = readFileSync(join(TINY, p));
    await expect(loadModelSet(rt, bytesModelFiles(files), { cfm: false })).rejects.toThrow(/vae\/config\.json/);
  });

  it('a safetensors file that is not an SD single-file checkpoint', async () => {
    const rt = await testRuntime();
    const unet = bytesSource(readFileSync(join(TINY, 'unet/diffusion_pytorch_model.safetensors')), 'unet.safetensors');
    await expect(loadModelSet(rt, unet, { cfm: false })).rejects.toThrow(ConfigError);
  });

  it('bad options', async () => {
    const rt = await testRuntime();
    await expect(loadModelSet(rt, await folderModelFiles(TINY), { dtype: 'f8' as 'f16' })).rejects.toThrow(ArgumentError);
    await expect(loadModelSet(rt, await folderModelFiles(TINY), { variant: 'bf16' as 'fp16' })).rejects.toThrow(ArgumentError);
    await expect(loadModelSet(rt, 42 as unknown as string)).rejects.toThrow(ArgumentError);
  });

  it('resolveModelPath: folder, file, URL, missing', async () => {
    expect(typeof ((await resolveModelPath(TINY)) as { list: unknown }).list).toBe('function');
    expect(((await resolveModelPath(join(TINY, 'model_index.json'))) as { size: number }).size).toBeGreaterThan(0);
    expect(await resolveModelPath('https://example.invalid/model.safetensors')).toBe('https://example.invalid/model.safetensors');
    await expect(resolveModelPath('/no/such/path')).rejects.toThrow(IOError);
  });
});

describe('SD single-file checkpoints built from the fixtures', () => {
  // unet_ldm and vae_ldm already carry the single-file prefixes (model.diffusion_model., first_stage_model.); the CLIP
  // text model gets cond_stage_model.transformer., as in an SD-1.x .safetensors/.ckpt.
  const PARTS: [file: string, prefix: string][] = [
    ['unet_ldm.safetensors', ''],
    ['vae_ldm.safetensors', ''],
    ['clip.safetensors', 'cond_stage_model.transformer.'],
  ];
  const entries = (): { name: string; tensor: HostTensor }[] =>
    PARTS.flatMap(([file, prefix]) => [...loadFixture(file)].map(([k, t]) => ({ name: prefix + k, tensor: { dtype: 'f32' as const, shape: t.shape, data: t.data as Float32Array } })));
  const json = (name: string): Record<string, unknown> => JSON.parse(readFileSync(FIXTURES + name, 'utf8')) as Record<string, unknown>;
  /** The fixture models' configs, as singleFileConfig's per-component form takes them. */
  const configs = () => ({ unet: json('unet.config.json'), vae: json('vae.config.json'), textEncoder: json('clip.config.json') });
  const tokenizer = () => bytesSource(readFileSync(FIXTURES + 'bpe_simple_vocab_16e6.txt.gz'), 'bpe');

  /** A torch.save zip ({'state_dict': OrderedDict}) of the same tensors, one float32 storage each. */
  function ckptBytes(): Uint8Array {
    const specs: Record<string, TensorSpec> = {};
    const storages: Record<string, Uint8Array> = {};
    for (const [i, e] of entries().entries()) {
      const d = e.tensor.data as Float32Array;
      specs[e.name] = { storageKey: String(i), storageNumel: d.length, shape: e.tensor.shape };
      storages[String(i)] = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    }
    return torchZip(stateDictPickle(specs), storages);
  }

  /** Every model of the set against the separate fixture files' reference outputs, at the fixture tolerances. */
  async function expectFixtureOutputs(rt: Runtime, set: ModelSet, label: string): Promise<void> {
    const hidden = set.textEncoder!.encode(fx('clip.io.safetensors', 'input_ids').data as Int32Array);
    try {
      expectClose(await rt.read(hidden), fx('clip.io.safetensors', 'last_hidden_state').data, tolerance('clip', 'last_hidden_state'), `${label} clip`);
    } finally {
      hidden.dispose();
    }
    const unet = await unetResults(rt, nodeLoader, { model: set.unet! });
    expect(unet.length).toBeGreaterThan(1); // out and the debug intermediates
    for (const r of unet) expectClose(r.actual, r.expected, tolerance('unet', 'out'), `${label} unet ${r.name}`);
    const io = (k: string) => fx('vae.io.safetensors', k);
    await rt.scopeAsync(async () => {
      const { mean, logvar } = await set.vae.encode(rt.upload(io('image').data, io('image').shape), { tiling: 'off' });
      const decoded = await set.vae.decode(rt.upload(io('z').data, io('z').shape), { tiling: 'off' });
      expectClose(await rt.read(mean), io('posterior_mean').data, tolerance('vae', 'posterior_mean'), `${label} vae mean`);
      expectClose(await rt.read(logvar), io('posterior_logvar').data, tolerance('vae', 'posterior_logvar'), `${label} vae logvar`);
      expectClose(await rt.read(decoded), io('decoded').data, tolerance('vae', 'decoded'), `${label} vae decoded`);
    });
  }

  it('.safetensors with per-component configs: the models match the separate fixture files', { timeout: 600_000 }, async () => {
    const rt = await testRuntime();
    const file = bytesSource(writeSafetensors(entries()), 'sd-tiny.safetensors');
    const set = await loadModelSet(rt, file, { cfm: false, tokenizer: tokenizer(), singleFileConfig: configs() });
    try {
      expect(set.source).toBe('sd-tiny.safetensors');
      expect(set.unet!.config).toEqual(TINY_UNET);
      expect(set.textEncoder!.config).toEqual(TINY_CLIP);
      expect(set.vae.config.block_out_channels).toEqual([16, 32]);
      expect(set.schedulerConfig).toEqual(SD15_SCHEDULER_CONFIG);
      expect(set.tokenizer!.encode('a photo of a cat').ids[1]).toBe(320);
      await expectFixtureOutputs(rt, set, 'safetensors');
    } finally {
      set.dispose();
    }
  });

  it('.ckpt (torch.save zip) with the configs of a diffusers folder: the same outputs', { timeout: 600_000 }, async () => {
    const rt = await testRuntime();
    const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
    const c = configs();
    const sched = { _class_name: 'DDIMScheduler', beta_start: 0.001, beta_end: 0.02, beta_schedule: 'linear', num_train_timesteps: 1000 };
    // Weights in the folder would be ignored: only the config files are read.
    const folder = bytesModelFiles({ 'unet/config.json': enc(c.unet), 'vae/config.json': enc(c.vae), 'text_encoder/config.json': enc(c.textEncoder), 'scheduler/scheduler_config.json': enc(sched) }, 'tiny-configs');
    const set = await loadModelSet(rt, bytesSource(ckptBytes(), 'sd-tiny.ckpt'), { cfm: false, tokenizer: tokenizer(), singleFileConfig: folder });
    try {
      expect(set.unet!.config).toEqual(TINY_UNET);
      expect(set.schedulerConfig.betaStart).toBe(0.001);
      expect(set.schedulerConfig.betaSchedule).toBe('linear');
      await expectFixtureOutputs(rt, set, 'ckpt');
    } finally {
      set.dispose();
    }
  });

  it('a checkpoint that is not SD-1.5-sized fails before any upload and says to pass singleFileConfig', async () => {
    const rt = await testRuntime();
    const file = bytesSource(writeSafetensors(entries()), 'sd-tiny.safetensors');
    const before = rt.allocator.stats().liveBytes;
    const err = await loadModelSet(rt, file, { cfm: false, tokenizer: tokenizer() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).toMatch(/model\.diffusion_model\.input_blocks\.0\.0\.weight is \[32, 4, 3, 3\], the SD-1\.5 unet preset expects \[320, 4, 3, 3\].*singleFileConfig/);
    // Only the VAE given: the UNet and CLIP keep their SD-1.5 presets, so the UNet is still refused.
    await expect(loadModelSet(rt, file, { cfm: false, tokenizer: tokenizer(), singleFileConfig: { vae: configs().vae } })).rejects.toThrow(/SD-1\.5 unet preset/);
    // A config of the wrong size is named as the given one.
    const small = { ...configs(), vae: { ...configs().vae, block_out_channels: [8, 16] } };
    await expect(loadModelSet(rt, file, { cfm: false, tokenizer: tokenizer(), singleFileConfig: small })).rejects.toThrow(/first_stage_model\.decoder\.conv_in\.weight is \[32, 4, 3, 3\], the given vae config expects \[16, 4, 3, 3\]/);
    // The upscaler needs only the VAE: the UNet and CLIP presets are not held against the file.
    const vaeOnly = await loadModelSet(rt, file, { cfm: false, components: 'upscale', singleFileConfig: { vae: configs().vae } });
    expect(vaeOnly.unet).toBeUndefined();
    expect(vaeOnly.vae.config.block_out_channels).toEqual([16, 32]);
    vaeOnly.dispose();
    expect(rt.allocator.stats().liveBytes).toBe(before);
  });

  it('singleFileConfig is validated', async () => {
    const rt = await testRuntime();
    const file = bytesSource(writeSafetensors(entries()), 'sd-tiny.safetensors');
    const o = { cfm: false as const, tokenizer: tokenizer() };
    await expect(loadModelSet(rt, await folderModelFiles(TINY), { ...o, singleFileConfig: configs() })).rejects.toThrow(/singleFileConfig applies to SD single-file checkpoints/);
    await expect(loadModelSet(rt, file, { ...o, singleFileConfig: { ...configs(), clip: {} } as object })).rejects.toThrow(/unknown component\(s\) 'clip'/);
    await expect(loadModelSet(rt, file, { ...o, singleFileConfig: { unet: 42 } })).rejects.toThrow(ArgumentError);
    await expect(loadModelSet(rt, file, { ...o, singleFileConfig: 42 as unknown as string })).rejects.toThrow(ArgumentError);
    await expect(loadModelSet(rt, file, { ...o, singleFileConfig: { ...configs(), unet: { ...configs().unet, in_channels: 'four' } } })).rejects.toThrow(ConfigError);
    const unetOnly = bytesModelFiles({ 'unet/config.json': new TextEncoder().encode(JSON.stringify(configs().unet)) });
    await expect(loadModelSet(rt, file, { ...o, singleFileConfig: unetOnly })).rejects.toThrow(/vae\/config\.json.*missing: a singleFileConfig folder needs unet\/, vae\/ and text_encoder\//);
    await expect(loadModelSet(rt, file, { ...o, components: 'upscale', singleFileConfig: unetOnly })).rejects.toThrow(/vae\/config\.json.*missing: a singleFileConfig folder needs vae\/config\.json/);
    await expect(loadModelSet(rt, file, { ...o, singleFileConfig: { ...configs(), scheduler: { beta_start: -1 } } })).rejects.toThrow(ConfigError);
  });
});

describe('WeightScope.synthesize', () => {
  it("records a model's keys in build order and builds it on the GPU", async () => {
    const rt = await testRuntime();
    const cfg = parseAutoencoderKLConfig(JSON.parse(readFileSync(join(TINY, 'vae/config.json'), 'utf8')));
    const w = WeightScope.synthesize(rt, (_k, shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5));
    const vae = new AutoencoderKL(cfg, w);
    const keys = w.synthesized();
    expect(keys[0]!.key).toBe('encoder.conv_in.weight');
    expect(keys.find((k) => k.key === 'encoder.conv_in.weight')!.shape).toEqual([8, 3, 3, 3]);
    // The bundled file holds exactly these keys.
    const file = JSON.parse(readFileSync(join(TINY, 'vae/diffusion_pytorch_model.safetensors')).subarray(8, 8 + readFileSync(join(TINY, 'vae/diffusion_pytorch_model.safetensors')).readUInt32LE(0)).toString()) as Record<string, unknown>;
    expect(keys.map((k) => k.key).sort()).toEqual(Object.keys(file).filter((k) => k !== '__metadata__').sort());
    expect(Array.from(await rt.read(w.get('encoder.conv_in.bias'))).every((v) => v === 0.5)).toBe(true);
    vae.dispose();
    // A loaded scope still fails on a missing key; init must return the right length.
    expect(() => WeightScope.synthesize(rt, () => new Float32Array(1)).get('a', [2, 2])).toThrow(WeightError);
    expect(w.synthesized()).not.toBe(keys);
  });

  it('writeSafetensors round trip of a synthesized key list keeps shapes', () => {
    const bytes = writeSafetensors([{ name: 'a', tensor: { dtype: 'f32', shape: [2, 1], data: new Float32Array([1, 2]) } }]);
    expect(bytes.byteLength).toBeGreaterThan(8);
  });
});
