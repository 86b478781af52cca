import { describe, expect, it } from 'vitest';
import { CheckpointError } from '../../src/runtime/errors.js';
import { PyDict, PyGlobal, PyObject, TorchStorage, TorchTensor, refusedGlobal, unpickle, type PyValue } from '../../src/io/pickle.js';
import { cat, P, pickle, tensorArgs, tensorOps } from './torch-zip.js';

const load = (...body: (number[] | Uint8Array)[]): PyValue => unpickle(pickle(...body), { name: 't.pkl' });
const raw = (...parts: (number[] | Uint8Array)[]): PyValue => unpickle(cat(...parts), { name: 't.pkl' });

function refused(bytes: Uint8Array, message: string | RegExp, limits?: Parameters<typeof unpickle>[1]): CheckpointError {
  let err: unknown = null;
  try {
    unpickle(bytes, { name: 'bad.pkl', ...limits });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CheckpointError);
  const msg = (err as Error).message;
  if (typeof message === 'string') expect(msg).toContain(message);
  else expect(msg).toMatch(message);
  expect(msg).toContain("checkpoint 'bad.pkl'");
  return err as CheckpointError;
}

describe('unpickle: values', () => {
  it('integers: BININT, BININT1, BININT2, LONG1, LONG4, INT, LONG', () => {
    expect(load(P.binint(-5))).toBe(-5);
    expect(load(P.binint(0x7fffffff))).toBe(0x7fffffff);
    expect(load(P.binint1(200))).toBe(200);
    expect(load(P.binint2(60000))).toBe(60000);
    expect(load(P.long1([]))).toBe(0);
    expect(load(P.long1([0xff]))).toBe(-1);
    expect(load(P.long1([0x00, 0x80]))).toBe(-32768);
    expect(load(P.long1([0x00, 0x80, 0x00]))).toBe(32768);
    expect(load(P.long1([0, 0, 0, 0, 0, 0, 0, 0x80]))).toBe(-(2n ** 63n));
    expect(load(P.long1([1, 0, 0, 0, 0, 0, 0x20]))).toBe(2n ** 53n + 1n); // past 2^53: a bigint
    expect(load(P.long1([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f]))).toBe(2 ** 53 - 1);
    expect(load(P.long4([0x10, 0x27]))).toBe(10000);
    expect(load(P.int('-42'))).toBe(-42);
    expect(load(P.int('01'))).toBe(true);
    expect(load(P.int('00'))).toBe(false);
    expect(load(P.long('123456789012345678901234567890L'))).toBe(123456789012345678901234567890n);
  });

  it('floats, None and booleans: BINFLOAT, FLOAT, NONE, NEWTRUE, NEWFALSE', () => {
    expect(load(P.binfloat(-1.5e-7))).toBe(-1.5e-7);
    expect(load(P.binfloat(Infinity))).toBe(Infinity);
    expect(load(P.float('0.25'))).toBe(0.25);
    expect(load(P.float('inf'))).toBe(Infinity);
    expect(load(P.float('nan'))).toBeNaN();
    expect(load(P.float('1e-3'))).toBe(1e-3);
    expect(load(P.none)).toBeNull();
    expect(load(P.true)).toBe(true);
    expect(load(P.false)).toBe(false);
  });

  it('strings: BINUNICODE, SHORT_BINUNICODE, BINUNICODE8, (SHORT_)BINSTRING, STRING, UNICODE', () => {
    expect(load(P.binunicode('état ✓'))).toBe('état ✓');
    expect(load(P.shortBinunicode('model.net.'))).toBe('model.net.');
    expect(load(P.binunicode8('x'.repeat(300)))).toBe('x'.repeat(300));
    expect(load(P.shortBinstring('py2'))).toBe('py2');
    expect(load(P.binstring('py2 long'))).toBe('py2 long');
    expect(load(P.string(String.raw`'a\'b\n\x41\101'`))).toBe("a'b\nAA");
    expect(load(P.string('"dq"'))).toBe('dq');
    expect(load(P.unicode(String.raw`caf\u00e9 \U0001F600`))).toBe('café 😀');
  });

  it('bytes: BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8, _codecs.encode, bytearray', () => {
    expect([...(load(P.binbytes([1, 2, 3])) as Uint8Array)]).toEqual([1, 2, 3]);
    expect([...(load(P.shortBinbytes([255])) as Uint8Array)]).toEqual([255]);
    expect([...(load(P.binbytes8([7, 8])) as Uint8Array)]).toEqual([7, 8]);
    expect([...(load(P.bytearray8([9])) as Uint8Array)]).toEqual([9]);
    // protocol 2 spelling of b'\xff\x00A'
    const viaCodecs = load(P.global('_codecs', 'encode'), P.binunicode('\u00ff\u0000A'), P.binunicode('latin1'), P.tuple2, P.reduce);
    expect([...(viaCodecs as Uint8Array)]).toEqual([255, 0, 65]);
    const ba = load(P.global('__builtin__', 'bytearray'), P.shortBinbytes([4, 5]), P.tuple1, P.reduce);
    expect([...(ba as Uint8Array)]).toEqual([4, 5]);
    // READONLY_BUFFER leaves the value as it is
    expect([...(load(P.shortBinbytes([6]), P.readonlyBuffer) as Uint8Array)]).toEqual([6]);
  });

  it('tuples: EMPTY_TUPLE, TUPLE1-3, TUPLE (frozen arrays)', () => {
    expect(load(P.emptyTuple)).toEqual([]);
    expect(load(P.binint1(1), P.tuple1)).toEqual([1]);
    expect(load(P.binint1(1), P.binint1(2), P.tuple2)).toEqual([1, 2]);
    const t = load(P.binint1(1), P.binint1(2), P.binint1(3), P.tuple3) as PyValue[];
    expect(t).toEqual([1, 2, 3]);
    expect(Object.isFrozen(t)).toBe(true);
    expect(load(P.mark, P.binint1(4), P.none, P.binunicode('x'), P.tuple)).toEqual([4, null, 'x']);
  });

  it('lists: EMPTY_LIST, LIST, APPEND, APPENDS', () => {
    expect(load(P.emptyList, P.binint1(1), P.append, P.mark, P.binint1(2), P.binint1(3), P.appends)).toEqual([1, 2, 3]);
    const l = load(P.mark, P.binint1(5), P.list) as PyValue[];
    expect(l).toEqual([5]);
    expect(Object.isFrozen(l)).toBe(false);
  });

  it('dicts: EMPTY_DICT, DICT, SETITEM, SETITEMS (any key type, order kept)', () => {
    const d = load(P.emptyDict, P.binint1(0), P.binunicode('zero'), P.setitem, P.mark, P.binunicode('b'), P.binint1(2), P.binunicode('a'), P.binint1(1), P.setitems) as PyDict;
    expect(d).toBeInstanceOf(PyDict);
    expect([...d.entries()]).toEqual([[0, 'zero'], ['b', 2], ['a', 1]]);
    const d2 = load(P.mark, P.binunicode('k'), P.none, P.dict) as PyDict;
    expect(d2.get('k')).toBeNull();
  });

  it('sets: EMPTY_SET, ADDITEMS, FROZENSET, set()/frozenset() REDUCE', () => {
    expect([...(load(P.emptySet, P.mark, P.binint1(1), P.binint1(2), P.binint1(1), P.additems) as Set<PyValue>)]).toEqual([1, 2]);
    expect([...(load(P.mark, P.binunicode('a'), P.frozenset) as Set<PyValue>)]).toEqual(['a']);
    const s = load(P.global('__builtin__', 'set'), P.emptyList, P.binint1(3), P.append, P.tuple1, P.reduce) as Set<PyValue>;
    expect([...s]).toEqual([3]);
    expect([...(load(P.global('builtins', 'frozenset'), P.emptyTuple, P.reduce) as Set<PyValue>)]).toEqual([]);
  });

  it('memo: BINPUT/LONG_BINPUT/MEMOIZE/PUT and BINGET/LONG_BINGET/GET', () => {
    const v = load(
      P.emptyList, P.binput(1), P.pop, P.emptyTuple, P.longBinput(70000), P.pop, P.binunicode('s'), P.put(9), P.pop, P.emptyDict, P.memoize, P.pop,
      P.mark, P.binget(1), P.longBinget(70000), P.get(9), P.longBinget(3), P.tuple,
    ) as PyValue[];
    expect(v).toEqual([[], [], 's', new PyDict()]);
    expect(Object.isFrozen(v[0])).toBe(false);
    expect(Object.isFrozen(v[1])).toBe(true);
    expect(v[3]).toBeInstanceOf(PyDict); // MEMOIZE stored at index memo.size = 3
  });

  it('memo: a value fetched twice is the same object; cycles are allowed', () => {
    const pair = load(P.emptyList, P.binput(0), P.binget(0), P.tuple2) as PyValue[];
    expect(pair[0]).toBe(pair[1]);
    const cyc = load(P.emptyList, P.binput(0), P.binget(0), P.append) as PyValue[];
    expect(cyc[0]).toBe(cyc);
    const d = load(P.emptyDict, P.binput(0), P.binunicode('self'), P.binget(0), P.setitem) as PyDict;
    expect(d.get('self')).toBe(d);
  });

  it('stack ops: POP, POP_MARK, DUP, PROTO, FRAME', () => {
    expect(load(P.binint1(1), P.binint1(2), P.pop)).toBe(1);
    expect(load(P.binint1(1), P.mark, P.binint1(2), P.binint1(3), P.popMark)).toBe(1);
    expect(load(P.binint1(1), P.mark, P.pop)).toBe(1); // POP right after MARK drops the mark
    const dup = load(P.emptyList, P.dup, P.tuple2) as PyValue[];
    expect(dup[0]).toBe(dup[1]);
    const body = cat(P.binint1(7));
    expect(raw(P.proto(4), P.frame(body.length + 1), body, P.stop)).toBe(7);
    expect(raw(P.proto(5), P.binint1(8), P.stop)).toBe(8);
    expect(raw(P.binint1(9), P.stop)).toBe(9); // protocol 0/1 have no PROTO opcode
  });

  it('GLOBAL / STACK_GLOBAL used as values are inert PyGlobal references', () => {
    const g = load(P.global('typing', 'Any')) as PyGlobal;
    expect(g).toBeInstanceOf(PyGlobal);
    expect(g.$global).toBe('typing.Any');
    expect((load(P.global('__builtin__', 'dict')) as PyGlobal).$global).toBe('__builtin__.dict');
    expect((load(P.global('__builtin__', 'long')) as PyGlobal).$global).toBe('__builtin__.long');
    expect((raw(P.proto(4), P.stackGlobal('torch', 'float16'), P.stop) as PyGlobal).$global).toBe('torch.float16');
  });

  it('NEWOBJ / NEWOBJ_EX / BUILD make placeholders with args, kwargs, state and items', () => {
    const o = load(P.global('omegaconf.dictconfig', 'DictConfig'), P.emptyTuple, P.newobj, P.emptyDict, P.binunicode('_content'), P.binint1(1), P.setitem, P.build) as PyObject;
    expect(o).toBeInstanceOf(PyObject);
    expect(o.$class).toBe('omegaconf.dictconfig.DictConfig');
    expect((o.state as PyDict).get('_content')).toBe(1);
    const kw = load(P.global('m', 'C'), P.binint1(1), P.tuple1, P.emptyDict, P.binunicode('k'), P.binint1(2), P.setitem, P.newobjEx) as PyObject;
    expect(kw.args).toEqual([1]);
    expect(kw.kwargs!.get('k')).toBe(2);
    // A dict subclass (Lightning's AttributeDict): NEWOBJ then SETITEMS, then BUILD of its __dict__.
    const ad = load(P.global('pytorch_lightning.utilities.parsing', 'AttributeDict'), P.emptyTuple, P.newobj, P.mark, P.binunicode('lr'), P.binfloat(1e-4), P.setitems) as PyObject;
    expect(ad.dictItems!.get('lr')).toBe(1e-4);
    const ls = load(P.global('m', 'MyList'), P.emptyTuple, P.newobj, P.binint1(1), P.append) as PyObject;
    expect(ls.listItems).toEqual([1]);
    // NEWOBJ of plain containers gives plain containers
    expect(load(P.global('collections', 'OrderedDict'), P.emptyTuple, P.newobj)).toBeInstanceOf(PyDict);
    expect(load(P.global('__builtin__', 'list'), P.emptyTuple, P.newobj)).toEqual([]);
  });

  it('BUILD on a dict keeps the state aside (state_dict._metadata)', () => {
    const d = load(P.global('collections', 'OrderedDict'), P.emptyTuple, P.reduce, P.emptyDict, P.binunicode('_metadata'), P.emptyDict, P.setitem, P.build) as PyDict;
    expect(d.$class).toBe('collections.OrderedDict');
    expect(d.size).toBe(0);
    expect((d.state as PyDict).has('_metadata')).toBe(true);
  });

  it('REDUCE of the inert constructors: OrderedDict, defaultdict, torch.Size, slice, complex, PosixPath, device', () => {
    const od = load(P.global('collections', 'OrderedDict'), P.emptyList, P.binunicode('a'), P.binint1(1), P.tuple2, P.append, P.tuple1, P.reduce) as PyDict;
    expect([...od]).toEqual([['a', 1]]);
    const dd = load(P.global('collections', 'defaultdict'), P.global('__builtin__', 'dict'), P.tuple1, P.reduce) as PyDict;
    expect(dd.$class).toBe('collections.defaultdict');
    expect((dd.defaultFactory as PyGlobal).$global).toBe('__builtin__.dict');
    expect(load(P.global('torch', 'Size'), P.binint1(2), P.binint1(3), P.tuple2, P.tuple1, P.reduce)).toEqual([2, 3]);
    expect((load(P.global('__builtin__', 'slice'), P.none, P.binint1(3), P.none, P.tuple3, P.reduce) as PyObject).args).toEqual([null, 3, null]);
    expect((load(P.global('builtins', 'complex'), P.binfloat(1), P.binfloat(2), P.tuple2, P.reduce) as PyObject).$class).toBe('builtins.complex');
    expect((load(P.global('pathlib', 'PosixPath'), P.binunicode('logs'), P.tuple1, P.reduce) as PyObject).args).toEqual(['logs']);
    expect((load(P.global('torch', 'device'), P.binunicode('cuda'), P.binint1(0), P.tuple2, P.reduce) as PyObject).$class).toBe('torch.device');
  });

  it('protocol 0/1 instances: copyreg._reconstructor(cls, object, None) and INST/OBJ of allowed constructors', () => {
    const o = raw(P.global('copy_reg', '_reconstructor'), P.mark, P.global('m', 'Cfg'), P.global('__builtin__', 'object'), P.none, P.tuple, P.reduce,
      P.mark, P.shortBinstring('x'), P.binint1(1), P.dict, P.build, P.stop) as PyObject;
    expect(o.$class).toBe('m.Cfg');
    expect((o.state as PyDict).get('x')).toBe(1);
    expect(raw(P.mark, P.inst('collections', 'OrderedDict'), P.stop)).toBeInstanceOf(PyDict);
    expect(raw(P.mark, P.global('collections', 'OrderedDict'), P.obj, P.stop)).toBeInstanceOf(PyDict);
  });

  it('BINPERSID + _rebuild_tensor_v2 / _rebuild_parameter / _rebuild_from_type_v2 give tensor views', () => {
    const t = load(tensorOps({ storageKey: '7', storageType: 'HalfStorage', storageNumel: 24, offset: 4, shape: [2, 3], stride: [1, 2] })) as TorchTensor;
    expect(t).toBeInstanceOf(TorchTensor);
    expect(t.storage).toBeInstanceOf(TorchStorage);
    expect([t.storage.key, t.storage.dtype, t.storage.itemSize, t.storage.numel, t.storage.location]).toEqual(['7', 'f16', 2, 24, 'cpu']);
    expect([t.storageOffset, t.shape, t.stride, t.isParameter]).toEqual([4, [2, 3], [1, 2], false]);
    const p = load(tensorOps({ storageKey: '0', storageNumel: 4, shape: [4], parameter: true })) as TorchTensor;
    expect([p.isParameter, p.requiresGrad]).toEqual([true, true]);
    // two tensors over one storage key share the storage object
    const pair = load(tensorOps({ storageKey: '0', storageNumel: 8, shape: [4] }), tensorOps({ storageKey: '0', storageNumel: 8, offset: 4, shape: [4] }), P.tuple2) as TorchTensor[];
    expect(pair[0]!.storage).toBe(pair[1]!.storage);
    const sub = load(P.global('torch._tensor', '_rebuild_from_type_v2'), P.mark, P.global('torch._utils', '_rebuild_tensor_v2'), P.global('torch', 'Tensor'),
      tensorArgs({ storageKey: '1', storageNumel: 2, shape: [2] }), P.emptyDict, P.tuple, P.reduce) as TorchTensor;
    expect(sub).toBeInstanceOf(TorchTensor);
    expect(sub.shape).toEqual([2]);
  });
});

describe('unpickle: refusals', () => {
  const payload = 'fmboost-test-payload';

  it('refuses os.system / posix.system / nt.system / subprocess via REDUCE, naming the GLOBAL', () => {
    for (const [m, n] of [['os', 'system'], ['posix', 'system'], ['nt', 'system'], ['subprocess', 'Popen'], ['subprocess', 'check_output'], ['runpy', '_run_code'], ['importlib', 'import_module'], ['pickle', 'loads'], ['socket', 'socket'], ['shutil', 'rmtree'], ['os.path', 'join']] as const) {
      const err = refused(pickle(P.global(m, n), P.binunicode(payload), P.tuple1, P.reduce), `refused GLOBAL '${m}.${n}'`);
      expect(err.message).not.toContain(payload);
    }
  });

  it('refuses builtins that run code or reach attributes, in both spellings and via STACK_GLOBAL', () => {
    for (const n of ['eval', 'exec', 'compile', 'getattr', 'setattr', 'open', '__import__', 'globals', 'vars', 'input', 'breakpoint']) {
      refused(pickle(P.global('__builtin__', n), P.binunicode(payload), P.tuple1, P.reduce), `refused GLOBAL '__builtin__.${n}' (builtins.${n})`);
      refused(cat(P.proto(4), P.stackGlobal('builtins', n), P.stop), `refused GLOBAL 'builtins.${n}'`);
    }
    // getattr(obj, name) chains are the classic way to reach os.system from an innocent-looking class
    refused(pickle(P.global('builtins', 'getattr'), P.global('collections', 'OrderedDict'), P.binunicode('__init__'), P.tuple2, P.reduce), "refused GLOBAL 'builtins.getattr'");
  });

  it('refuses REDUCE / INST / OBJ of unknown callables, even from harmless-looking modules', () => {
    refused(pickle(P.global('omegaconf.dictconfig', 'DictConfig'), P.emptyTuple, P.reduce), "refused call of 'omegaconf.dictconfig.DictConfig'");
    refused(pickle(P.global('mymodule', 'Foo'), P.binunicode(payload), P.tuple1, P.reduce), "refused call of 'mymodule.Foo'");
    refused(pickle(P.global('numpy', 'load'), P.emptyTuple, P.reduce), "refused call of 'numpy.load'");
    refused(pickle(P.global('torch', 'load'), P.emptyTuple, P.reduce), "refused call of 'torch.load'");
    refused(cat(P.mark, P.binunicode(payload), P.inst('mymodule', 'Foo'), P.stop), "refused call of 'mymodule.Foo'");
    refused(cat(P.mark, P.global('mymodule', 'Foo'), P.obj, P.stop), "refused call of 'mymodule.Foo'");
    // defaultdict is allowed as a constructor, but a non-global "callable" never is
    refused(pickle(P.emptyDict, P.emptyTuple, P.reduce), 'call of a builtins.dict of 0');
    refused(pickle(P.global('collections', 'OrderedDict'), P.emptyList, P.reduce), 'call arguments must be a tuple');
    refused(pickle(P.global('copyreg', '_reconstructor'), P.global('m', 'C'), P.global('m', 'Base'), P.none, P.tuple3, P.reduce), 'only accepted as (class, object, None)');
    refused(pickle(P.global('torch._tensor', '_rebuild_from_type_v2'), P.mark, P.global('m', 'f'), P.none, P.emptyTuple, P.none, P.tuple, P.reduce), "_rebuild_from_type_v2 with 'm.f' is not a tensor rebuild");
  });

  it('refuses BUILD on classes, extension codes, out-of-band buffers, bad persistent ids and storages', () => {
    refused(pickle(P.global('m', 'C'), P.emptyDict, P.build), "BUILD on 'm.C'");
    refused(pickle(P.ext1(1)), 'extension-registry codes are not supported');
    refused(cat(P.proto(5), P.nextBuffer, P.stop), 'out-of-band buffers');
    refused(pickle(P.binunicode('x'), P.binpersid), 'unsupported persistent id a str');
    refused(pickle(P.mark, P.binunicode('storage'), P.global('torch', 'ComplexFloatStorage'), P.binunicode('0'), P.binunicode('cpu'), P.binint1(1), P.tuple, P.binpersid), "unsupported storage type 'torch.ComplexFloatStorage'");
    refused(pickle(P.mark, P.binunicode('storage'), P.global('torch', 'FloatStorage'), P.binunicode('../x'), P.binunicode('cpu'), P.binint1(1), P.tuple, P.binpersid), 'storage key must be a short name');
  });

  it('refuses tensor views outside their storage and malformed sizes', () => {
    refused(pickle(tensorOps({ storageKey: '0', storageNumel: 5, shape: [2, 3] })), "reaches element 5 of storage '0' which has 5");
    refused(pickle(tensorOps({ storageKey: '0', storageNumel: 100, offset: 95, shape: [2, 3] })), 'reaches element 100');
    refused(pickle(tensorOps({ storageKey: '0', storageNumel: 6, shape: [2, 3], stride: [1] })), 'size has 2 dims but stride has 1');
    refused(pickle(tensorOps({ storageKey: '0', storageNumel: 6, shape: [2], stride: [-1] })), 'stride must be a non-negative integer');
    // a storage key reused with a different size
    refused(pickle(tensorOps({ storageKey: '0', storageNumel: 6, shape: [2] }), tensorOps({ storageKey: '0', storageNumel: 7, shape: [2] }), P.tuple2), 'referenced with 6 and 7 elements');
  });

  it('names unknown opcodes with their offset, and refuses malformed streams', () => {
    refused(cat(P.proto(2), [0xff], P.stop), 'unknown opcode 0xff (opcode 0xff at offset 2)');
    refused(cat(P.proto(6), P.stop), 'unsupported pickle protocol 6');
    refused(cat(P.proto(2), P.binint1(1)), 'truncated, no STOP');
    refused(cat(P.proto(2), [0x4a, 1, 2]), 'truncated: needs 4 more bytes');
    refused(cat(P.proto(2), [0x58, 0xff, 0xff, 0xff, 0x7f], P.stop), 'truncated: needs 2147483647 more bytes');
    refused(cat(P.proto(4), [0x8d, 0, 0, 0, 0, 0, 0, 0x20, 0], P.stop), 'length does not fit in 2^53');
    refused(cat(P.proto(4), P.frame(1000), P.stop), 'frame of 1000 bytes runs past the end');
    refused(pickle(P.pop), 'stack underflow');
    refused(pickle(P.binint1(1), P.mark, P.append), 'stack underflow');
    refused(pickle(P.appends), 'no MARK on the stack');
    refused(pickle(P.binget(3)), 'memo entry 3 was never stored');
    refused(pickle(P.emptyDict, P.binint1(1), P.setitem), 'stack underflow');
    refused(pickle(P.emptyDict, P.mark, P.binint1(1), P.setitems), 'odd number of items');
    refused(pickle(P.binint1(1), P.binint1(2), P.append), 'APPEND to a number');
    refused(pickle(P.emptyTuple, P.binint1(2), P.append), 'APPEND to a tuple of 0');
    refused(pickle([0x58, 2, 0, 0, 0, 0xc3, 0x28]), 'not valid UTF-8');
    refused(pickle(P.int('12x')), 'malformed integer text');
    refused(pickle(P.float('1.2.3')), 'malformed float text');
    refused(pickle(P.string('noquotes')), 'not quoted');
    refused(cat(P.proto(2), [0x63], new TextEncoder().encode('torch'), P.stop), 'no newline');
    refused(pickle(P.global('a b', 'c')), 'malformed GLOBAL name');
    refused(pickle(P.global('__proto__', '__proto__')), "refused GLOBAL '__proto__.__proto__'");
  });

  it('enforces the limits without allocating first', () => {
    refused(pickle(P.binint1(1)), 'exceeds the limit of 4', { limits: { maxBytes: 4 } });
    refused(pickle(P.emptyList, P.binput(0), P.binput(1), P.binput(2)), 'more than 2 memo entries', { limits: { maxMemo: 2 } });
    refused(pickle(...Array(5).fill(P.mark)), 'MARK nesting deeper than 4', { limits: { maxDepth: 4 } });
    refused(pickle(...Array(6).fill(P.none)), 'stack deeper than 5', { limits: { maxStack: 5 } });
    refused(pickle(P.long4(new Array(300).fill(1))), 'integer of 300 bytes exceeds the limit of 256');
    refused(pickle(P.emptyList, P.mark, P.none, P.none, P.none, P.appends), 'list too large', { limits: { maxContainerItems: 2 } });
    // Nesting without MARKs: N empty lists, then N-1 APPENDs put each inside the previous one.
    const n = 50;
    const deep = pickle(...Array(n).fill(P.emptyList), ...Array(n - 1).fill(P.append));
    refused(deep, 'objects nested deeper than 20', { limits: { maxDepth: 20 } });
    expect(Array.isArray(unpickle(deep))).toBe(true);
    // copy amplification: one memoised list of 10,000 items handed to set() over and over
    const amplify = pickle(P.global('builtins', 'set'), P.binput(1), P.pop, P.emptyList, P.binput(0), P.mark, ...Array(10_000).fill(P.none), P.appends,
      ...Array(3000).fill([...P.binget(1), ...P.binget(0), ...P.tuple1, ...P.reduce, ...P.pop]));
    refused(amplify, 'constructors copied more than 100000 elements', { limits: { maxCopiedItems: 100_000 } });
    const t0 = performance.now();
    refused(amplify, `constructors copied more than ${2 ** 24} elements`);
    expect(performance.now() - t0).toBeLessThan(5000);
    // a BINUNICODE8 that claims 2^52 bytes fails on the length, it never allocates
    refused(cat(P.proto(4), [0x8d, 0, 0, 0, 0, 0, 0, 0x10, 0], P.stop), 'needs 4503599627370496 more bytes');
  });

  it('refusedGlobal: types and torch/collections names pass, code execution does not', () => {
    for (const [m, n] of [['torch._utils', '_rebuild_tensor_v2'], ['collections', 'OrderedDict'], ['__builtin__', 'dict'], ['__builtin__', 'long'], ['typing', 'Any'], ['omegaconf.nodes', 'AnyNode'], ['numpy', 'dtype']]) {
      expect(refusedGlobal(m!, n!)).toBeNull();
    }
    for (const [m, n] of [['os', 'system'], ['posix', 'system'], ['__builtin__', 'eval'], ['builtins', 'getattr'], ['subprocess', 'run'], ['torch.hub', 'load'], ['functools', 'partial'], ['operator', 'attrgetter'], ['m', '__reduce_ex__']]) {
      expect(refusedGlobal(m!, n!)).not.toBeNull();
    }
  });
});
