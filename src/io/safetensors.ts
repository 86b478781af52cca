/**
 * safetensors: an 8-byte little-endian header length, a JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { string: string } }`, then the raw
 * little-endian tensor bytes (offsets relative to the end of the header). The header is parsed and fully
 * validated on open without touching tensor data; tensors are read one at a time.
 */
import { ArgumentError, IOError, SafetensorsError, fmtBytes, throwIfAborted } from '../runtime/errors.js';
import { numel } from '../runtime/tensor.js';
import type { ByteSource } from './byte-source.js';

export type StDtype = 'F32' | 'F16' | 'BF16' | string;

/** One header entry; `begin`/`end` are absolute byte offsets in the source. */
export interface TensorInfo {
  dtype: StDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A tensor in JS memory. f16/bf16 hold raw bits. */
export interface HostTensor {
  dtype: 'f32' | 'f16' | 'bf16' | 'i32' | 'i64' | 'bool';
  shape: number[];
  data: Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;
}

/** Anything that can hand out named tensors: safetensors files, PyTorch checkpoints, test doubles. */
export interface TensorSource {
  readonly name: string;
  keys(): string[];
  info(key: string): { dtype: string; shape: number[] };
  read(key: string, signal?: AbortSignal): Promise<HostTensor>;
  /**
   * Optional batched read: yields the given tensors, in any order, reading byte-adjacent ones together.
   * loadWeights uses it when present.
   */
  readMany?(keys: string[], signal?: AbortSignal): AsyncIterable<[string, HostTensor]>;
  /** Optional: the tensor's stored size in bytes (for progress reports). */
  byteLength?(key: string): number;
}

/** The header may not exceed this: real headers are well under 1 MiB, and the JSON is held in memory. */
export const MAX_HEADER_BYTES = 100 * 2 ** 20;

/** Bytes per element of every dtype the format defines (readable or not), so sizes are always checked. */
const ITEM_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
};

const HOST_DTYPE: Record<string, HostTensor['dtype']> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', I64: 'i64', BOOL: 'bool' };
const ST_DTYPE: Record<HostTensor['dtype'], string> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', i64: 'I64', bool: 'BOOL' };

/** Bytes per element of a safetensors dtype, or undefined when the format does not define it. */
export function stDtypeBytes(dtype: string): number | undefined {
  return Object.prototype.hasOwnProperty.call(ITEM_BYTES, dtype) ? ITEM_BYTES[dtype] : undefined;
}

/** Coalesced reads stop growing at this size; one tensor larger than it is read alone. */
const BATCH_BYTES = 16 * 2 ** 20;

export class SafetensorsFile implements TensorSource {
  private constructor(
    private readonly src: ByteSource,
    private readonly entries: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
    /** Bytes of the 8-byte prefix plus the JSON header; tensor data starts here. */
    readonly dataOffset: number,
  ) {}

  get name(): string {
    return this.src.name;
  }

  /** Reads and validates the header; throws SafetensorsError naming the file and the fault. */
  static async open(src: ByteSource, signal?: AbortSignal): Promise<SafetensorsFile> {
    const file = src.name;
    const size = src.size;
    if (!Number.isSafeInteger(size) || size < 0) throw new IOError(file, `invalid source size ${size}`);
    if (size < 8) throw new SafetensorsError(file, `file is ${size} bytes, shorter than the 8-byte header length`);
    const prefix = await readExact(src, 0, 8, signal);
    const n64 = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
    if (n64 > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(file, `header length ${n64} is absurd (over ${fmtBytes(MAX_HEADER_BYTES)})`);
    }
    const n = Number(n64);
    if (8 + n > size) throw new SafetensorsError(file, `header length ${n} runs past the end of the file (${size} bytes)`);
    if (n < 2) throw new SafetensorsError(file, `header length ${n} is too short for a JSON object`);
    const raw = await readExact(src, 8, n, signal);
    const entries = new Map<string, TensorInfo>();
    const metadata = parseHeader(file, raw, 8 + n, size, entries);
    return new SafetensorsFile(src, entries, metadata, 8 + n);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** dtype, shape and absolute byte range of a tensor. */
  tensorInfo(key: string): TensorInfo {
    const e = this.entries.get(key);
    if (!e) throw new SafetensorsError(this.name, `no tensor '${key}'`);
    return { dtype: e.dtype, shape: [...e.shape], begin: e.begin, end: e.end };
  }

  info(key: string): { dtype: string; shape: number[] } {
    const { dtype, shape } = this.tensorInfo(key);
    return { dtype, shape };
  }

  byteLength(key: string): number {
    const e = this.tensorInfo(key);
    return e.end - e.begin;
  }

  async read(key: string, signal?: AbortSignal): Promise<HostTensor> {
    const e = this.entries.get(key);
    if (!e) throw new SafetensorsError(this.name, `no tensor '${key}'`);
    checkReadable(this.name, key, e);
    const bytes = await readExact(this.src, e.begin, e.end - e.begin, signal);
    return decode(e, bytes);
  }

  async *readMany(keys: string[], signal?: AbortSignal): AsyncIterable<[string, HostTensor]> {
    const list: [string, TensorInfo][] = [];
    for (const k of keys) {
      const e = this.entries.get(k);
      if (!e) throw new SafetensorsError(this.name, `no tensor '${k}'`);
      checkReadable(this.name, k, e);
      list.push([k, e]);
    }
    list.sort((a, b) => a[1].begin - b[1].begin);
    // Runs of byte-adjacent tensors become one read; the next run is fetched while the caller works on this one.
    const runs: [string, TensorInfo][][] = [];
    for (const item of list) {
      const run = runs[runs.length - 1];
      const last = run?.[run.length - 1]?.[1];
      if (run && last && last.end === item[1].begin && item[1].end - run[0]![1].begin <= BATCH_BYTES) run.push(item);
      else runs.push([item]);
    }
    const fetchRun = (run: [string, TensorInfo][]): Promise<Uint8Array> => {
      const a = run[0]![1].begin;
      return readExact(this.src, a, run[run.length - 1]![1].end - a, signal);
    };
    let next: Promise<Uint8Array> | null = runs.length ? fetchRun(runs[0]!) : null;
    try {
      for (let i = 0; i < runs.length; i++) {
        const bytes = await next!;
        next = i + 1 < runs.length ? fetchRun(runs[i + 1]!) : null;
        const base = runs[i]![0]![1].begin;
        for (const [k, e] of runs[i]!) {
          throwIfAborted(signal, this.name);
          yield [k, decode(e, bytes.subarray(e.begin - base, e.end - base))];
        }
      }
    } finally {
      // An abandoned prefetch must not surface as an unhandled rejection.
      next?.catch(() => {});
    }
  }
}

function checkReadable(file: string, key: string, e: TensorInfo): void {
  if (!HOST_DTYPE[e.dtype]) {
    throw new SafetensorsError(file, `tensor '${key}': dtype ${e.dtype} is not supported (F32, F16, BF16; I32, I64, BOOL as host data)`);
  }
}

async function readExact(src: ByteSource, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
  const b = await src.read(offset, length, signal);
  if (!(b instanceof Uint8Array) || b.byteLength !== length) {
    throw new IOError(src.name, `short read: got ${b instanceof Uint8Array ? b.byteLength : typeof b} of ${length} bytes at offset ${offset}`);
  }
  return b;
}

function parseHeader(file: string, raw: Uint8Array, dataStart: number, size: number, out: Map<string, TensorInfo>): Record<string, string> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new SafetensorsError(file, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsError(file, `header is not a JSON object (got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json})`);
  }
  const dataBytes = size - dataStart;
  const metadata: Record<string, string> = {};
  for (const [key, v] of Object.entries(json as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SafetensorsError(file, '__metadata__ is not an object of strings');
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== 'string') throw new SafetensorsError(file, `__metadata__['${mk}'] is ${typeOf(mv)}, not a string`);
        metadata[mk] = mv;
      }
      continue;
    }
    const where = `tensor '${key}'`;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SafetensorsError(file, `${where}: entry is ${typeOf(v)}, not an object`);
    const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
    if (dtype === undefined) throw new SafetensorsError(file, `${where}: missing dtype`);
    if (typeof dtype !== 'string' || dtype === '') throw new SafetensorsError(file, `${where}: dtype is ${typeOf(dtype)}, not a string`);
    if (shape === undefined) throw new SafetensorsError(file, `${where}: missing shape`);
    if (!Array.isArray(shape)) throw new SafetensorsError(file, `${where}: shape is ${typeOf(shape)}, not an array`);
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        throw new SafetensorsError(file, `${where}: shape [${shape.map(String).join(', ')}] has a dimension that is not a non-negative integer`);
      }
    }
    if (offs === undefined) throw new SafetensorsError(file, `${where}: missing data_offsets`);
    if (!Array.isArray(offs) || offs.length !== 2) throw new SafetensorsError(file, `${where}: data_offsets is ${typeOf(offs)}, not [begin, end]`);
    const [b, e] = offs as unknown[];
    if (typeof b !== 'number' || typeof e !== 'number' || !Number.isSafeInteger(b) || !Number.isSafeInteger(e) || b < 0 || e < 0) {
      throw new SafetensorsError(file, `${where}: data_offsets [${String(b)}, ${String(e)}] are not non-negative integers`);
    }
    if (e < b) throw new SafetensorsError(file, `${where}: data_offsets end ${e} is before begin ${b}`);
    if (e > dataBytes) {
      throw new SafetensorsError(file, `${where}: data_offsets [${b}, ${e}] run past the end of the data (${dataBytes} bytes after the header)`);
    }
    const item = stDtypeBytes(dtype);
    if (item !== undefined) {
      const count = numel(shape as number[]);
      // count * item is exact below 2^53; beyond that it cannot equal a real byte length anyway.
      if (count * item !== e - b) {
        throw new SafetensorsError(file, `${where}: shape [${(shape as number[]).join(', ')}] × ${dtype} is ${count * item} bytes but data_offsets [${b}, ${e}] span ${e - b}`);
      }
    }
    out.set(key, { dtype, shape: [...(shape as number[])], begin: dataStart + b, end: dataStart + e });
  }
  // Two tensors sharing bytes would alias; the format forbids it.
  const sorted = [...out.entries()].filter(([, t]) => t.end > t.begin).sort((x, y) => x[1].begin - y[1].begin);
  for (let i = 1; i < sorted.length; i++) {
    const [pk, p] = sorted[i - 1]!;
    const [ck, c] = sorted[i]!;
    if (c.begin < p.end) {
      throw new SafetensorsError(file, `tensors '${pk}' [${p.begin - dataStart}, ${p.end - dataStart}] and '${ck}' [${c.begin - dataStart}, ${c.end - dataStart}] overlap`);
    }
  }
  return metadata;
}

function typeOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Typed-array view over little-endian bytes (copied when misaligned for the element size). */
function decode(e: TensorInfo, bytes: Uint8Array): HostTensor {
  const dtype = HOST_DTYPE[e.dtype]!;
  const item = ITEM_BYTES[e.dtype]!;
  let b = bytes;
  if (b.byteOffset % item !== 0) b = b.slice();
  const n = b.byteLength / item;
  let data: HostTensor['data'];
  switch (dtype) {
    case 'f32': data = new Float32Array(b.buffer, b.byteOffset, n); break;
    case 'f16':
    case 'bf16': data = new Uint16Array(b.buffer, b.byteOffset, n); break;
    case 'i32': data = new Int32Array(b.buffer, b.byteOffset, n); break;
    case 'i64': data = new BigInt64Array(b.buffer, b.byteOffset, n); break;
    case 'bool': data = b; break;
  }
  return { dtype, shape: [...e.shape], data };
}

const ARRAY_FOR: Record<HostTensor['dtype'], Function> = {
  f32: Float32Array, f16: Uint16Array, bf16: Uint16Array, i32: Int32Array, i64: BigInt64Array, bool: Uint8Array,
};

/** Serialises tensors (in the given order) to a safetensors file; the header is padded to 8 bytes. */
export function writeSafetensors(tensors: { name: string; tensor: HostTensor }[], metadata?: Record<string, string>): Uint8Array<ArrayBuffer> {
  const where = 'writeSafetensors';
  // Null prototype: a tensor named '__proto__' must become a key, not replace the prototype.
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new ArgumentError(where, `metadata '${k}' is not a string`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const seen = new Set<string>();
  for (const { name, tensor } of tensors) {
    if (typeof name !== 'string' || name === '' || name === '__metadata__') throw new ArgumentError(where, `invalid tensor name '${String(name)}'`);
    if (seen.has(name)) throw new ArgumentError(where, `tensor '${name}' given twice`);
    seen.add(name);
    const ctor = ARRAY_FOR[tensor.dtype];
    if (!ctor) throw new ArgumentError(where, `tensor '${name}': unknown dtype ${String(tensor.dtype)}`);
    if (!(tensor.data instanceof ctor)) throw new ArgumentError(where, `tensor '${name}': dtype ${tensor.dtype} needs a ${ctor.name}`);
    if (!Array.isArray(tensor.shape) || tensor.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new ArgumentError(where, `tensor '${name}': invalid shape [${String(tensor.shape)}]`);
    }
    if (numel(tensor.shape) !== tensor.data.length) {
      throw new ArgumentError(where, `tensor '${name}': ${tensor.data.length} values for shape [${tensor.shape.join(', ')}]`);
    }
    const n = tensor.data.byteLength;
    header[name] = { dtype: ST_DTYPE[tensor.dtype], shape: tensor.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  let at = 8 + padded;
  for (const { tensor } of tensors) {
    out.set(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength), at);
    at += tensor.data.byteLength;
  }
  return out;
}
