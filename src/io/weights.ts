/**
 * Weight loading: tensors go from a TensorSource to the GPU one at a time (never the whole file in JS
 * memory), then models pick them out of a WeightScope by their checkpoint names:
 * `w.pp('down_blocks').pp(0).get('conv1.weight', [C, C, 3, 3])`.
 */
import { storageBytes, f32ArrayToF16, bf16ArrayToF32, f16ArrayToF32, type DType } from '../runtime/dtype.js';
import { ArgumentError, AbortError, WeightError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { numel, type Tensor } from '../runtime/tensor.js';
import { stDtypeBytes, type HostTensor, type TensorSource } from './safetensors.js';

export interface LoadWeightsOptions {
  /** Checkpoint key → model key; null drops the tensor (buffers, EMA copies…). */
  rename?: (key: string) => string | null;
  /** GPU storage. auto: F32→f32, F16→f16, BF16→f32. Tensors of rank ≤ 1 (biases, norms) are always f32. */
  dtype?: 'auto' | 'f32' | 'f16';
  /** Keeps only the (renamed) keys it accepts. */
  filter?: (key: string) => boolean;
  /** Default true: NaN/Inf in a weight → WeightError naming the key. */
  checkFinite?: boolean;
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
  signal?: AbortSignal;
}

const WEIGHT_DTYPES = new Set(['F32', 'F16', 'BF16']);

interface Planned {
  source: TensorSource;
  srcKey: string;
  key: string;
  dtype: string;
  shape: number[];
  bytes: number;
}

/** Uploads every (renamed, filtered) tensor of the sources; on any error nothing stays allocated. */
export async function loadWeights(rt: Runtime, sources: TensorSource | TensorSource[], o: LoadWeightsOptions = {}): Promise<WeightScope> {
  const list = Array.isArray(sources) ? sources : [sources];
  const mode = o.dtype ?? 'auto';
  if (mode !== 'auto' && mode !== 'f32' && mode !== 'f16') throw new ArgumentError('loadWeights', `dtype must be 'auto', 'f32' or 'f16', got '${String(mode)}'`);
  if (list.length === 0) throw new ArgumentError('loadWeights', 'no sources given');
  const checkFinite = o.checkFinite ?? true;

  // Plan first, so a bad key or dtype fails before any upload.
  const plan: Planned[] = [];
  const origin = new Map<string, string>();
  for (const source of list) {
    for (const srcKey of source.keys()) {
      const key = o.rename ? o.rename(srcKey) : srcKey;
      if (key === null) continue;
      if (typeof key !== 'string' || key === '') throw new WeightError(srcKey, `rename returned ${JSON.stringify(key)}; return a key or null`);
      if (o.filter && !o.filter(key)) continue;
      const from = `'${srcKey}' in ${source.name}`;
      const prev = origin.get(key);
      if (prev !== undefined) throw new WeightError(key, `loaded twice: from ${prev} and from ${from}`);
      origin.set(key, from);
      const { dtype, shape } = source.info(srcKey);
      if (!WEIGHT_DTYPES.has(dtype)) {
        throw new WeightError(key, `dtype ${dtype} (${from}) cannot be a weight (F32, F16, BF16); drop it with rename or filter`);
      }
      const bytes = source.byteLength ? source.byteLength(srcKey) : numel(shape) * (stDtypeBytes(dtype) ?? 4);
      plan.push({ source, srcKey, key, dtype, shape, bytes });
    }
  }
  const totalBytes = plan.reduce((s, p) => s + p.bytes, 0);

  const tensors = new Map<string, Tensor>();
  let loaded = 0;
  try {
    for (const source of list) {
      const mine = plan.filter((p) => p.source === source);
      const bySrcKey = new Map(mine.map((p) => [p.srcKey, p]));
      const stream = source.readMany
        ? source.readMany(mine.map((p) => p.srcKey), o.signal)
        : oneByOne(source, mine.map((p) => p.srcKey), o.signal);
      for await (const [srcKey, host] of stream) {
        throwIfAborted(o.signal, 'loadWeights');
        const p = bySrcKey.get(srcKey);
        if (!p) throw new WeightError(srcKey, `${source.name} returned a tensor that was not asked for`);
        bySrcKey.delete(srcKey);
        const t = upload(rt, p, host, mode, checkFinite);
        tensors.set(p.key, t);
        loaded += p.bytes;
        o.onProgress?.(loaded, totalBytes);
      }
      const missed = [...bySrcKey.keys()];
      if (missed.length) throw new WeightError(missed[0]!, `${source.name} did not return this tensor`);
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    if (e instanceof Error && e.name === 'AbortError' && !(e instanceof AbortError)) throw new AbortError('loadWeights');
    throw e;
  }
  const scope = WeightScope.fromTensors(tensors);
  // After device loss, rt.restore() re-reads every tensor from its source onto the new device.
  const unregister = rt.onRestore(async () => {
    for (const source of list) {
      const mine = plan.filter((p) => p.source === source);
      const bySrcKey = new Map(mine.map((p) => [p.srcKey, p]));
      const stream = source.readMany ? source.readMany(mine.map((p) => p.srcKey)) : oneByOne(source, mine.map((p) => p.srcKey));
      for await (const [srcKey, host] of stream) {
        const p = bySrcKey.get(srcKey);
        const t = p && tensors.get(p.key);
        if (!p || !t || t.isDisposed) continue;
        rt.reupload(t, convert(p, host, mode, false).data);
      }
    }
  });
  scope.onDispose(unregister);
  return scope;
}

async function* oneByOne(source: TensorSource, keys: string[], signal?: AbortSignal): AsyncIterable<[string, HostTensor]> {
  for (const k of keys) {
    throwIfAborted(signal, 'loadWeights');
    yield [k, await source.read(k, signal)];
  }
}

/** Checks a tensor read from its source and converts it to the GPU storage dtype. */
function convert(p: Planned, host: HostTensor, mode: 'auto' | 'f32' | 'f16', checkFinite: boolean): { data: Float32Array | Uint16Array; store: DType } {
  if (host.shape.length !== p.shape.length || host.shape.some((d, i) => d !== p.shape[i])) {
    throw new WeightError(p.key, `source gave shape [${host.shape.join(', ')}], its header says [${p.shape.join(', ')}]`);
  }
  const n = numel(p.shape);
  if (host.data.length !== n) throw new WeightError(p.key, `${host.data.length} values for shape [${p.shape.join(', ')}]`);
  const vector = p.shape.length <= 1;
  let store: DType;
  if (vector || mode === 'f32') store = 'f32';
  else if (mode === 'f16') store = 'f16';
  else store = host.dtype === 'f16' ? 'f16' : 'f32';

  let data: Float32Array | Uint16Array;
  if (host.dtype === 'f32') {
    if (!(host.data instanceof Float32Array)) throw new WeightError(p.key, 'f32 tensor without Float32Array data');
    if (checkFinite) assertFinite(p.key, host.data);
    data = store === 'f32' ? host.data : f32ArrayToF16(host.data);
    if (store === 'f16' && checkFinite) assertFiniteHalf(p.key, data as Uint16Array, 'overflows float16 (|x| > 65504); load with dtype f32');
  } else if (host.dtype === 'f16' || host.dtype === 'bf16') {
    if (!(host.data instanceof Uint16Array)) throw new WeightError(p.key, `${host.dtype} tensor without Uint16Array data`);
    const bits = host.data;
    if (host.dtype === 'f16') {
      if (checkFinite) assertFiniteHalf(p.key, bits, 'holds NaN or Inf');
      data = store === 'f16' ? bits : f16ArrayToF32(bits);
    } else {
      if (checkFinite) assertFiniteBf16(p.key, bits);
      const f = bf16ArrayToF32(bits);
      data = store === 'f32' ? f : f32ArrayToF16(f);
      if (store === 'f16' && checkFinite) assertFiniteHalf(p.key, data as Uint16Array, 'overflows float16 (|x| > 65504); load with dtype f32');
    }
  } else {
    throw new WeightError(p.key, `dtype ${host.dtype} cannot be a weight (F32, F16, BF16)`);
  }
  return { data, store };
}

function upload(rt: Runtime, p: Planned, host: HostTensor, mode: 'auto' | 'f32' | 'f16', checkFinite: boolean): Tensor {
  const { data, store } = convert(p, host, mode, checkFinite);
  // Weights must outlive any rt.scope() the loader is called in.
  return rt.keep(rt.upload(data, p.shape, { dtype: store, label: p.key, persistent: true }));
}

function assertFinite(key: string, d: Float32Array): void {
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v - v !== 0) throw new WeightError(key, `holds ${v} at flat index ${i}; the checkpoint is corrupt or was saved after a diverged step`);
  }
}

function assertFiniteHalf(key: string, bits: Uint16Array, what: string): void {
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i]! & 0x7c00) === 0x7c00) throw new WeightError(key, `${what} at flat index ${i}`);
  }
}

function assertFiniteBf16(key: string, bits: Uint16Array): void {
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i]! & 0x7f80) === 0x7f80) throw new WeightError(key, `holds NaN or Inf at flat index ${i}`);
  }
}

interface ScopeState {
  onDispose?: () => void;
  tensors: Map<string, Tensor>;
  used: Set<string>;
  views: Map<string, Tensor>;
  disposed: boolean;
  /** Set by `synthesize`: missing weights are created on first request. */
  synth?: { rt: Runtime; init: (key: string, shape: readonly number[]) => Float32Array; made: { key: string; shape: number[] }[] };
}

/**
 * The loaded weights, addressed by checkpoint key under a prefix (candle's VarBuilder). Child scopes from
 * `pp()` share the tensors; `dispose()` on any of them destroys all.
 */
export class WeightScope {
  private constructor(
    private readonly state: ScopeState,
    readonly prefix: string,
  ) {}

  /** @internal */
  static fromTensors(tensors: Map<string, Tensor>): WeightScope {
    return new WeightScope({ tensors, used: new Set(), views: new Map(), disposed: false }, '');
  }

  /**
   * A scope that creates each weight on its first `get`/`getReshaped` (with the requested shape and `init`'s
   * values, f32) instead of failing: building a model on it yields the model's exact key list
   * (`synthesized()`), e.g. to write random-weight checkpoints of the real topology (scripts/make-tiny.ts).
   */
  static synthesize(rt: Runtime, init: (key: string, shape: readonly number[]) => Float32Array): WeightScope {
    return new WeightScope({ tensors: new Map(), used: new Set(), views: new Map(), disposed: false, synth: { rt, init, made: [] } }, '');
  }

  /** Keys and shapes a synthesizing scope created, in creation order ([] for loaded weights). */
  synthesized(): { key: string; shape: number[] }[] {
    return (this.state.synth?.made ?? []).map((m) => ({ key: m.key, shape: [...m.shape] }));
  }

  /** Child scope: prefix + name + '.'. */
  pp(name: string | number): WeightScope {
    if (typeof name === 'number' ? !Number.isSafeInteger(name) || name < 0 : typeof name !== 'string' || name === '') {
      throw new ArgumentError('WeightScope.pp', `invalid name ${JSON.stringify(name)} under '${this.prefix}'`);
    }
    return new WeightScope(this.state, `${this.prefix}${name}.`);
  }

  /** The weight `prefix + key`; WeightError (full key) if missing or its shape differs from `shape`. */
  get(key: string, shape?: readonly number[]): Tensor {
    const full = this.prefix + key;
    const t = this.lookup(full) ?? this.create(full, shape);
    if (!t) throw new WeightError(full, `missing${this.hint(key)}`);
    if (shape) {
      checkWanted(full, shape);
      if (!sameShape(t.shape, shape)) {
        const hint = numel(t.shape) === numel(shape) ? ' (same element count: use getReshaped if the layouts are equivalent)' : '';
        throw new WeightError(full, `expected shape [${shape.join(', ')}], the checkpoint has [${t.shape.join(', ')}]${hint}`);
      }
    }
    this.state.used.add(full);
    return t;
  }

  /**
   * Like get, but any stored shape with the same element count is accepted and viewed as `shape`
   * (1×1 conv weights [O, I, 1, 1] stored as Linear [O, I], Conv1d [O, I, 1], and the reverse).
   */
  getReshaped(key: string, shape: readonly number[]): Tensor {
    const full = this.prefix + key;
    const t = this.lookup(full) ?? this.create(full, shape);
    if (!t) throw new WeightError(full, `missing${this.hint(key)}`);
    checkWanted(full, shape);
    if (numel(t.shape) !== numel(shape)) {
      throw new WeightError(full, `expected [${shape.join(', ')}] (${numel(shape)} elements), the checkpoint has [${t.shape.join(', ')}] (${numel(t.shape)})`);
    }
    this.state.used.add(full);
    if (sameShape(t.shape, shape)) return t;
    const vk = `${full}@${shape.join(',')}`;
    let v = this.state.views.get(vk);
    if (!v) {
      v = t.rt.keep(t.reshape(shape));
      this.state.views.set(vk, v);
    }
    return v;
  }

  /** The weight if present (shape-checked like get), else undefined. */
  optional(key: string, shape?: readonly number[]): Tensor | undefined {
    return this.has(key) ? this.get(key, shape) : undefined;
  }

  has(key: string): boolean {
    this.assertAlive(this.prefix + key);
    return this.state.tensors.has(this.prefix + key);
  }

  /** Keys under this scope (+ `prefix`), relative to this scope, sorted. */
  keysUnder(prefix = ''): string[] {
    const p = this.prefix + prefix;
    const out: string[] = [];
    for (const k of this.state.tensors.keys()) if (k.startsWith(p)) out.push(k.slice(this.prefix.length));
    return out.sort();
  }

  /** Full keys under this scope that no get()/getReshaped()/optional() has fetched, sorted. */
  unused(): string[] {
    const out: string[] = [];
    for (const k of this.state.tensors.keys()) if (k.startsWith(this.prefix) && !this.state.used.has(k)) out.push(k);
    return out.sort();
  }

  /** WeightError listing every loaded-but-unused key under this scope by full name. */
  assertAllUsed(what: string): void {
    const u = this.unused();
    if (u.length === 0) return;
    const shown = u.slice(0, 20).join(', ') + (u.length > 20 ? `, … (${u.length - 20} more)` : '');
    throw new WeightError(u[0]!, `${what} does not use ${u.length} loaded weight${u.length === 1 ? '' : 's'}: ${shown}. Drop them with loadWeights' rename/filter if they are expected`);
  }

  /** @internal Runs `fn` when the weights are disposed. */
  onDispose(fn: () => void): void {
    this.state.onDispose = fn;
  }

  /** Destroys every weight tensor of this load (all scopes share them). Safe to call twice. */
  dispose(): void {
    if (this.state.disposed) return;
    this.state.disposed = true;
    this.state.onDispose?.();
    for (const v of this.state.views.values()) v.dispose();
    for (const t of this.state.tensors.values()) t.dispose();
    this.state.views.clear();
  }

  /** GPU bytes of the weights (storage, all scopes). */
  get bytes(): number {
    let n = 0;
    for (const t of this.state.tensors.values()) n += storageBytes(numel(t.shape), t.dtype);
    return n;
  }

  get isDisposed(): boolean {
    return this.state.disposed;
  }

  private lookup(full: string): Tensor | undefined {
    this.assertAlive(full);
    return this.state.tensors.get(full);
  }

  private create(full: string, shape: readonly number[] | undefined): Tensor | undefined {
    const synth = this.state.synth;
    if (!synth || !shape) return undefined;
    checkWanted(full, shape);
    const data = synth.init(full, shape);
    if (!(data instanceof Float32Array) || data.length !== numel(shape)) {
      throw new WeightError(full, `synthesize init returned ${data instanceof Float32Array ? data.length : typeof data} values for shape [${shape.join(', ')}]`);
    }
    const t = synth.rt.keep(synth.rt.upload(data, shape, { label: full, persistent: true }));
    this.state.tensors.set(full, t);
    synth.made.push({ key: full, shape: [...shape] });
    return t;
  }

  private assertAlive(full: string): void {
    if (this.state.disposed) throw new WeightError(full, 'the weights were disposed');
  }

  /** Nearby keys, so a typo or a wrong checkpoint dialect shows at once. */
  private hint(key: string): string {
    const dot = key.lastIndexOf('.');
    const near = this.keysUnder(dot > 0 ? key.slice(0, dot + 1) : '').slice(0, 5);
    if (near.length) return ` (under '${this.prefix}${dot > 0 ? key.slice(0, dot + 1) : ''}' there are: ${near.join(', ')}${near.length === 5 ? ', …' : ''})`;
    const total = this.state.tensors.size;
    return total === 0 ? ' (no weights were loaded)' : ` (nothing under '${this.prefix}${dot > 0 ? key.slice(0, dot + 1) : ''}'; ${total} weights loaded, e.g. '${this.state.tensors.keys().next().value}')`;
  }
}

function checkWanted(full: string, shape: readonly number[]): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new ArgumentError(`WeightScope.get('${full}')`, `invalid expected shape [${String(shape)}]`);
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
