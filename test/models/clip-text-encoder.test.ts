import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostTensor, TensorSource } from '../../src/io/safetensors.js';
import { CLIPTextConfig, CLIPTextModel, TOKEN_CHUNK_BYTES } from '../../src/models/clip-text-encoder.js';
import { ArgumentError, ConfigError, ShapeError, WeightError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { compare, expectClose } from '../helpers/close.js';
import { nodeGPU } from '../../src/node/gpu.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import { FIXTURES, fx, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { clipResults, fixtureSource, recordShapes, TINY_CLIP, UNET_TOL } from '../shared/fixtures-unet.js';
import { loadFixture } from '../helpers/fixtures.js';

// dawn.node (webgpu 0.6.2) segfaults once the GPU object that made a device is garbage-collected, and
// createNodeRuntime keeps only the device: this module holds the GPU for as long as the file runs.
let gpu: GPU | null = null;
let shared: Promise<Runtime> | null = null;
function testRuntime(): Promise<Runtime> {
  shared ??= nodeGPU().then((g) => createRuntime({ gpu: (gpu = g), log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }));
  return shared;
}

const ids = (): Int32Array => fx('clip.io.safetensors', 'input_ids').data as Int32Array;

/** clip.safetensors with every key renamed, plus extra keys, as a single-file checkpoint would hold them. */
function renamedSource(rename: (k: string) => string, extra: [string, HostTensor][] = []): TensorSource {
  const base = fixtureSource(loadFixture('clip.safetensors'), 'clip.safetensors');
  const map = new Map(base.keys().map((k) => [rename(k), k]));
  const more = new Map(extra);
  return {
    name: 'single-file',
    keys: () => [...map.keys(), ...more.keys()],
    info: (k) => {
      const e = more.get(k);
      if (e) return { dtype: e.dtype.toUpperCase(), shape: e.shape };
      return base.info(map.get(k)!);
    },
    read: async (k) => more.get(k) ?? base.read(map.get(k)!),
  };
}

async function encodeAll(rt: Runtime, clip: CLIPTextModel): Promise<Float32Array> {
  const out = clip.encode(ids());
  try {
    return await rt.read(out);
  } finally {
    out.dispose();
  }
}

describe('CLIPTextModel (clip fixture)', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('config: clip.config.json → the tiny config; sd15 preset', () => {
    const json = JSON.parse(readFileSync(FIXTURES + 'clip.config.json', 'utf8')) as Record<string, unknown>;
    expect(CLIPTextConfig.fromTransformers(json, 'clip.config.json')).toEqual(TINY_CLIP);
    expect(CLIPTextConfig.fromTransformers({ text_config: json })).toEqual(TINY_CLIP);
    expect(CLIPTextConfig.sd15).toMatchObject({ hiddenSize: 768, numHiddenLayers: 12, numAttentionHeads: 12, intermediateSize: 3072, maxPositionEmbeddings: 77, hiddenAct: 'quick_gelu', vocabSize: 49408 });
    expect(() => CLIPTextConfig.fromTransformers({ ...json, hidden_act: 'relu' })).toThrow(ConfigError);
    expect(() => CLIPTextConfig.fromTransformers({ ...json, num_attention_heads: 5 })).toThrow(/divisible/);
    expect(() => CLIPTextConfig.fromTransformers({ ...json, hidden_size: undefined })).toThrow(ConfigError);
  });

  it('the tolerance used in the browser is tolerances.json clip.last_hidden_state', () => {
    expect(UNET_TOL.clip).toEqual(tolerance('clip', 'last_hidden_state'));
  });

  it('last_hidden_state and every debug layer match clip.io', async () => {
    const res = await clipResults(rt, nodeLoader);
    expect(res.map((r) => r.name).sort()).toEqual(
      ['last_hidden_state', 'debug.text_model.embeddings', 'debug.text_model.encoder.layers.0', 'debug.text_model.encoder.layers.1', 'debug.text_model.encoder.layers.2'].sort(),
    );
    for (const r of res) {
      const rep = expectClose(r.actual, r.expected, r, `clip ${r.name}`);
      if (r.name === 'last_hidden_state') console.info(`clip last_hidden_state: maxAbs ${rep.maxAbs.toExponential(2)}`);
    }
  });

  it('token table split into small chunks: gathers across chunk boundaries, same result', async () => {
    const whole = await CLIPTextModel.load(rt, fixtureSource(loadFixture('clip.safetensors'), 'clip'), { config: TINY_CLIP });
    const chunked = await CLIPTextModel.load(rt, fixtureSource(loadFixture('clip.safetensors'), 'clip'), { config: TINY_CLIP, maxChunkBytes: 1 << 20 });
    try {
      // default: the 6.3 MB tiny table is one chunk; 1 MiB → 8192 rows per chunk, 7 chunks, the last partial
      expect(whole.tokenEmbedding.chunks.length).toBe(1);
      expect(chunked.tokenEmbedding.chunks.length).toBe(7);
      expect(chunked.tokenEmbedding.chunks.map((c) => c.shape[0])).toEqual([8192, 8192, 8192, 8192, 8192, 8192, 49408 - 6 * 8192]);
      for (const c of chunked.tokenEmbedding.chunks) expect(c.byteLength).toBeLessThanOrEqual(1 << 20);
      // the prompts use ids from the first chunk (320…) and the last (49406, 49407)
      const used = new Set([...ids()].map((i) => Math.floor(i / 8192)));
      expect(used.has(0) && used.has(6)).toBe(true);
      const a = await encodeAll(rt, chunked);
      const b = await encodeAll(rt, whole);
      expect(compare(a, b, { atol: 0, rtol: 0 }).bad).toBe(0);
      expectClose(a, fx('clip.io.safetensors', 'last_hidden_state').data, tolerance('clip', 'last_hidden_state'), 'chunked');
    } finally {
      whole.dispose();
      chunked.dispose();
    }
  });

  it('the sd15 preset builds the 196 tensors / 123,060,480 parameters of the SD-1.5 text encoder', () => {
    const shapes = recordShapes((w) => new CLIPTextModel(w, CLIPTextConfig.sd15));
    expect(shapes.size).toBe(196);
    expect([...shapes.values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0)).toBe(123060480);
    expect(shapes.get('text_model.encoder.layers.11.mlp.fc1.weight')).toEqual([3072, 768]);
  });

  it('SD-1.5 table at the default chunk size fits WebGPU default limits', () => {
    const rows = Math.floor(TOKEN_CHUNK_BYTES / (768 * 4));
    const chunks = Math.ceil(49408 / rows);
    expect(chunks).toBe(3);
    expect(rows * 768 * 4).toBeLessThanOrEqual(128 * 2 ** 20);
  });

  it('single-file names (cond_stage_model.transformer.*), position_ids and foreign keys are handled', async () => {
    const src = renamedSource((k) => `cond_stage_model.transformer.${k}`, [
      ['cond_stage_model.transformer.text_model.embeddings.position_ids', { dtype: 'i64', shape: [1, 77], data: new BigInt64Array(77) }],
      ['model.diffusion_model.conv_in.weight', { dtype: 'f32', shape: [2], data: new Float32Array(2) }],
      ['first_stage_model.decoder.conv_in.bias', { dtype: 'f32', shape: [2], data: new Float32Array(2) }],
    ]);
    const clip = await CLIPTextModel.load(rt, src, { config: TINY_CLIP, maxChunkBytes: 2 << 20 });
    try {
      expectClose(await encodeAll(rt, clip), fx('clip.io.safetensors', 'last_hidden_state').data, tolerance('clip', 'last_hidden_state'), 'single-file');
    } finally {
      clip.dispose();
    }
  });

  it('f16 weight storage (token table stays f32) stays close to f32', async () => {
    const f32m = await CLIPTextModel.load(rt, fixtureSource(loadFixture('clip.safetensors'), 'clip'), { config: TINY_CLIP });
    const f16m = await CLIPTextModel.load(rt, fixtureSource(loadFixture('clip.safetensors'), 'clip'), { config: TINY_CLIP, dtype: 'f16' });
    try {
      expect(f16m.layers[0]!.qProj.weight.dtype).toBe('f16');
      expect(f16m.tokenEmbedding.chunks[0]!.dtype).toBe('f32');
      expect(f16m.bytes).toBeLessThan(f32m.bytes);
      const a = await encodeAll(rt, f16m);
      const b = await encodeAll(rt, f32m);
      // f16 rounding of every matrix (rel. 2^-11) through 3 layers
      const rep = expectClose(a, b, { atol: 2e-2, rtol: 2e-2 }, 'f16 vs f32');
      expect(rep.maxAbs).toBeGreaterThan(0);
    } finally {
      f32m.dispose();
      f16m.dispose();
    }
  });

  it('after device loss, restore() brings back the chunked tables and the other weights', async () => {
    const own = await createRuntime({ gpu: gpu!, log: () => {} });
    try {
      const clip = await CLIPTextModel.load(own, fixtureSource(loadFixture('clip.safetensors'), 'clip'), { config: TINY_CLIP, maxChunkBytes: 1 << 20 });
      const before = await encodeAll(own, clip);
      own.device.destroy();
      await new Promise((r) => setTimeout(r, 10));
      expect(own.isLost).toBe(true);
      await own.restore();
      expect(await encodeAll(own, clip)).toEqual(before);
      clip.dispose();
    } finally {
      own.destroy();
    }
  });

  it('bad ids, bad options and bad weights are typed errors before GPU work', async () => {
    const clip = await CLIPTextModel.load(rt, fixtureSource(loadFixture('clip.safetensors'), 'clip'), { config: TINY_CLIP });
    try {
      const before = rt.dispatches;
      expect(() => clip.encode(new Int32Array(76))).toThrow(ShapeError);
      expect(() => clip.encode(new Int32Array(0))).toThrow(ShapeError);
      const bad = ids().slice(0, 77);
      bad[5] = 49408;
      expect(() => clip.encode(bad)).toThrow(ArgumentError);
      bad[5] = -1;
      expect(() => clip.encode(bad)).toThrow(/outside \[0, 49408\)/);
      expect(() => clip.encode([1.5, ...new Array(76).fill(0)])).toThrow(ArgumentError);
      expect(() => clip.encode('a cat' as unknown as Int32Array)).toThrow(ArgumentError);
      expect(rt.dispatches).toBe(before);
    } finally {
      clip.dispose();
    }
    const src = () => fixtureSource(loadFixture('clip.safetensors'), 'clip');
    const live = rt.memory().liveBytes;
    await expect(CLIPTextModel.load(rt, src(), { config: TINY_CLIP, maxChunkBytes: 64 })).rejects.toThrow(ArgumentError);
    await expect(CLIPTextModel.load(rt, src(), { config: { ...TINY_CLIP, vocabSize: 1000 } })).rejects.toThrow(WeightError);
    await expect(CLIPTextModel.load(rt, src(), { config: { ...TINY_CLIP, numHiddenLayers: 2 } })).rejects.toThrow(/does not use .*layers\.2/);
    await expect(CLIPTextModel.load(rt, src(), { config: { ...TINY_CLIP, numHiddenLayers: 4 } })).rejects.toThrow(/layers\.3.*missing/);
    await expect(CLIPTextModel.load(rt, src(), { config: { ...TINY_CLIP, intermediateSize: 38 } })).rejects.toThrow(/fc1\.weight/);
    await expect(CLIPTextModel.load(rt, renamedSource((k) => `x.${k}`), { config: TINY_CLIP })).rejects.toThrow(/token_embedding\.weight.*not found/);
    await expect(CLIPTextModel.load(rt, src(), { config: { ...TINY_CLIP, hiddenAct: 'relu' as 'gelu' } })).rejects.toThrow(ConfigError);
    // a failed load leaves nothing allocated
    expect(rt.memory().liveBytes).toBe(live);
  });
});
