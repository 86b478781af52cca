/**
 * Model sources: dropped-file path matching, the URL folder (files.json, Range reads, progress, only the needed
 * files), the hub-layout/single-file loaders' early failures, and WeightScope.synthesize (make-tiny's key lists).
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
