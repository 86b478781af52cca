/**
 * PyTorch checkpoints (`torch.save` zip files: SD-1.5 `.ckpt`, PyTorch-Lightning `.ckpt`) read without
 * executing anything. The zip's `<prefix>/data.pkl` is decoded by the restricted unpickler (pickle.ts); each
 * tensor is a view (storage record, offset, shape, strides) whose bytes are read from `<prefix>/data/<key>`
 * only when the tensor is asked for, and materialised contiguous and row-major.
 */
import { ArgumentError, CheckpointError, throwIfAborted } from '../runtime/errors.js';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToF16 } from '../runtime/dtype.js';
import type { ByteSource } from './byte-source.js';
import { children, DEFAULT_PICKLE_LIMITS, PyDict, TorchStorage, TorchTensor, unpickle, type PickleLimits, type PyValue, type StorageDType } from './pickle.js';
import type { HostTensor, TensorSource } from './safetensors.js';
import { writeSafetensors } from './safetensors.js';
import { ZipArchive, type ZipEntry, type ZipLimits } from './zip.js';

export interface CheckpointOptions {
  pickleLimits?: Partial<PickleLimits>;
  zipLimits?: Partial<ZipLimits>;
  /** Largest tensor `read` will materialise, bytes (a stride-0 view can be far larger than its storage). */
  maxTensorBytes?: number;
  signal?: AbortSignal;
}

const DEFAULT_MAX_TENSOR_BYTES = 2 ** 32;

/** What `read` returns for each storage type; f64 is narrowed to f32 and small integers widened to i32. */
const HOST: Readonly<Record<StorageDType, HostTensor['dtype']>> = {
  f64: 'f32', f32: 'f32', f16: 'f16', bf16: 'bf16', i64: 'i64', i32: 'i32', i16: 'i32', i8: 'i32', u8: 'i32', bool: 'bool',
};
/** safetensors spelling of a host dtype, which `info` reports (as SafetensorsFile does). */
const ST_NAME: Readonly<Record<HostTensor['dtype'], string>> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', i64: 'I64', bool: 'BOOL' };

/** An opened checkpoint: the inert object tree, and the state dict as a TensorSource. */
export class Checkpoint implements TensorSource {
  private readonly tensors = new Map<string, TorchTensor>();

  private constructor(
    private readonly zip: ZipArchive,
    /** The record directory, e.g. 'archive/' or 'unet_ldm/'. */
    readonly prefix: string,
    readonly byteorder: 'little' | 'big',
    /** Everything the pickle holds, as inert data (see pickle.ts for the representation). */
    readonly root: PyValue,
    /** root['state_dict'] when present, else root when it is a dict holding tensors. */
    readonly stateDict: PyDict | null,
    private readonly maxTensorBytes: number,
  ) {
    if (stateDict) for (const [k, v] of stateDict) if (typeof k === 'string' && v instanceof TorchTensor) this.tensors.set(k, v);
  }

  get name(): string {
    return this.zip.source.name;
  }

  /** @internal use openCheckpoint */
  static async open(src: ByteSource, o: CheckpointOptions = {}): Promise<Checkpoint> {
    const fail = (d: string): never => {
      throw new CheckpointError(src.name, d);
    };
    const zip = await ZipArchive.open(src, o.zipLimits, o.signal);
    const pkls = zip.entries.filter((e) => /^([^/]+\/)?data\.pkl$/.test(e.name));
    if (pkls.length === 0) fail('no data.pkl record: this zip is not a torch.save checkpoint');
    if (pkls.length > 1) fail(`several data.pkl records (${pkls.map((e) => e.name).join(', ')})`);
    const pkl = pkls[0]!;
    const prefix = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);

    let byteorder: 'little' | 'big' = 'little'; // files written before the record existed are little-endian
    const bo = zip.entry(`${prefix}byteorder`);
    if (bo) {
      if (bo.size > 16) fail(`record '${bo.name}' is ${bo.size} bytes`);
      const text = new TextDecoder().decode(await zip.read(bo, 0, bo.size, o.signal)).trim();
      if (text !== 'little' && text !== 'big') fail(`record '${bo.name}' says '${text.slice(0, 16)}', expected 'little' or 'big'`);
      byteorder = text as 'little' | 'big';
    }

    const maxBytes = o.pickleLimits?.maxBytes ?? DEFAULT_PICKLE_LIMITS.maxBytes;
    if (pkl.size > maxBytes) fail(`record '${pkl.name}' is ${pkl.size} bytes, over the pickle limit of ${maxBytes}`);
    const root = unpickle(await zip.read(pkl, 0, pkl.size, o.signal), { name: src.name, limits: o.pickleLimits });

    // Every storage the pickle references must exist and be large enough, so later reads cannot go astray.
    for (const s of collectStorages(root)) {
      const e = zip.entry(`${prefix}data/${s.key}`);
      if (!e) fail(`storage '${s.key}' (${s.storageType}) has no record '${prefix}data/${s.key}'`);
      if (s.numel * s.itemSize > e!.size) {
        fail(`storage '${s.key}' holds ${s.numel} × ${s.itemSize}-byte elements but its record has ${e!.size} bytes`);
      }
    }

    let sd: PyDict | null = null;
    if (root instanceof PyDict) {
      const inner = root.get('state_dict');
      if (inner instanceof PyDict) sd = inner;
      else if ([...root.values()].some((v) => v instanceof TorchTensor)) sd = root;
    }
    return new Checkpoint(zip, prefix, byteorder, root, sd, o.maxTensorBytes ?? DEFAULT_MAX_TENSOR_BYTES);
  }

  /** Every string key of the state dict in file order, tensors or not (e.g. `_extra_state`). */
  stateDictKeys(): string[] {
    return this.stateDict ? [...this.stateDict.keys()].filter((k): k is string => typeof k === 'string') : [];
  }

  /** State-dict keys whose value is a tensor. */
  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(key: string): boolean {
    return this.tensors.has(key);
  }

  /** The stored view of a state-dict tensor (storage, offset, shape, strides). */
  tensor(key: string): TorchTensor {
    const t = this.tensors.get(key);
    if (!t) throw new CheckpointError(this.name, `no tensor '${key}' in the state dict`);
    return t;
  }

  /** dtype (safetensors spelling of what `read` returns) and shape. */
  info(key: string): { dtype: string; shape: number[] } {
    const t = this.tensor(key);
    return { dtype: ST_NAME[HOST[t.storage.dtype]], shape: [...t.shape] };
  }

  /** Stored bytes of the tensor's elements. */
  byteLength(key: string): number {
    const t = this.tensor(key);
    return t.numel * t.storage.itemSize;
  }

  read(key: string, signal?: AbortSignal): Promise<HostTensor> {
    return this.readTensor(this.tensor(key), signal);
  }

  /**
   * Materialises any tensor of the tree (state dict, optimizer state, …) contiguous and row-major. Only the
   * storage bytes between the view's first and last element are read.
   */
  async readTensor(t: TorchTensor, signal?: AbortSignal): Promise<HostTensor> {
    throwIfAborted(signal, this.name);
    const s = t.storage;
    const entry = this.zip.entry(`${this.prefix}data/${s.key}`);
    if (!entry) throw new CheckpointError(this.name, `storage '${s.key}' has no record`);
    const shape = [...t.shape];
    const n = t.numel;
    const host = HOST[s.dtype];
    const outItem = host === 'f32' || host === 'i32' ? 4 : host === 'i64' ? 8 : host === 'bool' ? 1 : 2;
    if (n * outItem > this.maxTensorBytes) {
      throw new CheckpointError(this.name, `tensor of shape [${shape.join(', ')}] needs ${n * outItem} bytes, over the limit of ${this.maxTensorBytes}`);
    }
    if (n === 0) return { dtype: host, shape, data: allocate(host, 0) };
    let last = t.storageOffset;
    for (let k = 0; k < shape.length; k++) last += (shape[k]! - 1) * t.stride[k]!;
    if (last >= s.numel) throw new CheckpointError(this.name, `tensor view reaches element ${last} of storage '${s.key}' (${s.numel} elements)`);
    const item = s.itemSize;
    const span = await readSpan(this.zip, entry, t.storageOffset * item, (last - t.storageOffset + 1) * item, signal);
    if (this.byteorder === 'big' && item > 1) swapBytes(span, item);
    const units = gather(unitView(span, item), shape, t.stride, n);
    return { dtype: host, shape, data: convert(s.dtype, units) };
  }
}

/** Opens a torch.save zip checkpoint; nothing in it is executed. */
export function openCheckpoint(src: ByteSource, options?: CheckpointOptions): Promise<Checkpoint> {
  return Checkpoint.open(src, options);
}

/** A view of a checkpoint's state dict restricted to one key prefix, with the prefix removed. */
export class PrefixedTensorSource implements TensorSource {
  private readonly map = new Map<string, string>();

  constructor(
    readonly checkpoint: Checkpoint,
    readonly prefix: string,
    /** Which weights these are, for reporting. */
    readonly variant: string,
  ) {
    for (const k of checkpoint.keys()) if (k.startsWith(prefix) && k.length > prefix.length) this.map.set(k.slice(prefix.length), k);
  }

  get name(): string {
    return `${this.checkpoint.name} [${this.prefix || 'state dict'}]`;
  }

  keys(): string[] {
    return [...this.map.keys()];
  }

  private full(key: string): string {
    const k = this.map.get(key);
    if (k === undefined) throw new CheckpointError(this.checkpoint.name, `no tensor '${this.prefix}${key}' in the state dict`);
    return k;
  }

  info(key: string): { dtype: string; shape: number[] } {
    return this.checkpoint.info(this.full(key));
  }

  byteLength(key: string): number {
    return this.checkpoint.byteLength(this.full(key));
  }

  read(key: string, signal?: AbortSignal): Promise<HostTensor> {
    return this.checkpoint.read(this.full(key), signal);
  }
}

/** fm-boosting TrainerFMBoost state-dict prefixes of the CFM EfficientUNet. */
export const CFM_EMA_PREFIX = 'ema_model.ema_model.net.';
export const CFM_ONLINE_PREFIX = 'model.net.';
/** Keys every EfficientUNet state dict has, used to recognise one saved without a prefix. */
const CFM_PROBE_KEYS = ['time_embed.0.weight', 'input_blocks.0.0.weight', 'out.2.weight'];

/**
 * The CFM EfficientUNet weights of a checkpoint under their bare names (cfm.safetensors names). From a
 * TrainerFMBoost Lightning checkpoint: the EMA weights when present (what the authors intend for inference),
 * else the online weights; `ema: false` forces the online ones, `ema: true` requires EMA. A plain
 * EfficientUNet (or FlowModel, `net.`) state dict is accepted as it is.
 */
export function cfmWeightsFromCheckpoint(ckpt: Checkpoint, o: { ema?: boolean } = {}): PrefixedTensorSource {
  const keys = ckpt.keys();
  const hasPrefix = (p: string): boolean => keys.some((k) => k.startsWith(p));
  const hasEma = hasPrefix(CFM_EMA_PREFIX);
  const hasOnline = hasPrefix(CFM_ONLINE_PREFIX);
  if (o.ema === true || (o.ema === undefined && hasEma)) {
    if (!hasEma) throw new CheckpointError(ckpt.name, `EMA weights were requested but the state dict has no '${CFM_EMA_PREFIX}*' keys`);
    return new PrefixedTensorSource(ckpt, CFM_EMA_PREFIX, 'ema');
  }
  if (hasOnline) return new PrefixedTensorSource(ckpt, CFM_ONLINE_PREFIX, 'online');
  for (const p of ['net.', '']) {
    if (CFM_PROBE_KEYS.every((k) => keys.includes(p + k))) return new PrefixedTensorSource(ckpt, p, 'plain');
  }
  const seen = [...new Set(keys.map((k) => k.split('.')[0]))].slice(0, 8).join(', ');
  throw new CheckpointError(
    ckpt.name,
    `no CFM EfficientUNet weights: expected '${CFM_EMA_PREFIX}*', '${CFM_ONLINE_PREFIX}*' or bare EfficientUNet keys (${CFM_PROBE_KEYS.join(', ')}); top-level key groups: ${seen || 'none'}`,
  );
}

export interface ConvertOptions extends CheckpointOptions {
  /**
   * 'ema' / 'online': the CFM weights (prefix stripped), failing when that set is absent; default: EMA when
   * present, else online, else a plain EfficientUNet state dict. 'all': every state-dict tensor.
   */
  select?: 'ema' | 'online' | 'all';
  /** Float storage of the output; integer and bool tensors are kept. Default: as stored. */
  dtype?: 'f32' | 'f16';
  /** With select 'all' (implied when given): only keys starting with it, written without it. */
  prefix?: string;
}

/** Converts a checkpoint's weights to a safetensors file (held in memory). Nothing is executed. */
export async function convertCheckpoint(src: ByteSource | Checkpoint, o: ConvertOptions = {}): Promise<Uint8Array> {
  const where = 'convertCheckpoint';
  if (o.select !== undefined && !['ema', 'online', 'all'].includes(o.select)) throw new ArgumentError(where, `select must be 'ema', 'online' or 'all', got '${String(o.select)}'`);
  if (o.dtype !== undefined && o.dtype !== 'f32' && o.dtype !== 'f16') throw new ArgumentError(where, `dtype must be 'f32' or 'f16', got '${String(o.dtype)}'`);
  if (o.prefix !== undefined && o.select !== undefined && o.select !== 'all') throw new ArgumentError(where, `prefix applies to select 'all' only (got select '${o.select}')`);
  const ckpt = src instanceof Checkpoint ? src : await openCheckpoint(src, o);
  let source: TensorSource;
  if (o.select === 'all' || o.prefix !== undefined) {
    source = new PrefixedTensorSource(ckpt, o.prefix ?? '', 'all');
    if (source.keys().length === 0) throw new CheckpointError(ckpt.name, `no state-dict tensors${o.prefix ? ` start with '${o.prefix}'` : ''}`);
  } else {
    source = cfmWeightsFromCheckpoint(ckpt, o.select === undefined ? {} : { ema: o.select === 'ema' });
  }
  const out: { name: string; tensor: HostTensor }[] = [];
  for (const k of source.keys()) {
    throwIfAborted(o.signal, ckpt.name);
    out.push({ name: k, tensor: castFloat(await source.read(k, o.signal), o.dtype) });
  }
  const meta: Record<string, string> = { format: 'pt', converted_from: ckpt.name };
  if (source instanceof PrefixedTensorSource) meta.weights = source.variant === 'all' ? `all${source.prefix ? `:${source.prefix}` : ''}` : `${source.variant}:${source.prefix}`;
  return writeSafetensors(out, meta);
}

function castFloat(t: HostTensor, to: 'f32' | 'f16' | undefined): HostTensor {
  if (!to || t.dtype === to || (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16')) return t;
  const f32 = t.dtype === 'f32' ? (t.data as Float32Array) : t.dtype === 'f16' ? f16ArrayToF32(t.data as Uint16Array) : bf16ArrayToF32(t.data as Uint16Array);
  return to === 'f32' ? { dtype: 'f32', shape: t.shape, data: f32 } : { dtype: 'f16', shape: t.shape, data: f32ArrayToF16(f32) };
}

function collectStorages(root: PyValue): Set<TorchStorage> {
  const out = new Set<TorchStorage>();
  const seen = new Set<object>();
  const todo: PyValue[] = [root];
  while (todo.length) {
    const v = todo.pop()!;
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof TorchTensor) out.add(v.storage);
    else if (v instanceof TorchStorage) out.add(v);
    for (const c of children(v)) todo.push(c);
  }
  return out;
}

async function readSpan(zip: ZipArchive, entry: ZipEntry, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
  // A private copy: byte swapping and typed-array alignment must not touch the source's memory.
  // (new Uint8Array(x) copies; Buffer#slice, which a Node source may hand back, would not.)
  return new Uint8Array(await zip.read(entry, offset, length, signal));
}

function swapBytes(b: Uint8Array, item: number): void {
  for (let i = 0; i + item <= b.length; i += item) {
    for (let a = i, z = i + item - 1; a < z; a++, z--) {
      const x = b[a]!;
      b[a] = b[z]!;
      b[z] = x;
    }
  }
}

type Units = Uint8Array | Uint16Array | Uint32Array | BigUint64Array;

/** The element bits of a (copied, hence aligned) byte span. */
function unitView(b: Uint8Array, item: number): Units {
  const n = b.byteLength / item;
  if (item === 8) return new BigUint64Array(b.buffer, b.byteOffset, n);
  if (item === 4) return new Uint32Array(b.buffer, b.byteOffset, n);
  if (item === 2) return new Uint16Array(b.buffer, b.byteOffset, n);
  return b;
}

/** Row-major copy of a strided view whose first element is src[0]. */
function gather(src: Units, shape: number[], stride: readonly number[], n: number): Units {
  let contiguous = true;
  for (let k = shape.length - 1, expect = 1; k >= 0; k--) {
    if (shape[k] !== 1 && stride[k] !== expect) contiguous = false;
    expect *= shape[k]!;
  }
  if (contiguous) return src.length === n ? src : src.subarray(0, n);
  const dst = new (src.constructor as new (n: number) => Units)(n);
  const nd = shape.length;
  const inner = shape[nd - 1]!;
  const innerStride = stride[nd - 1]!;
  const idx = new Array<number>(nd).fill(0);
  let base = 0;
  for (let o = 0; o < n; o += inner) {
    for (let i = 0, p = base; i < inner; i++, p += innerStride) (dst as Uint32Array)[o + i] = (src as Uint32Array)[p]!;
    // Odometer over the outer dimensions.
    for (let k = nd - 2; k >= 0; k--) {
      idx[k]!++;
      base += stride[k]!;
      if (idx[k]! < shape[k]!) break;
      base -= idx[k]! * stride[k]!;
      idx[k] = 0;
    }
  }
  return dst;
}

function allocate(host: HostTensor['dtype'], n: number): HostTensor['data'] {
  switch (host) {
    case 'f32': return new Float32Array(n);
    case 'f16': case 'bf16': return new Uint16Array(n);
    case 'i32': return new Int32Array(n);
    case 'i64': return new BigInt64Array(n);
    case 'bool': return new Uint8Array(n);
  }
}

/** Element bits → the host typed array (f64 narrowed to f32, small integers widened to i32). */
function convert(dtype: StorageDType, u: Units): HostTensor['data'] {
  switch (dtype) {
    case 'f32': return new Float32Array(u.buffer, u.byteOffset, u.length);
    case 'f16': case 'bf16': return u as Uint16Array;
    case 'i32': return new Int32Array(u.buffer, u.byteOffset, u.length);
    case 'i64': return new BigInt64Array(u.buffer, u.byteOffset, u.length);
    case 'bool': return u as Uint8Array;
    case 'f64': return Float32Array.from(new Float64Array(u.buffer, u.byteOffset, u.length));
    case 'i16': return Int32Array.from(new Int16Array(u.buffer, u.byteOffset, u.length));
    case 'i8': return Int32Array.from(new Int8Array(u.buffer, u.byteOffset, u.length));
    case 'u8': return Int32Array.from(u as Uint8Array);
  }
}
