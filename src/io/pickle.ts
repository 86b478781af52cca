/**
 * Restricted unpickler for PyTorch checkpoints. It decodes the pickle opcodes of protocols 0–5 into an inert
 * object tree and never calls anything: the only "calls" it honours are a short, explicit list of data
 * constructors (tensor/storage rebuilds, OrderedDict, defaultdict, set, …) that it re-implements as plain data.
 *
 * Policy (why each rule exists):
 * - A GLOBAL naming a code-execution primitive (os/posix/subprocess/…, builtins other than plain types, …) is
 *   refused where it appears, before anything that follows is decoded.
 * - REDUCE / INST / OBJ call their target in Python, so an unknown target is refused even when its module
 *   looks harmless: allow-listing by module would let any function of that module run elsewhere.
 * - NEWOBJ / NEWOBJ_EX / BUILD only allocate an instance and set its state (`cls.__new__` + `__setstate__`);
 *   classes found in legitimate checkpoints (omegaconf configs, Lightning's AttributeDict, …) become
 *   placeholders `{ $class, args, state }` so their content stays readable.
 * - Every length is checked against the remaining bytes before anything is allocated, and memo, stack, mark
 *   depth and object nesting are bounded, so malformed input fails fast with a CheckpointError.
 *
 * Opcode reference: CPython Lib/pickletools.py (names, argument encodings, protocol of introduction).
 * Representation: None → null, bool → boolean, int → number (bigint beyond 2^53), float → number,
 * str → string, bytes/bytearray → Uint8Array, list → array, tuple → frozen array, dict → PyDict (a Map),
 * set/frozenset → Set, a class or function used as a value → PyGlobal.
 */
import { CheckpointError } from '../runtime/errors.js';

/** Element types of torch storages, as stored in the file. */
export type StorageDType = 'f64' | 'f32' | 'f16' | 'bf16' | 'i64' | 'i32' | 'i16' | 'i8' | 'u8' | 'bool';

/** torch.<Name>Storage → element type and size. */
export const STORAGE_TYPES: Readonly<Record<string, { dtype: StorageDType; itemSize: number }>> = {
  DoubleStorage: { dtype: 'f64', itemSize: 8 },
  FloatStorage: { dtype: 'f32', itemSize: 4 },
  HalfStorage: { dtype: 'f16', itemSize: 2 },
  BFloat16Storage: { dtype: 'bf16', itemSize: 2 },
  LongStorage: { dtype: 'i64', itemSize: 8 },
  IntStorage: { dtype: 'i32', itemSize: 4 },
  ShortStorage: { dtype: 'i16', itemSize: 2 },
  CharStorage: { dtype: 'i8', itemSize: 1 },
  ByteStorage: { dtype: 'u8', itemSize: 1 },
  BoolStorage: { dtype: 'bool', itemSize: 1 },
  UntypedStorage: { dtype: 'u8', itemSize: 1 },
};

/** A class or function referenced by GLOBAL / STACK_GLOBAL and used as a plain value (never called). */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get $global(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a class that was not constructed: its class name, constructor arguments and state. */
export class PyObject {
  state: PyValue | undefined = undefined;
  /** Items set by SETITEM(S) on a dict subclass. */
  dictItems: PyDict | undefined = undefined;
  /** Items added by APPEND(S) on a list subclass. */
  listItems: PyValue[] | undefined = undefined;
  constructor(
    readonly $class: string,
    readonly args: readonly PyValue[],
    readonly kwargs?: PyDict,
  ) {}
}

/** A Python dict, OrderedDict or defaultdict; insertion order is kept. */
export class PyDict extends Map<PyValue, PyValue> {
  /** State applied by BUILD (torch's state_dict carries `{'_metadata': …}` here). */
  state: PyValue | undefined = undefined;
  constructor(
    readonly $class: 'builtins.dict' | 'collections.OrderedDict' | 'collections.defaultdict' | string = 'builtins.dict',
    readonly defaultFactory?: PyValue,
  ) {
    super();
  }
}

/** A storage referenced by a persistent id: the zip record `<prefix>/data/<key>`. */
export class TorchStorage {
  constructor(
    readonly key: string,
    readonly storageType: string,
    readonly dtype: StorageDType,
    readonly itemSize: number,
    readonly location: string,
    /** Elements of `dtype`. */
    readonly numel: number,
  ) {}
}

/** A tensor view: element (i0…in) is storage element storageOffset + Σ i_k·stride_k. */
export class TorchTensor {
  state: PyValue | undefined = undefined;
  constructor(
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
    /** Rebuilt through torch._utils._rebuild_parameter (an nn.Parameter). */
    readonly isParameter: boolean,
  ) {}
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | readonly PyValue[]
  | PyDict
  | Set<PyValue>
  | PyGlobal
  | PyObject
  | TorchStorage
  | TorchTensor;

export interface PickleLimits {
  /** Largest pickle accepted, bytes. */
  maxBytes: number;
  /** Most memo entries. */
  maxMemo: number;
  /** Most values on the stack at once. */
  maxStack: number;
  /** Deepest MARK nesting, and deepest object nesting of the result. */
  maxDepth: number;
  /** Most items one container may hold. */
  maxContainerItems: number;
  /** Longest integer accepted by LONG1 / LONG4 / INT / LONG, bytes. */
  maxIntBytes: number;
  /**
   * Most elements the constructors may copy in total. A memoised container passed to set()/OrderedDict()/…
   * again and again costs a few opcode bytes per copy, so without this a small pickle could run for hours.
   */
  maxCopiedItems: number;
}

export const DEFAULT_PICKLE_LIMITS: PickleLimits = {
  maxBytes: 256 * 2 ** 20,
  maxMemo: 1 << 22,
  maxStack: 1 << 22,
  maxDepth: 1000,
  maxContainerItems: 1 << 24,
  maxIntBytes: 256,
  maxCopiedItems: 1 << 24,
};

export interface UnpickleOptions {
  /** File name for error messages. */
  name?: string;
  limits?: Partial<PickleLimits>;
}

// Modules whose functions run code, touch files/processes/network or reach arbitrary attributes. A GLOBAL
// from any of them (or a submodule) is refused at once, even as a value.
const CODE_EXECUTION_MODULES = new Set([
  'os', 'posix', 'nt', 'posixpath', 'ntpath', 'subprocess', '_posixsubprocess', '_winapi', 'sys', 'runpy',
  'importlib', 'imp', 'pkgutil', 'zipimport', 'site', 'pickle', '_pickle', 'cPickle', 'pickletools',
  'shelve', 'marshal', 'dill', 'cloudpickle', 'joblib', 'socket', 'ssl', 'http', 'urllib', 'urllib2', 'urllib3',
  'requests', 'ftplib', 'smtplib', 'telnetlib', 'webbrowser', 'shutil', 'tempfile', 'glob', 'fileinput', 'io',
  '_io', 'pty', 'commands', 'popen2', 'platform', 'ctypes', '_ctypes', 'cffi', 'code', 'codeop', 'types',
  'functools', 'operator', '_operator', 'inspect', 'gc', 'multiprocessing', 'threading', '_thread', 'thread',
  'asyncio', 'signal', 'timeit', 'trace', 'pdb', 'bdb', 'cProfile', 'profile', 'doctest', 'unittest',
  'distutils', 'setuptools', 'pip', 'numpy.testing', 'torch.hub', 'torch.package', 'torch.jit',
  'torch.ops', 'torch._dynamo', 'torch._inductor', 'torch.utils.cpp_extension', 'torch.distributed',
]);

// Within builtins only types may be named; eval/exec/compile/getattr/open/__import__/… are refused.
const BUILTIN_VALUES = new Set([
  'dict', 'list', 'tuple', 'set', 'frozenset', 'int', 'long', 'float', 'complex', 'str', 'unicode', 'bytes',
  'bytearray', 'bool', 'object', 'slice', 'range', 'xrange', 'NoneType', 'Ellipsis', 'NotImplemented',
]);

/** Protocol-2 spellings of Python 3 modules (pickle's fix_imports). */
const MODULE_ALIASES: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

/** Why a GLOBAL must be refused outright, or null when it may appear (as a value, class or allowed call). */
export function refusedGlobal(module: string, name: string): string | null {
  const mod = alias(module);
  if (mod === 'builtins') return BUILTIN_VALUES.has(name) ? null : 'a builtin that can run code or reach arbitrary objects';
  const parts = mod.split('.');
  for (let i = 1; i <= parts.length; i++) {
    if (CODE_EXECUTION_MODULES.has(parts.slice(0, i).join('.'))) return 'a code-execution or system-access module';
  }
  if (name.startsWith('__') && name !== '__newobj__') return 'a dunder attribute';
  return null;
}

type Reducer = (args: readonly PyValue[], fail: (detail: string) => never) => PyValue;

const TENSOR_REBUILDS = new Set(['torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_tensor', 'torch._utils._rebuild_parameter', 'torch._utils._rebuild_parameter_with_state']);

/** The only REDUCE targets: each is re-implemented here as a data constructor. */
const REDUCERS: Readonly<Record<string, Reducer>> = {
  'torch._utils._rebuild_tensor_v2': (a, fail) => rebuildTensor(a, fail, false),
  'torch._utils._rebuild_tensor': (a, fail) => rebuildTensor(a, fail, false),
  'torch._utils._rebuild_parameter': (a, fail) => rebuildParameter(a, fail),
  'torch._utils._rebuild_parameter_with_state': (a, fail) => {
    const p = rebuildParameter(a, fail);
    p.state = a[3] ?? null;
    return p;
  },
  // Tensor subclasses: func(*args) must itself be a tensor rebuild; the subclass type is not instantiated.
  'torch._tensor._rebuild_from_type_v2': (a, fail) => {
    const [func, , args, state] = a;
    if (!(func instanceof PyGlobal) || !TENSOR_REBUILDS.has(func.$global) || !Array.isArray(args)) {
      fail(`_rebuild_from_type_v2 with ${describe(func)} is not a tensor rebuild`);
    }
    const t = REDUCERS[(func as PyGlobal).$global]!(args as PyValue[], fail) as TorchTensor;
    if (state !== undefined && state !== null && !(state instanceof PyDict && state.size === 0)) t.state = state;
    return t;
  },
  'collections.OrderedDict': (a, fail) => dictFrom(new PyDict('collections.OrderedDict'), a[0], fail),
  'collections.defaultdict': (a, fail) => dictFrom(new PyDict('collections.defaultdict', a[0] ?? null), a[1], fail),
  'builtins.set': (a, fail) => new Set(a.length ? iterate(a[0]!, fail) : []),
  'builtins.frozenset': (a, fail) => new Set(a.length ? iterate(a[0]!, fail) : []),
  'builtins.slice': (a) => new PyObject('builtins.slice', Object.freeze([...a])),
  'builtins.complex': (a) => new PyObject('builtins.complex', Object.freeze([...a])),
  'builtins.bytearray': (a, fail) => bytesFrom(a, fail),
  // Protocol 2 writes Python 3 bytes as _codecs.encode(text, 'latin1').
  '_codecs.encode': (a, fail) => bytesFrom(a, fail),
  'torch.Size': (a, fail) => Object.freeze(a.length ? [...iterate(a[0]!, fail)] : []),
  'torch.device': (a) => new PyObject('torch.device', Object.freeze([...a])),
  'pathlib.PosixPath': (a) => new PyObject('pathlib.PosixPath', Object.freeze([...a])),
  'pathlib.WindowsPath': (a) => new PyObject('pathlib.WindowsPath', Object.freeze([...a])),
  'pathlib.PurePosixPath': (a) => new PyObject('pathlib.PurePosixPath', Object.freeze([...a])),
  'pathlib.PureWindowsPath': (a) => new PyObject('pathlib.PureWindowsPath', Object.freeze([...a])),
  // Protocol 0/1 instances: copyreg._reconstructor(cls, object, None) is cls.__new__(cls), like NEWOBJ.
  'copyreg._reconstructor': (a, fail) => {
    const [cls, base, state] = a;
    if (!(cls instanceof PyGlobal) || !(base instanceof PyGlobal) || canonical(base) !== 'builtins.object' || (state !== null && state !== undefined)) {
      fail(`copyreg._reconstructor is only accepted as (class, object, None)`);
    }
    return newObject(cls as PyGlobal, [], undefined);
  },
  'copyreg.__newobj__': (a, fail) => {
    if (!(a[0] instanceof PyGlobal)) fail(`copyreg.__newobj__ needs a class, got ${describe(a[0])}`);
    return newObject(a[0] as PyGlobal, a.slice(1), undefined);
  },
};

function rebuildTensor(a: readonly PyValue[], fail: (d: string) => never, isParameter: boolean): TorchTensor {
  const [storage, offset, size, stride, requiresGrad] = a;
  if (!(storage instanceof TorchStorage)) fail(`tensor rebuild expects a storage, got ${describe(storage)}`);
  const st = storage as TorchStorage;
  const off = count(offset, 'storage_offset', fail);
  const shape = intTuple(size, 'size', fail);
  const strides = intTuple(stride, 'stride', fail);
  if (shape.length !== strides.length) fail(`tensor rebuild: size has ${shape.length} dims but stride has ${strides.length}`);
  let numel = 1;
  let last = off;
  for (let k = 0; k < shape.length; k++) {
    numel *= shape[k]!;
    if (shape[k]! > 0) last += (shape[k]! - 1) * strides[k]!;
  }
  if (!Number.isSafeInteger(numel) || !Number.isSafeInteger(last)) fail(`tensor of size (${shape.join(', ')}) is too large`);
  if (numel > 0 && last >= st.numel) {
    fail(`tensor view (offset ${off}, size (${shape.join(', ')}), stride (${strides.join(', ')})) reaches element ${last} of storage '${st.key}' which has ${st.numel}`);
  }
  return new TorchTensor(st, off, Object.freeze(shape), Object.freeze(strides), requiresGrad === true, isParameter);
}

function rebuildParameter(a: readonly PyValue[], fail: (d: string) => never): TorchTensor {
  const t = a[0];
  if (!(t instanceof TorchTensor)) fail(`_rebuild_parameter expects a tensor, got ${describe(t)}`);
  const src = t as TorchTensor;
  return new TorchTensor(src.storage, src.storageOffset, src.shape, src.stride, a[1] === true, true);
}

function count(v: PyValue | undefined, what: string, fail: (d: string) => never): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${what} must be a non-negative integer, got ${describe(v)}`);
  return v as number;
}

function intTuple(v: PyValue | undefined, what: string, fail: (d: string) => never): number[] {
  if (!Array.isArray(v)) fail(`${what} must be a tuple, got ${describe(v)}`);
  const arr = v as PyValue[];
  if (arr.length > 64) fail(`${what} has ${arr.length} dims`);
  return arr.map((x) => count(x, what, fail));
}

function iterate(v: PyValue, fail: (d: string) => never): PyValue[] {
  if (Array.isArray(v)) return [...(v as PyValue[])];
  if (v instanceof Set) return [...v];
  if (v instanceof PyDict) return [...v.keys()];
  return fail(`expected an iterable, got ${describe(v)}`);
}

function dictFrom(d: PyDict, items: PyValue | undefined, fail: (d: string) => never): PyDict {
  if (items === undefined || items === null) return d;
  if (items instanceof PyDict) {
    for (const [k, v] of items) d.set(k, v);
    return d;
  }
  for (const pair of iterate(items, fail)) {
    if (!Array.isArray(pair) || pair.length !== 2) fail(`dict items must be (key, value) pairs, got ${describe(pair)}`);
    d.set((pair as PyValue[])[0]!, (pair as PyValue[])[1]!);
  }
  return d;
}

function bytesFrom(a: readonly PyValue[], fail: (d: string) => never): Uint8Array {
  const [x, enc] = a;
  if (x === undefined) return new Uint8Array(0);
  if (x instanceof Uint8Array) return new Uint8Array(x);
  if (typeof x === 'string' && (enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1')) {
    const out = new Uint8Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const c = x.charCodeAt(i);
      if (c > 255) fail('latin-1 text holds a character above U+00FF');
      out[i] = c;
    }
    return out;
  }
  return fail(`bytes can only be rebuilt from bytes or latin-1 text, got ${describe(x)}, ${describe(enc)}`);
}

/** cls.__new__(cls, *args) as data. Plain containers stay containers so SETITEMS/APPENDS work on them. */
function newObject(cls: PyGlobal, args: readonly PyValue[], kwargs: PyDict | undefined): PyValue {
  const q = canonical(cls);
  if (q === 'builtins.dict' || q === 'collections.OrderedDict') return new PyDict(q);
  if (q === 'builtins.list') return [];
  if (q === 'builtins.set' || q === 'builtins.frozenset') return new Set();
  if (q === 'builtins.object') return new PyObject(q, []);
  return new PyObject(q, Object.freeze([...args]), kwargs);
}

function alias(module: string): string {
  return Object.hasOwn(MODULE_ALIASES, module) ? MODULE_ALIASES[module]! : module;
}

function canonical(g: PyGlobal): string {
  return `${alias(g.module)}.${g.name}`;
}

/** Short type description for error messages (never the value: it may be an attacker's payload). */
export function describe(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (Array.isArray(v)) return Object.isFrozen(v) ? `a tuple of ${v.length}` : `a list of ${v.length}`;
  if (v instanceof Uint8Array) return `bytes (${v.byteLength})`;
  if (v instanceof PyDict) return `a ${v.$class} of ${v.size}`;
  if (v instanceof Set) return `a set of ${v.size}`;
  if (v instanceof PyGlobal) return `'${v.$global}'`;
  if (v instanceof PyObject) return `a ${v.$class} instance`;
  if (v instanceof TorchStorage) return `a ${v.storageType}`;
  if (v instanceof TorchTensor) return 'a tensor';
  return typeof v === 'string' ? `a str (${v.length})` : `a ${typeof v}`;
}

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID',
  0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE',
  0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET',
  0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT',
  0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS',
  0x47: 'BINFLOAT', 0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1',
  0x86: 'TUPLE2', 0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Decodes a pickle into an inert object tree. Throws CheckpointError for anything refused or malformed. */
export function unpickle(data: Uint8Array, options: UnpickleOptions = {}): PyValue {
  return new Unpickler(data, options.name ?? 'pickle', { ...DEFAULT_PICKLE_LIMITS, ...options.limits }).run();
}

/** One decoding pass. MARK positions live in `marks` (as stack lengths), never on the value stack. */
class Unpickler {
  private pos = 0;
  private op = 0;
  private opAt = 0;
  private readonly stack: PyValue[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PyValue>();
  private readonly storages = new Map<string, TorchStorage>();
  private readonly dv: DataView;
  private copied = 0;

  constructor(
    private readonly b: Uint8Array,
    private readonly file: string,
    private readonly lim: PickleLimits,
  ) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  private fail(detail: string): never {
    const name = OPCODE_NAMES[this.op] ?? `0x${this.op.toString(16)}`;
    throw new CheckpointError(this.file, `pickle: ${detail} (opcode ${name} at offset ${this.opAt})`);
  }

  run(): PyValue {
    if (this.b.byteLength > this.lim.maxBytes) {
      throw new CheckpointError(this.file, `pickle of ${this.b.byteLength} bytes exceeds the limit of ${this.lim.maxBytes}`);
    }
    const fail = (d: string): never => this.fail(d);
    for (;;) {
      if (this.pos >= this.b.byteLength) {
        this.opAt = this.pos;
        throw new CheckpointError(this.file, `pickle: truncated, no STOP opcode before the end (${this.b.byteLength} bytes)`);
      }
      this.opAt = this.pos;
      const op = (this.op = this.b[this.pos++]!);
      switch (op) {
        case 0x80: { // PROTO
          const v = this.u8();
          if (v > 5) this.fail(`unsupported pickle protocol ${v}`);
          break;
        }
        case 0x95: { // FRAME: a length prefix for buffering; the opcodes inside are read as usual
          const n = this.u64();
          if (n > this.b.byteLength - this.pos) this.fail(`frame of ${n} bytes runs past the end`);
          break;
        }
        case 0x2e: { // STOP
          const v = this.pop();
          this.checkDepth(v);
          return v;
        }
        case 0x28: // MARK
          if (this.marks.length >= this.lim.maxDepth) this.fail(`MARK nesting deeper than ${this.lim.maxDepth}`);
          this.marks.push(this.stack.length);
          break;
        case 0x30: // POP
          if (this.marks.length && this.marks[this.marks.length - 1] === this.stack.length) this.marks.pop();
          else this.pop();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.push(this.top());
          break;
        case 0x4e: this.push(null); break; // NONE
        case 0x88: this.push(true); break; // NEWTRUE
        case 0x89: this.push(false); break; // NEWFALSE
        case 0x4a: this.push(this.dv.getInt32(this.take(4), true)); break; // BININT
        case 0x4b: this.push(this.u8()); break; // BININT1
        case 0x4d: this.push(this.dv.getUint16(this.take(2), true)); break; // BININT2
        case 0x8a: this.push(this.long(this.u8())); break; // LONG1
        case 0x8b: this.push(this.long(this.u32())); break; // LONG4
        case 0x47: this.push(this.dv.getFloat64(this.take(8), false)); break; // BINFLOAT (big-endian)
        case 0x49: { // INT (text); protocol 0 spells booleans I01 / I00
          const s = this.line();
          this.push(s === '01' ? true : s === '00' ? false : this.textInt(s));
          break;
        }
        case 0x4c: this.push(this.textInt(this.line().replace(/L$/, ''))); break; // LONG (text)
        case 0x46: this.push(this.textFloat(this.line())); break; // FLOAT (text)
        case 0x58: this.push(this.text(this.u32())); break; // BINUNICODE
        case 0x8c: this.push(this.text(this.u8())); break; // SHORT_BINUNICODE
        case 0x8d: this.push(this.text(this.u64())); break; // BINUNICODE8
        case 0x54: { // BINSTRING: Python 2 str, decoded as torch.load does (utf-8)
          const n = this.dv.getInt32(this.take(4), true);
          if (n < 0) this.fail('negative string length');
          this.push(this.text(n));
          break;
        }
        case 0x55: this.push(this.text(this.u8())); break; // SHORT_BINSTRING
        case 0x53: this.push(this.quoted(this.line())); break; // STRING (text repr)
        case 0x56: this.push(rawUnicodeEscape(this.line())); break; // UNICODE (raw-unicode-escape text)
        case 0x42: this.push(new Uint8Array(this.bytes(this.u32()))); break; // BINBYTES
        case 0x43: this.push(new Uint8Array(this.bytes(this.u8()))); break; // SHORT_BINBYTES
        case 0x8e: this.push(new Uint8Array(this.bytes(this.u64()))); break; // BINBYTES8
        case 0x96: this.push(new Uint8Array(this.bytes(this.u64()))); break; // BYTEARRAY8
        case 0x97: this.fail('out-of-band buffers (NEXT_BUFFER) are not supported'); break;
        case 0x98: this.top(); break; // READONLY_BUFFER: no effect on an inert copy
        case 0x29: this.push(Object.freeze([])); break; // EMPTY_TUPLE
        case 0x85: this.push(Object.freeze([this.pop()])); break; // TUPLE1
        case 0x86: { // TUPLE2
          const b = this.pop();
          this.push(Object.freeze([this.pop(), b]));
          break;
        }
        case 0x87: { // TUPLE3
          const c = this.pop();
          const b = this.pop();
          this.push(Object.freeze([this.pop(), b, c]));
          break;
        }
        case 0x74: this.push(Object.freeze(this.popMark())); break; // TUPLE
        case 0x5d: this.push([]); break; // EMPTY_LIST
        case 0x6c: this.push(this.popMark()); break; // LIST
        case 0x7d: this.push(new PyDict()); break; // EMPTY_DICT
        case 0x64: { // DICT
          const items = this.popMark();
          const d = new PyDict();
          this.setItems(d, items);
          this.push(d);
          break;
        }
        case 0x8f: this.push(new Set()); break; // EMPTY_SET
        case 0x91: this.push(new Set(this.popMark())); break; // FROZENSET
        case 0x90: { // ADDITEMS
          const items = this.popMark();
          const s = this.top();
          if (!(s instanceof Set)) this.fail(`ADDITEMS on ${describe(s)}`);
          if (s.size + items.length > this.lim.maxContainerItems) this.fail('set too large');
          for (const x of items) s.add(x);
          break;
        }
        case 0x61: { // APPEND
          const v = this.pop();
          this.appendTo(this.top(), [v]);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark();
          this.appendTo(this.top(), items);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop();
          const k = this.pop();
          this.setItems(this.top(), [k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        case 0x71: this.put(this.u8()); break; // BINPUT
        case 0x72: this.put(this.u32()); break; // LONG_BINPUT
        case 0x94: this.put(this.memo.size); break; // MEMOIZE
        case 0x70: this.put(this.textIndex(this.line())); break; // PUT
        case 0x68: this.get(this.u8()); break; // BINGET
        case 0x6a: this.get(this.u32()); break; // LONG_BINGET
        case 0x67: this.get(this.textIndex(this.line())); break; // GET
        case 0x63: { // GLOBAL 'module\nname\n'
          const module = this.line();
          this.push(this.global(module, this.line()));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail(`STACK_GLOBAL needs two strings, got ${describe(module)}, ${describe(name)}`);
          this.push(this.global(module as string, name as string));
          break;
        }
        case 0x82: case 0x83: case 0x84: // EXT1/2/4
          this.fail('extension-registry codes are not supported');
          break;
        case 0x51: this.push(this.persistentLoad(this.pop())); break; // BINPERSID
        case 0x50: this.push(this.persistentLoad(this.line())); break; // PERSID (text id)
        case 0x52: { // REDUCE
          const args = this.pop();
          const fn = this.pop();
          this.push(this.call(fn, args, fail));
          break;
        }
        case 0x69: { // INST 'module\nname\n' + MARK args: calls the class in Python
          const module = this.line();
          const cls = this.global(module, this.line());
          this.push(this.call(cls, Object.freeze(this.popMark()), fail));
          break;
        }
        case 0x6f: { // OBJ: MARK cls args…: calls the class in Python
          const items = this.popMark();
          if (items.length === 0) this.fail('OBJ without a class');
          this.push(this.call(items[0]!, Object.freeze(items.slice(1)), fail));
          break;
        }
        case 0x81: { // NEWOBJ
          const args = this.pop();
          const cls = this.pop();
          this.push(this.newObj(cls, args, undefined));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          const kwargs = this.pop();
          const args = this.pop();
          const cls = this.pop();
          if (!(kwargs instanceof PyDict)) this.fail(`NEWOBJ_EX kwargs must be a dict, got ${describe(kwargs)}`);
          this.push(this.newObj(cls, args, kwargs as PyDict));
          break;
        }
        case 0x62: { // BUILD
          const state = this.pop();
          const obj = this.top();
          if (obj instanceof PyObject || obj instanceof PyDict || obj instanceof TorchTensor) obj.state = state;
          else this.fail(`BUILD on ${describe(obj)} (only instances, dicts and tensors take state)`);
          break;
        }
        default:
          this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
  }

  private push(v: PyValue): void {
    if (this.stack.length >= this.lim.maxStack) this.fail(`stack deeper than ${this.lim.maxStack}`);
    this.stack.push(v);
  }

  private pop(): PyValue {
    const m = this.marks.length ? this.marks[this.marks.length - 1]! : 0;
    if (this.stack.length <= m) this.fail('stack underflow');
    return this.stack.pop()!;
  }

  private top(): PyValue {
    const m = this.marks.length ? this.marks[this.marks.length - 1]! : 0;
    if (this.stack.length <= m) this.fail('stack underflow');
    return this.stack[this.stack.length - 1]!;
  }

  private popMark(): PyValue[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail('no MARK on the stack');
    return this.stack.splice(m as number);
  }

  private take(n: number): number {
    if (n > this.b.byteLength - this.pos) this.fail(`truncated: needs ${n} more bytes, ${this.b.byteLength - this.pos} left`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  private u8(): number {
    return this.b[this.take(1)]!;
  }

  private u32(): number {
    return this.dv.getUint32(this.take(4), true);
  }

  private u64(): number {
    const at = this.take(8);
    const hi = this.dv.getUint32(at + 4, true);
    if (hi >= 0x200000) this.fail('length does not fit in 2^53');
    return hi * 0x100000000 + this.dv.getUint32(at, true);
  }

  private bytes(n: number): Uint8Array {
    const at = this.take(n);
    return this.b.subarray(at, at + n);
  }

  private text(n: number): string {
    try {
      return utf8Strict.decode(this.bytes(n));
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      return this.fail('string is not valid UTF-8');
    }
  }

  /** A newline-terminated ASCII argument of the text opcodes. */
  private line(): string {
    const end = this.b.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('truncated: no newline after a text argument');
    const s = this.b.subarray(this.pos, end);
    this.pos = end + 1;
    let out = '';
    for (let i = 0; i < s.length; i += 8192) out += String.fromCharCode(...s.subarray(i, i + 8192));
    return out;
  }

  private long(n: number): number | bigint {
    if (n > this.lim.maxIntBytes) this.fail(`integer of ${n} bytes exceeds the limit of ${this.lim.maxIntBytes}`);
    const bs = this.bytes(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bs[i]!);
    if (bs[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return narrow(v);
  }

  private textInt(s: string): number | bigint {
    if (!/^[+-]?\d+$/.test(s) || s.length > this.lim.maxIntBytes * 3) this.fail('malformed integer text');
    return narrow(BigInt(s));
  }

  private textFloat(s: string): number {
    const t = s.trim().toLowerCase();
    if (t === 'inf' || t === '+inf') return Infinity;
    if (t === '-inf') return -Infinity;
    if (t === 'nan' || t === '+nan' || t === '-nan') return NaN;
    if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(t)) this.fail('malformed float text');
    return Number(t);
  }

  private textIndex(s: string): number {
    if (!/^\d{1,10}$/.test(s)) this.fail('malformed memo index');
    return Number(s);
  }

  /** Python 2 `repr(str)` as written by protocol 0: quotes and backslash escapes, bytes read as latin-1. */
  private quoted(s: string): string {
    const q = s[0];
    if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) this.fail('STRING argument is not quoted');
    const body = s.slice(1, -1);
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v', '0': '\0' };
    let out = '';
    for (let i = 0; i < body.length; i++) {
      const c = body[i]!;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = body[++i];
      if (e === undefined) this.fail('STRING ends with a backslash');
      if (e === 'x') {
        const h = body.slice(i + 1, i + 3);
        if (!/^[0-9a-fA-F]{2}$/.test(h)) this.fail('bad \\x escape in STRING');
        out += String.fromCharCode(parseInt(h, 16));
        i += 2;
      } else if (e! >= '0' && e! <= '7') {
        const m = /^[0-7]{1,3}/.exec(body.slice(i))![0];
        out += String.fromCharCode(parseInt(m, 8) & 0xff);
        i += m.length - 1;
      } else out += simple[e!] ?? `\\${e}`;
    }
    return out;
  }

  private put(i: number): void {
    if (!this.memo.has(i) && this.memo.size >= this.lim.maxMemo) this.fail(`more than ${this.lim.maxMemo} memo entries`);
    this.memo.set(i, this.top());
  }

  private get(i: number): void {
    if (!this.memo.has(i)) this.fail(`memo entry ${i} was never stored`);
    this.push(this.memo.get(i)!);
  }

  private global(module: string, name: string): PyGlobal {
    const bad = refusedGlobal(module, name);
    const spelled = `${module}.${name}`;
    if (bad) {
      const g = new PyGlobal(module, name);
      const canon = canonical(g);
      this.fail(`refused GLOBAL '${spelled}'${canon !== spelled ? ` (${canon})` : ''}: ${bad}; nothing was executed`);
    }
    if (!/^[A-Za-z_][\w.]*$/.test(module) || !/^[A-Za-z_][\w.]*$/.test(name)) this.fail(`malformed GLOBAL name`);
    return new PyGlobal(module, name);
  }

  /** Charges what a constructor call may copy: its arguments and the elements of each container among them. */
  private chargeCopy(args: readonly PyValue[]): void {
    let n = args.length;
    for (const a of args) {
      if (Array.isArray(a) || typeof a === 'string') n += a.length;
      else if (a instanceof Uint8Array) n += a.byteLength;
      else if (a instanceof Set || a instanceof PyDict) n += a.size;
    }
    this.copied += n;
    if (this.copied > this.lim.maxCopiedItems) this.fail(`constructors copied more than ${this.lim.maxCopiedItems} elements`);
  }

  private call(fn: PyValue, args: PyValue, fail: (d: string) => never): PyValue {
    if (!(fn instanceof PyGlobal)) return this.fail(`call of ${describe(fn)} (only named constructors can be called)`);
    if (!Array.isArray(args) || !Object.isFrozen(args)) return this.fail(`call arguments must be a tuple, got ${describe(args)}`);
    const canon = canonical(fn);
    const reducer = Object.hasOwn(REDUCERS, canon) ? REDUCERS[canon] : undefined;
    if (!reducer) {
      const spelled = fn.$global;
      return this.fail(`refused call of '${spelled}'${canon !== spelled ? ` (${canon})` : ''}: not one of the tensor/storage rebuilds or inert containers a checkpoint may construct; nothing was executed`);
    }
    this.chargeCopy(args as PyValue[]);
    return reducer(args as PyValue[], fail);
  }

  private newObj(cls: PyValue, args: PyValue, kwargs: PyDict | undefined): PyValue {
    if (!(cls instanceof PyGlobal)) return this.fail(`NEWOBJ of ${describe(cls)} (needs a class)`);
    if (!Array.isArray(args)) return this.fail(`NEWOBJ arguments must be a tuple, got ${describe(args)}`);
    this.chargeCopy(args as PyValue[]);
    return newObject(cls, args as PyValue[], kwargs);
  }

  /** torch's persistent ids: ('storage', torch.<T>Storage, key, location, numel). */
  private persistentLoad(pid: PyValue): PyValue {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length !== 5) {
      return this.fail(`unsupported persistent id ${describe(pid)} (expected ('storage', type, key, location, numel))`);
    }
    const [, type, key, location, numel] = pid as PyValue[];
    if (!(type instanceof PyGlobal) || type.module !== 'torch' || !Object.hasOwn(STORAGE_TYPES, type.name)) {
      return this.fail(`unsupported storage type ${describe(type)}`);
    }
    if (typeof key !== 'string' || !/^[\w.-]{1,128}$/.test(key)) return this.fail('storage key must be a short name');
    if (typeof location !== 'string') return this.fail(`storage location must be a string, got ${describe(location)}`);
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) return this.fail(`storage size must be a non-negative integer, got ${describe(numel)}`);
    const cacheKey = `${key}\0${type.name}`;
    const hit = this.storages.get(cacheKey);
    if (hit) {
      if (hit.numel !== numel) this.fail(`storage '${key}' is referenced with ${hit.numel} and ${numel} elements`);
      return hit;
    }
    const { dtype, itemSize } = STORAGE_TYPES[type.name]!;
    const s = new TorchStorage(key, `torch.${type.name}`, dtype, itemSize, location, numel);
    this.storages.set(cacheKey, s);
    return s;
  }

  private appendTo(target: PyValue, items: PyValue[]): void {
    let list: PyValue[];
    if (Array.isArray(target) && !Object.isFrozen(target)) list = target as PyValue[];
    else if (target instanceof PyObject) list = target.listItems ??= [];
    else return this.fail(`APPEND to ${describe(target)}`);
    if (list.length + items.length > this.lim.maxContainerItems) this.fail('list too large');
    for (const x of items) list.push(x);
  }

  private setItems(target: PyValue, items: PyValue[]): void {
    let d: PyDict;
    if (target instanceof PyDict) d = target;
    else if (target instanceof PyObject) d = target.dictItems ??= new PyDict();
    else return this.fail(`SETITEM on ${describe(target)}`);
    if (items.length % 2) this.fail('odd number of items for a dict');
    if (d.size + items.length / 2 > this.lim.maxContainerItems) this.fail('dict too large');
    for (let i = 0; i < items.length; i += 2) d.set(items[i]!, items[i + 1]!);
  }

  /**
   * Nesting depth of the result (a DFS that visits each object once; references back to an open object,
   * which omegaconf's `_parent` links create, do not add depth). Consumers that recurse stay bounded.
   */
  private checkDepth(root: PyValue): void {
    const seen = new Set<object>();
    const todo: [PyValue, number][] = [[root, 0]];
    while (todo.length) {
      const [v, d] = todo.pop()!;
      if (v === null || typeof v !== 'object' || v instanceof Uint8Array || v instanceof PyGlobal || v instanceof TorchStorage) continue;
      if (seen.has(v)) continue;
      seen.add(v);
      if (d > this.lim.maxDepth) {
        this.opAt = this.b.byteLength - 1;
        this.fail(`objects nested deeper than ${this.lim.maxDepth}`);
      }
      for (const c of children(v)) todo.push([c, d + 1]);
    }
  }
}

/** Direct children of a value, for walks over the tree. */
export function children(v: PyValue): PyValue[] {
  if (Array.isArray(v)) return v as PyValue[];
  if (v instanceof PyDict) {
    const out: PyValue[] = [];
    for (const [k, x] of v) out.push(k, x);
    if (v.state !== undefined) out.push(v.state);
    if (v.defaultFactory !== undefined) out.push(v.defaultFactory);
    return out;
  }
  if (v instanceof Set) return [...v];
  if (v instanceof PyObject) {
    const out: PyValue[] = [...v.args];
    if (v.kwargs) out.push(v.kwargs);
    if (v.state !== undefined) out.push(v.state);
    if (v.dictItems) out.push(v.dictItems);
    if (v.listItems) out.push(v.listItems);
    return out;
  }
  if (v instanceof TorchTensor) return v.state !== undefined ? [v.state] : [];
  return [];
}

function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Python's raw-unicode-escape: \uXXXX and \UXXXXXXXX escapes, every other byte is latin-1. */
function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (m, a: string | undefined, b: string | undefined) => {
    const cp = parseInt((a ?? b)!, 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}
