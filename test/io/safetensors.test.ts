import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { bytesSource, type ByteSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, writeSafetensors, type HostTensor } from '../../src/io/safetensors.js';
import { fileSource } from '../../src/node/fs-source.js';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToF16 } from '../../src/runtime/dtype.js';
import { ArgumentError, IOError, SafetensorsError } from '../../src/runtime/errors.js';
import { FIXTURES, loadFixture } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';

const fixtureFiles = readdirSync(FIXTURES).filter((f) => f.endsWith('.safetensors')).sort();

function asF32(t: HostTensor): Float32Array | Int32Array {
  if (t.dtype === 'f32') return t.data as Float32Array;
  if (t.dtype === 'f16') return f16ArrayToF32(t.data as Uint16Array);
  if (t.dtype === 'bf16') return bf16ArrayToF32(t.data as Uint16Array);
  if (t.dtype === 'i32') return t.data as Int32Array;
  throw new Error(`no float view of ${t.dtype}`);
}

/** A bf16 encoding by truncation of an f32's upper half, enough to make test data. */
function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (v) => v >>> 16);
}

describe('safetensors: fixture files', () => {
  test('there are fixture files to read', () => {
    expect(fixtureFiles.length).toBeGreaterThanOrEqual(10);
  });

  test.each(fixtureFiles)('%s: header parses and tensors match the test-side reader', async (name) => {
    const f = await SafetensorsFile.open(await fileSource(FIXTURES + name));
    const expected = loadFixture(name);
    const keys = f.keys();
    expect(keys.length).toBeGreaterThan(0);
    // The test-side reader decodes F32/F16/I32; every one of those must be in our key list.
    for (const k of expected.keys()) expect(keys).toContain(k);
    // A few tensors spread over the file: first, middle, last readable ones.
    const comparable = keys.filter((k) => expected.has(k));
    const picks = [...new Set([comparable[0], comparable[comparable.length >> 1], comparable[comparable.length - 1]])].filter(Boolean) as string[];
    for (const k of picks) {
      const host = await f.read(k);
      const want = expected.get(k)!;
      expect(host.shape).toEqual(want.shape);
      expect(f.info(k).shape).toEqual(want.shape);
      expect(Array.from(asF32(host))).toEqual(Array.from(want.data));
    }
  });

  test('vae_fp16: F16 tensors come back as raw bits that decode to the reference values', async () => {
    const f = await SafetensorsFile.open(await fileSource(FIXTURES + 'vae_fp16.safetensors'));
    const expected = loadFixture('vae_fp16.safetensors');
    let checked = 0;
    for (const k of f.keys()) {
      expect(f.info(k).dtype).toBe('F16');
      const t = await f.read(k);
      expect(t.dtype).toBe('f16');
      expect(t.data).toBeInstanceOf(Uint16Array);
      expect(Array.from(f16ArrayToF32(t.data as Uint16Array))).toEqual(Array.from(expected.get(k)!.data));
      checked++;
    }
    expect(checked).toBe(f.keys().length);
  });

  test('cfm_trainer: BOOL and I64 scalars are readable as host data', async () => {
    const f = await SafetensorsFile.open(await fileSource(FIXTURES + 'cfm_trainer.safetensors'));
    const dtypes = new Set(f.keys().map((k) => f.info(k).dtype));
    expect(dtypes.has('F32')).toBe(true);
    for (const k of f.keys()) {
      const d = f.info(k).dtype;
      if (d !== 'BOOL' && d !== 'I64') continue;
      const t = await f.read(k);
      expect(t.dtype).toBe(d === 'BOOL' ? 'bool' : 'i64');
      expect(t.data).toBeInstanceOf(d === 'BOOL' ? Uint8Array : BigInt64Array);
    }
  });

  test('tensorInfo gives absolute offsets that point at the tensor bytes', async () => {
    const bytes = readFileSync(FIXTURES + 'clip.safetensors');
    const f = await SafetensorsFile.open(bytesSource(new Uint8Array(bytes), 'clip'));
    const k = 'text_model.final_layer_norm.weight';
    const i = f.tensorInfo(k);
    const manual = new Float32Array(bytes.buffer.slice(bytes.byteOffset + i.begin, bytes.byteOffset + i.end));
    expect(Array.from((await f.read(k)).data as Float32Array)).toEqual(Array.from(manual));
    expect(i.begin).toBeGreaterThanOrEqual(f.dataOffset);
  });
});

describe('safetensors: writer', () => {
  const a = randn(2 * 3 * 5, 1);
  const tensors: { name: string; tensor: HostTensor }[] = [
    { name: 'w.f32', tensor: { dtype: 'f32', shape: [2, 3, 5], data: a } },
    { name: 'w.f16', tensor: { dtype: 'f16', shape: [7], data: f32ArrayToF16(randn(7, 2)) } },
    { name: 'w.bf16', tensor: { dtype: 'bf16', shape: [3, 3], data: toBf16(randn(9, 3)) } },
    { name: 'ids', tensor: { dtype: 'i32', shape: [4], data: Int32Array.from([1, -2, 3, 49407]) } },
    { name: 'step', tensor: { dtype: 'i64', shape: [], data: BigInt64Array.from([123456789012n]) } },
    { name: 'flag', tensor: { dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) } },
    { name: 'empty', tensor: { dtype: 'f32', shape: [0, 4], data: new Float32Array(0) } },
  ];

  test('round trip: every dtype, metadata, header padded to 8 bytes', async () => {
    const bytes = writeSafetensors(tensors, { format: 'pt', note: 'ünïcødé' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const f = await SafetensorsFile.open(bytesSource(bytes, 'rt.safetensors'));
    expect(f.metadata).toEqual({ format: 'pt', note: 'ünïcødé' });
    expect(f.keys()).toEqual(tensors.map((t) => t.name));
    for (const { name, tensor } of tensors) {
      const got = await f.read(name);
      expect(got.dtype).toBe(tensor.dtype);
      expect(got.shape).toEqual(tensor.shape);
      expect(got.data.constructor).toBe(tensor.data.constructor);
      expect(Array.from(got.data as ArrayLike<number>)).toEqual(Array.from(tensor.data as ArrayLike<number>));
    }
  });

  test('BF16 decodes to the values whose upper halves were stored', async () => {
    const src = Float32Array.from([1, -2.5, 0.15625, 3e38, -1e-30, 0]);
    const bytes = writeSafetensors([{ name: 'x', tensor: { dtype: 'bf16', shape: [6], data: toBf16(src) } }]);
    const f = await SafetensorsFile.open(bytesSource(bytes));
    expect(f.info('x').dtype).toBe('BF16');
    const got = bf16ArrayToF32((await f.read('x')).data as Uint16Array);
    // Truncation to 8 mantissa bits: relative error below 2^-7.
    for (let i = 0; i < src.length; i++) expect(Math.abs(got[i]! - src[i]!)).toBeLessThanOrEqual(Math.abs(src[i]!) * 2 ** -7);
    expect(Array.from(got.slice(0, 3))).toEqual([1, -2.5, 0.15625]);
  });

  test('readMany yields every asked tensor once, byte-identical to read()', async () => {
    const f = await SafetensorsFile.open(bytesSource(writeSafetensors(tensors)));
    const ask = ['flag', 'w.f32', 'ids', 'empty'];
    const seen = new Map<string, HostTensor>();
    for await (const [k, t] of f.readMany(ask)) {
      expect(seen.has(k)).toBe(false);
      seen.set(k, t);
    }
    expect([...seen.keys()].sort()).toEqual([...ask].sort());
    for (const k of ask) expect(Array.from(seen.get(k)!.data as ArrayLike<number>)).toEqual(Array.from((await f.read(k)).data as ArrayLike<number>));
  });

  test("hostile key names ('__proto__', unicode) round-trip as plain keys", async () => {
    const one = (name: string) => ({ name, tensor: { dtype: 'f32' as const, shape: [1], data: Float32Array.from([name.length]) } });
    const names = ['__proto__', 'constructor', 'ключ.weight', ''.padEnd(300, 'k')];
    const f = await SafetensorsFile.open(bytesSource(writeSafetensors(names.map(one))));
    expect(f.keys()).toEqual(names);
    for (const n of names) expect(Array.from((await f.read(n)).data as Float32Array)).toEqual([n.length]);
  });

  test('bad writer input is an ArgumentError', () => {
    const t = tensors[0]!.tensor;
    expect(() => writeSafetensors([{ name: 'a', tensor: t }, { name: 'a', tensor: t }])).toThrow(ArgumentError);
    expect(() => writeSafetensors([{ name: '__metadata__', tensor: t }])).toThrow(ArgumentError);
    expect(() => writeSafetensors([{ name: 'a', tensor: { ...t, shape: [2, 3] } }])).toThrow(/30 values for shape \[2, 3\]/);
    expect(() => writeSafetensors([{ name: 'a', tensor: { dtype: 'f16', shape: [30], data: t.data } }])).toThrow(/needs a Uint16Array/);
    expect(() => writeSafetensors([], { a: 1 as unknown as string })).toThrow(ArgumentError);
  });
});

describe('safetensors: malformed corpus', () => {
  const dir = FIXTURES + 'malformed/';
  const manifest = JSON.parse(readFileSync(dir + 'manifest.json', 'utf8')) as { file: string; phase: 'open' | 'read'; message: string }[];

  test('every corpus file is in the manifest and vice versa', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
    expect(files).toEqual(manifest.map((m) => m.file).sort());
    expect(files.length).toBeGreaterThanOrEqual(20);
  });

  test.each(manifest)('$file → SafetensorsError at $phase: "$message"', async ({ file, phase, message }) => {
    const src = await fileSource(dir + file);
    let err: unknown;
    try {
      const f = await SafetensorsFile.open(src);
      if (phase === 'read') {
        expect(f.keys().length).toBeGreaterThan(0);
        for (const k of f.keys()) await f.read(k);
      }
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SafetensorsError);
    const msg = (err as Error).message;
    expect(msg).toContain(message);
    expect(msg).toContain(dir + file); // names the file
    expect((err as SafetensorsError).file).toBe(dir + file);
  });

  test('an unknown key is a SafetensorsError naming it', async () => {
    const f = await SafetensorsFile.open(bytesSource(writeSafetensors([{ name: 'a', tensor: { dtype: 'f32', shape: [1], data: new Float32Array(1) } }]), 'one'));
    await expect(f.read('b')).rejects.toThrow(/safetensors 'one': no tensor 'b'/);
    expect(() => f.info('b')).toThrow(SafetensorsError);
  });

  test('a source that returns short reads is an IOError', async () => {
    const good = bytesSource(writeSafetensors([{ name: 'a', tensor: { dtype: 'f32', shape: [4], data: new Float32Array(4) } }]), 'short');
    const lying: ByteSource = { name: 'short', size: good.size, read: async (o, n) => (await good.read(o, n)).subarray(0, Math.max(0, n - 1)) };
    await expect(SafetensorsFile.open(lying)).rejects.toThrow(IOError);
  });

  test('the header is parsed without reading tensor data', async () => {
    const big = new Float32Array(1 << 16);
    const bytes = writeSafetensors([{ name: 'x', tensor: { dtype: 'f32', shape: [1 << 16], data: big } }]);
    const inner = bytesSource(bytes);
    let served = 0;
    const counting: ByteSource = { name: 'c', size: inner.size, read: (o, n, s) => ((served += n), inner.read(o, n, s)) };
    const f = await SafetensorsFile.open(counting);
    expect(served).toBe(f.dataOffset);
    await f.read('x');
    expect(served).toBe(bytes.byteLength);
  });
});
