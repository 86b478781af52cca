/**
 * Test-side builders for pickles and torch.save-style zips, so tests can hand-craft exactly the opcodes,
 * storages and archive layouts they need (including malformed ones). Written from the pickle opcode table
 * (CPython pickletools) and PKWARE APPNOTE; not used by the library.
 */

export function cat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const enc = new TextEncoder();
const le = (n: number, bytes: number): number[] => {
  const out: number[] = [];
  let v = BigInt(n);
  for (let i = 0; i < bytes; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
};

/** One function per opcode (argument encodings as in pickletools). */
export const P = {
  proto: (v: number) => [0x80, v],
  frame: (n: number) => [0x95, ...le(n, 8)],
  stop: [0x2e],
  mark: [0x28],
  pop: [0x30],
  popMark: [0x31],
  dup: [0x32],
  none: [0x4e],
  true: [0x88],
  false: [0x89],
  binint: (v: number) => [0x4a, ...le(v >>> 0, 4)],
  binint1: (v: number) => [0x4b, v],
  binint2: (v: number) => [0x4d, ...le(v, 2)],
  long1: (bytes: number[]) => [0x8a, bytes.length, ...bytes],
  long4: (bytes: number[]) => [0x8b, ...le(bytes.length, 4), ...bytes],
  int: (text: string) => [0x49, ...enc.encode(text + '\n')],
  long: (text: string) => [0x4c, ...enc.encode(text + '\n')],
  float: (text: string) => [0x46, ...enc.encode(text + '\n')],
  binfloat: (v: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    return [0x47, ...b];
  },
  binunicode: (s: string) => {
    const b = enc.encode(s);
    return [0x58, ...le(b.length, 4), ...b];
  },
  shortBinunicode: (s: string) => {
    const b = enc.encode(s);
    return [0x8c, b.length, ...b];
  },
  binunicode8: (s: string) => {
    const b = enc.encode(s);
    return [0x8d, ...le(b.length, 8), ...b];
  },
  shortBinstring: (s: string) => [0x55, s.length, ...enc.encode(s)],
  binstring: (s: string) => [0x54, ...le(s.length, 4), ...enc.encode(s)],
  string: (repr: string) => [0x53, ...latin1(repr + '\n')],
  unicode: (raw: string) => [0x56, ...latin1(raw + '\n')],
  binbytes: (b: number[]) => [0x42, ...le(b.length, 4), ...b],
  shortBinbytes: (b: number[]) => [0x43, b.length, ...b],
  binbytes8: (b: number[]) => [0x8e, ...le(b.length, 8), ...b],
  bytearray8: (b: number[]) => [0x96, ...le(b.length, 8), ...b],
  emptyTuple: [0x29],
  tuple: [0x74],
  tuple1: [0x85],
  tuple2: [0x86],
  tuple3: [0x87],
  emptyList: [0x5d],
  list: [0x6c],
  append: [0x61],
  appends: [0x65],
  emptyDict: [0x7d],
  dict: [0x64],
  setitem: [0x73],
  setitems: [0x75],
  emptySet: [0x8f],
  additems: [0x90],
  frozenset: [0x91],
  binput: (i: number) => [0x71, i],
  longBinput: (i: number) => [0x72, ...le(i, 4)],
  memoize: [0x94],
  put: (i: number) => [0x70, ...enc.encode(`${i}\n`)],
  binget: (i: number) => [0x68, i],
  longBinget: (i: number) => [0x6a, ...le(i, 4)],
  get: (i: number) => [0x67, ...enc.encode(`${i}\n`)],
  global: (module: string, name: string) => [0x63, ...enc.encode(`${module}\n${name}\n`)],
  stackGlobal: (module: string, name: string) => [...P.shortBinunicode(module), ...P.shortBinunicode(name), 0x93],
  inst: (module: string, name: string) => [0x69, ...enc.encode(`${module}\n${name}\n`)],
  obj: [0x6f],
  reduce: [0x52],
  build: [0x62],
  newobj: [0x81],
  newobjEx: [0x92],
  binpersid: [0x51],
  readonlyBuffer: [0x98],
  nextBuffer: [0x97],
  ext1: (code: number) => [0x82, code],
};

function latin1(s: string): number[] {
  return [...s].map((c) => c.charCodeAt(0) & 0xff);
}

/** A complete pickle: protocol header, body, STOP. */
export function pickle(...body: (number[] | Uint8Array)[]): Uint8Array {
  return cat(P.proto(2), ...body, P.stop);
}

export interface TensorSpec {
  storageKey: string;
  storageType?: string; // 'FloatStorage' …
  storageNumel: number;
  offset?: number;
  shape: number[];
  stride?: number[];
  parameter?: boolean;
}

/** Row-major strides. */
export function contiguousStride(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  for (let k = shape.length - 1, acc = 1; k >= 0; k--) {
    s[k] = acc;
    acc *= shape[k]!;
  }
  return s;
}

function intTuple(xs: number[]): number[] {
  return [...P.mark, ...xs.flatMap((x) => (x >= 0 && x < 256 ? P.binint1(x) : P.binint(x))), ...P.tuple];
}

/** The argument tuple of _rebuild_tensor_v2: (storage via BINPERSID, offset, size, stride, requires_grad, hooks). */
export function tensorArgs(t: TensorSpec): number[] {
  return [
    ...P.mark,
    ...P.mark,
    ...P.binunicode('storage'),
    ...P.global('torch', t.storageType ?? 'FloatStorage'),
    ...P.binunicode(t.storageKey),
    ...P.binunicode('cpu'),
    ...P.binint(t.storageNumel),
    ...P.tuple,
    ...P.binpersid,
    ...P.binint(t.offset ?? 0),
    ...intTuple(t.shape),
    ...intTuple(t.stride ?? contiguousStride(t.shape)),
    ...P.false,
    ...P.global('collections', 'OrderedDict'),
    ...P.emptyTuple,
    ...P.reduce,
    ...P.tuple,
  ];
}

/** Pickle ops that leave one rebuilt tensor on the stack, as torch.save writes it (protocol 2). */
export function tensorOps(t: TensorSpec): number[] {
  const rebuild = [...P.global('torch._utils', '_rebuild_tensor_v2'), ...tensorArgs(t), ...P.reduce];
  if (!t.parameter) return rebuild;
  return [
    ...P.global('torch._utils', '_rebuild_parameter'),
    ...rebuild,
    ...P.true,
    ...P.global('collections', 'OrderedDict'),
    ...P.emptyTuple,
    ...P.reduce,
    ...P.tuple3,
    ...P.reduce,
  ];
}

/** `{'state_dict': OrderedDict(key → tensor)}` (or the OrderedDict itself when `wrap` is false). */
export function stateDictPickle(tensors: Record<string, TensorSpec>, wrap = true): Uint8Array {
  const items = Object.entries(tensors).flatMap(([k, t]) => [...P.binunicode(k), ...tensorOps(t)]);
  const sd = [...P.global('collections', 'OrderedDict'), ...P.emptyTuple, ...P.reduce, ...P.mark, ...items, ...P.setitems];
  return wrap ? pickle(P.emptyDict, P.binunicode('state_dict'), sd, P.setitem) : pickle(sd);
}

export interface ZipRecord {
  name: string;
  data: Uint8Array;
  /** Compression method written in both headers (data is stored as given). */
  method?: number;
  flags?: number;
}

export interface ZipOptions {
  /** Pad local headers so record data starts at a multiple of this (torch uses 64). */
  align?: number;
  /** Write ZIP64 records and extra fields even though nothing needs them. */
  zip64?: boolean;
  comment?: Uint8Array;
}

/** A zip of stored records, laid out as torch.save writes them (aligned data via local extra padding). */
export function storedZip(records: ZipRecord[], o: ZipOptions = {}): Uint8Array {
  const align = o.align ?? 64;
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let at = 0;
  for (const r of records) {
    const name = enc.encode(r.name);
    const base = 30 + name.length;
    const pad = align > 1 ? (align - ((at + base + 4) % align)) % align : 0;
    const extra = align > 1 ? cat([0xfe, 0xca, ...le(pad, 2)], new Uint8Array(pad)) : new Uint8Array(0);
    const local = cat(
      le(0x04034b50, 4), le(20, 2), le(r.flags ?? 0, 2), le(r.method ?? 0, 2), le(0, 4), le(0, 4),
      le(r.data.length, 4), le(r.data.length, 4), le(name.length, 2), le(extra.length, 2), name, extra,
    );
    const z64 = o.zip64 ? cat(le(1, 2), le(24, 2), le(r.data.length, 8), le(r.data.length, 8), le(at, 8)) : new Uint8Array(0);
    const sat = (v: number): number[] => (o.zip64 ? le(0xffffffff, 4) : le(v, 4));
    central.push(cat(
      le(0x02014b50, 4), le(45, 2), le(45, 2), le(r.flags ?? 0, 2), le(r.method ?? 0, 2), le(0, 4), le(0, 4),
      sat(r.data.length), sat(r.data.length), le(name.length, 2), le(z64.length, 2), le(0, 2), le(0, 2), le(0, 2), le(0, 4),
      sat(at), name, z64,
    ));
    parts.push(local, r.data);
    at += local.length + r.data.length;
  }
  const cd = cat(...central);
  const cdOffset = at;
  const comment = o.comment ?? new Uint8Array(0);
  const tail: Uint8Array[] = [];
  if (o.zip64) {
    const z64At = cdOffset + cd.length;
    tail.push(cat(
      le(0x06064b50, 4), le(44, 8), le(45, 2), le(45, 2), le(0, 4), le(0, 4),
      le(records.length, 8), le(records.length, 8), le(cd.length, 8), le(cdOffset, 8),
    ));
    tail.push(cat(le(0x07064b50, 4), le(0, 4), le(z64At, 8), le(1, 4)));
    tail.push(cat(le(0x06054b50, 4), le(0, 2), le(0, 2), le(0xffff, 2), le(0xffff, 2), le(0xffffffff, 4), le(0xffffffff, 4), le(comment.length, 2), comment));
  } else {
    tail.push(cat(le(0x06054b50, 4), le(0, 2), le(0, 2), le(records.length, 2), le(records.length, 2), le(cd.length, 4), le(cdOffset, 4), le(comment.length, 2), comment));
  }
  return cat(...parts, cd, ...tail);
}

/** Storage bytes of little-endian values of one element type. */
export function storageBytes(type: 'f32' | 'f64' | 'f16bits' | 'i16' | 'i64' | 'u8', values: ArrayLike<number>, bigEndian = false): Uint8Array {
  const size = { f32: 4, f64: 8, f16bits: 2, i16: 2, i64: 8, u8: 1 }[type];
  const b = new Uint8Array(values.length * size);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const at = i * size;
    if (type === 'f32') dv.setFloat32(at, v, !bigEndian);
    else if (type === 'f64') dv.setFloat64(at, v, !bigEndian);
    else if (type === 'f16bits') dv.setUint16(at, v, !bigEndian);
    else if (type === 'i16') dv.setInt16(at, v, !bigEndian);
    else if (type === 'i64') dv.setBigInt64(at, BigInt(v), !bigEndian);
    else dv.setUint8(at, v);
  }
  return b;
}

/** A torch.save-like zip around a pickle and its storages ('<prefix>/data.pkl', '<prefix>/data/<key>', …). */
export function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>, o: { prefix?: string; byteorder?: string | null; zip64?: boolean } = {}): Uint8Array {
  const p = o.prefix ?? 'archive/';
  const recs: ZipRecord[] = [
    { name: `${p}data.pkl`, data: pkl },
    { name: `${p}.format_version`, data: enc.encode('1') },
    { name: `${p}.storage_alignment`, data: enc.encode('64') },
  ];
  if (o.byteorder !== null) recs.push({ name: `${p}byteorder`, data: enc.encode(o.byteorder ?? 'little') });
  for (const [k, v] of Object.entries(storages)) recs.push({ name: `${p}data/${k}`, data: v });
  recs.push({ name: `${p}version`, data: enc.encode('3\n') });
  return storedZip(recs, { zip64: o.zip64 });
}
