import { describe, expect, test } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, writeSafetensors, type HostTensor, type TensorSource } from '../../src/io/safetensors.js';
import { loadWeights } from '../../src/io/weights.js';
import { fileSource } from '../../src/node/fs-source.js';
import { f16ArrayToF32, f32ArrayToF16 } from '../../src/runtime/dtype.js';
import { AbortError, ArgumentError, WeightError } from '../../src/runtime/errors.js';
import { testRuntime } from '../helpers/device.js';
import { FIXTURES, loadFixture } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';

type Entry = { name: string; tensor: HostTensor };
const f32 = (name: string, shape: number[], seed: number): Entry => ({ name, tensor: { dtype: 'f32', shape, data: randn(shape.reduce((a, b) => a * b, 1), seed) } });

function file(entries: Entry[], name = 'w.safetensors'): Promise<SafetensorsFile> {
  return SafetensorsFile.open(bytesSource(writeSafetensors(entries), name));
}

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<Error> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

const model = [
  f32('conv_in.weight', [8, 4, 3, 3], 1),
  f32('conv_in.bias', [8], 2),
  f32('down_blocks.0.resnets.0.norm1.weight', [8], 3),
  f32('down_blocks.0.resnets.0.conv1.weight', [8, 8, 3, 3], 4),
  f32('mid.attn_1.q.weight', [8, 8, 1, 1], 5),
  f32('proj.weight', [6, 8], 6),
];

describe('loadWeights → WeightScope', () => {
  test('values, dtypes, pp() paths and GPU bytes', async () => {
    const rt = await testRuntime();
    const before = rt.memory().liveBytes;
    const w = await loadWeights(rt, await file(model));
    const conv = w.pp('down_blocks').pp(0).pp('resnets').pp(1 - 1).get('conv1.weight', [8, 8, 3, 3]);
    expect(conv.dtype).toBe('f32');
    expect(Array.from(await rt.read(conv))).toEqual(Array.from(model[3]!.tensor.data as Float32Array));
    expect(w.pp('down_blocks').pp(0).prefix).toBe('down_blocks.0.');
    const expectedBytes = model.reduce((a, e) => a + e.tensor.data.byteLength, 0);
    expect(w.bytes).toBe(expectedBytes);
    expect(rt.memory().liveBytes - before).toBeGreaterThanOrEqual(expectedBytes);
    w.dispose();
    expect(rt.memory().liveBytes).toBe(before);
  });

  test('missing key → WeightError with the full key; wrong shape → WeightError with both shapes', async () => {
    const rt = await testRuntime();
    const w = await loadWeights(rt, await file(model));
    const b = w.pp('down_blocks').pp(0).pp('resnets').pp(0);
    const missing = await errorOf(() => b.get('norm2.weight', [8]));
    expect(missing).toBeInstanceOf(WeightError);
    expect((missing as WeightError).key).toBe('down_blocks.0.resnets.0.norm2.weight');
    expect(missing.message).toContain("weight 'down_blocks.0.resnets.0.norm2.weight': missing");
    const shape = await errorOf(() => b.get('conv1.weight', [8, 4, 3, 3]));
    expect(shape).toBeInstanceOf(WeightError);
    expect(shape.message).toMatch(/down_blocks\.0\.resnets\.0\.conv1\.weight.*expected shape \[8, 4, 3, 3\].*\[8, 8, 3, 3\]/);
    // Same element count but a different layout is still an error for get().
    const layout = await errorOf(() => w.get('mid.attn_1.q.weight', [8, 8]));
    expect(layout.message).toMatch(/getReshaped/);
    expect(b.optional('norm2.weight')).toBeUndefined();
    expect(b.optional('norm1.weight', [8])?.shape).toEqual([8]);
    expect(() => b.optional('norm1.weight', [9])).toThrow(WeightError);
    expect(b.has('conv1.weight')).toBe(true);
    expect(b.has('conv2.weight')).toBe(false);
    w.dispose();
  });

  test('getReshaped views 1×1 conv weights as Linear and back, sharing the buffer', async () => {
    const rt = await testRuntime();
    const w = await loadWeights(rt, await file(model));
    const lin = w.getReshaped('mid.attn_1.q.weight', [8, 8]);
    expect(lin.shape).toEqual([8, 8]);
    expect(Array.from(await rt.read(lin))).toEqual(Array.from(model[4]!.tensor.data as Float32Array));
    expect(w.getReshaped('mid.attn_1.q.weight', [8, 8])).toBe(lin);
    const conv = w.getReshaped('proj.weight', [6, 8, 1, 1]);
    expect(conv.shape).toEqual([6, 8, 1, 1]);
    expect(w.getReshaped('proj.weight', [6, 8])).toBe(w.get('proj.weight'));
    expect(() => w.getReshaped('proj.weight', [6, 8, 2])).toThrow(/48 elements|\(48\)/);
    const mem = rt.memory().liveBytes;
    w.dispose();
    expect(rt.memory().liveBytes).toBeLessThan(mem);
    expect(lin.isDisposed).toBe(true);
    expect(() => w.get('proj.weight')).toThrow(/disposed/);
  });

  test('weights survive the rt.scope they were loaded in', async () => {
    const rt = await testRuntime();
    const src = await file(model);
    const w = await rt.scopeAsync(() => loadWeights(rt, src));
    const t = rt.scope(() => w.getReshaped('proj.weight', [6, 8, 1, 1]));
    expect(t.isDisposed).toBe(false);
    expect((await rt.read(w.get('conv_in.bias'))).length).toBe(8);
    w.dispose();
  });

  test('unused keys are listed by full name; assertAllUsed names them', async () => {
    const rt = await testRuntime();
    const w = await loadWeights(rt, await file(model));
    w.get('conv_in.weight');
    w.get('conv_in.bias');
    w.pp('down_blocks').pp(0).pp('resnets').pp(0).get('norm1.weight');
    expect(w.unused()).toEqual(['down_blocks.0.resnets.0.conv1.weight', 'mid.attn_1.q.weight', 'proj.weight']);
    expect(w.pp('mid').unused()).toEqual(['mid.attn_1.q.weight']);
    const e = await errorOf(() => w.assertAllUsed('TinyModel'));
    expect(e).toBeInstanceOf(WeightError);
    expect(e.message).toMatch(/TinyModel does not use 3 loaded weights: down_blocks\.0\.resnets\.0\.conv1\.weight, mid\.attn_1\.q\.weight, proj\.weight/);
    expect(w.keysUnder('down_blocks.0.')).toEqual(['down_blocks.0.resnets.0.conv1.weight', 'down_blocks.0.resnets.0.norm1.weight']);
    expect(w.pp('down_blocks').keysUnder()).toEqual(['0.resnets.0.conv1.weight', '0.resnets.0.norm1.weight']);
    w.get('down_blocks.0.resnets.0.conv1.weight');
    w.getReshaped('mid.attn_1.q.weight', [8, 8]);
    w.get('proj.weight');
    expect(() => w.assertAllUsed('TinyModel')).not.toThrow();
    w.dispose();
  });

  test('rename maps and drops keys; filter sees the renamed key', async () => {
    const rt = await testRuntime();
    const src = await file([...model.map((e) => ({ ...e, name: 'model.net.' + e.name })), f32('ema_model.ema_model.net.proj.weight', [6, 8], 9), { name: 'diffusion.step', tensor: { dtype: 'i64', shape: [], data: BigInt64Array.from([3n]) } }]);
    const seen: string[] = [];
    const w = await loadWeights(rt, src, {
      rename: (k) => (k.startsWith('model.net.') ? k.slice('model.net.'.length) : null),
      filter: (k) => (seen.push(k), !k.startsWith('mid.')),
    });
    expect(seen).toContain('proj.weight');
    expect(seen.every((k) => !k.startsWith('model.'))).toBe(true);
    expect(w.keysUnder().sort()).toEqual(model.map((e) => e.name).filter((k) => !k.startsWith('mid.')).sort());
    w.dispose();
    // Without a rename the I64 buffer cannot be a weight: the error names it and nothing stays allocated.
    const before = rt.memory().liveBytes;
    const e = await errorOf(loadWeights(rt, src));
    expect(e).toBeInstanceOf(WeightError);
    expect(e.message).toMatch(/weight 'diffusion\.step': dtype I64 .*cannot be a weight/);
    expect(rt.memory().liveBytes).toBe(before);
    // Two source keys renamed onto one model key.
    const dup = await errorOf(loadWeights(rt, src, { rename: (k) => (k.endsWith('proj.weight') ? 'proj.weight' : null) }));
    expect(dup.message).toMatch(/weight 'proj\.weight': loaded twice/);
    expect(rt.memory().liveBytes).toBe(before);
  });

  test("dtype 'f16' stores ≥2-D weights as f16 and keeps 1-D ones f32; 'auto' follows the file", async () => {
    const rt = await testRuntime();
    const w16 = await loadWeights(rt, await file(model), { dtype: 'f16' });
    const conv = w16.get('conv_in.weight');
    expect(conv.dtype).toBe('f16');
    expect(w16.get('conv_in.bias').dtype).toBe('f32');
    const want = f16ArrayToF32(f32ArrayToF16(model[0]!.tensor.data as Float32Array));
    expect(Array.from(await rt.read(conv))).toEqual(Array.from(want));
    const f32Bytes = model.reduce((a, e) => a + e.tensor.data.byteLength, 0);
    expect(w16.bytes).toBeLessThan(f32Bytes);
    w16.dispose();
  });

  test("vae_fp16: F16 in the file → f16 on the GPU under 'auto', f32 under 'f32'; values equal the fixture reader's", async () => {
    const rt = await testRuntime();
    const vae = await SafetensorsFile.open(await fileSource(FIXTURES + 'vae_fp16.safetensors'));
    const auto = await loadWeights(rt, vae);
    expect(auto.get('encoder.conv_in.weight').dtype).toBe('f16');
    expect(auto.get('encoder.conv_in.bias').dtype).toBe('f32');
    const got = await rt.read(auto.get('encoder.conv_in.weight'));
    const ref = loadFixture('vae_fp16.safetensors').get('encoder.conv_in.weight')!;
    expect(Array.from(got)).toEqual(Array.from(ref.data));
    const full = await loadWeights(rt, vae, { dtype: 'f32' });
    expect(full.get('encoder.conv_in.weight').dtype).toBe('f32');
    expect(full.bytes).toBeGreaterThan(auto.bytes);
    auto.dispose();
    full.dispose();
  });

  test('BF16 weights load as f32 under auto', async () => {
    const rt = await testRuntime();
    const bits = Uint16Array.from([0x3f80, 0xc020, 0x3e00, 0x4100]); // 1, -2.5, 0.125, 8
    const w = await loadWeights(rt, await file([{ name: 'm', tensor: { dtype: 'bf16', shape: [2, 2], data: bits } }]));
    expect(w.get('m').dtype).toBe('f32');
    expect(Array.from(await rt.read(w.get('m')))).toEqual([1, -2.5, 0.125, 8]);
    w.dispose();
  });

  test('NaN/Inf weights → WeightError naming the key (unless checkFinite: false); f16 overflow too', async () => {
    const rt = await testRuntime();
    const bad = f32('blocks.1.ff.weight', [4, 4], 7);
    (bad.tensor.data as Float32Array)[5] = NaN;
    const src = await file([f32('blocks.0.ff.weight', [4, 4], 8), bad]);
    const before = rt.memory().liveBytes;
    const e = await errorOf(loadWeights(rt, src));
    expect(e).toBeInstanceOf(WeightError);
    expect(e.message).toMatch(/weight 'blocks\.1\.ff\.weight': holds NaN at flat index 5/);
    expect(rt.memory().liveBytes).toBe(before);
    const ok = await loadWeights(rt, src, { checkFinite: false });
    expect(ok.keysUnder()).toHaveLength(2);
    ok.dispose();

    const inf16 = await file([{ name: 'h', tensor: { dtype: 'f16', shape: [2, 1], data: Uint16Array.from([0x3c00, 0xfc00]) } }]);
    await expect(loadWeights(rt, inf16)).rejects.toThrow(/weight 'h': holds NaN or Inf at flat index 1/);
    const big = await file([{ name: 'g', tensor: { dtype: 'f32', shape: [1, 2], data: Float32Array.from([1, 1e6]) } }]);
    await expect(loadWeights(rt, big, { dtype: 'f16' })).rejects.toThrow(/weight 'g': overflows float16/);
  });

  test('several sources, progress reports and abort', async () => {
    const rt = await testRuntime();
    const a = await file(model.slice(0, 3), 'a.safetensors');
    const b = await file(model.slice(3), 'b.safetensors');
    const progress: [number, number][] = [];
    const w = await loadWeights(rt, [a, b], { onProgress: (l, t) => progress.push([l, t]) });
    expect(w.keysUnder()).toHaveLength(model.length);
    const total = model.reduce((s, e) => s + e.tensor.data.byteLength, 0);
    expect(progress).toHaveLength(model.length);
    expect(progress[progress.length - 1]).toEqual([total, total]);
    expect(progress.every(([l], i) => i === 0 || l > progress[i - 1]![0])).toBe(true);
    w.dispose();

    const dup = await errorOf(loadWeights(rt, [a, a]));
    expect(dup.message).toMatch(/loaded twice: from 'conv_in\.weight' in a\.safetensors/);

    const ac = new AbortController();
    const before = rt.memory().liveBytes;
    const p = loadWeights(rt, [a, b], { signal: ac.signal, onProgress: () => ac.abort() });
    await expect(p).rejects.toThrow(AbortError);
    expect(rt.memory().liveBytes).toBe(before);
  });

  test('a plain TensorSource without readMany works (e.g. a checkpoint reader)', async () => {
    const rt = await testRuntime();
    const data = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const src: TensorSource = {
      name: 'plain',
      keys: () => ['w'],
      info: () => ({ dtype: 'F32', shape: [2, 3] }),
      read: async () => ({ dtype: 'f32', shape: [2, 3], data }),
    };
    const w = await loadWeights(rt, src);
    expect(Array.from(await rt.read(w.get('w', [2, 3])))).toEqual([1, 2, 3, 4, 5, 6]);
    w.dispose();
    const lying: TensorSource = { ...src, read: async () => ({ dtype: 'f32', shape: [3, 2], data }) };
    await expect(loadWeights(rt, lying)).rejects.toThrow(/source gave shape \[3, 2\], its header says \[2, 3\]/);
  });

  test('bad options and bad pp() names are ArgumentErrors', async () => {
    const rt = await testRuntime();
    const src = await file(model);
    await expect(loadWeights(rt, src, { dtype: 'f64' as 'f32' })).rejects.toThrow(ArgumentError);
    await expect(loadWeights(rt, [])).rejects.toThrow(ArgumentError);
    const w = await loadWeights(rt, src);
    expect(() => w.pp('')).toThrow(ArgumentError);
    expect(() => w.pp(-1)).toThrow(ArgumentError);
    expect(() => w.get('proj.weight', [6, -8])).toThrow(ArgumentError);
    w.dispose();
  });

  test('a real fixture model loads whole and every tensor matches the file', async () => {
    const rt = await testRuntime();
    const f = await SafetensorsFile.open(await fileSource(FIXTURES + 'vae.safetensors'));
    const w = await loadWeights(rt, f);
    const ref = loadFixture('vae.safetensors');
    expect(w.keysUnder().sort()).toEqual([...ref.keys()].sort());
    for (const k of ['encoder.conv_in.weight', 'decoder.conv_out.bias', 'encoder.mid_block.attentions.0.to_q.weight']) {
      const t = ref.get(k)!;
      expect(Array.from(await rt.read(w.get(k, t.shape)))).toEqual(Array.from(t.data));
    }
    w.dispose();
  });
});
