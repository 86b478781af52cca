/**
 * Just enough of the ONNX protobuf format to write the benchmark's one-op (or few-op) models in memory, so that
 * onnxruntime-web runs the same shapes as our kernels without model files. Field numbers are onnx.proto's.
 */

type Field = Uint8Array;

function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

const enc = new TextEncoder();
function cat(parts: readonly (Field | number[])[]): Field {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
const int = (field: number, v: number | bigint): Field => Uint8Array.from([...varint(field << 3), ...varint(v)]);
const bytes = (field: number, b: Field): Field => cat([varint((field << 3) | 2), varint(b.length), b]);
const str = (field: number, s: string): Field => bytes(field, enc.encode(s));
const f32 = (field: number, v: number): Field => {
  const b = new Uint8Array(5);
  b[0] = (field << 3) | 5;
  new DataView(b.buffer).setFloat32(1, v, true);
  return b;
};

const FLOAT = 1;
const INT64 = 7;

export type Attr = number | number[] | { f: number };

/** A node: op, inputs, outputs, attributes (integers, integer lists, or { f } for a float), domain. */
export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, Attr>;
  domain?: string;
}

function attribute(name: string, a: Attr): Field {
  if (Array.isArray(a)) return cat([str(1, name), ...a.map((x) => int(8, x)), int(20, 7)]);
  if (typeof a === 'object') return cat([str(1, name), f32(2, a.f), int(20, 1)]);
  return cat([str(1, name), int(3, a), int(20, 2)]);
}

function node(n: OnnxNode, i: number): Field {
  return cat([
    ...n.inputs.map((x) => str(1, x)),
    ...n.outputs.map((x) => str(2, x)),
    str(3, `${n.op}_${i}`),
    str(4, n.op),
    ...Object.entries(n.attrs ?? {}).map(([k, a]) => bytes(5, attribute(k, a))),
    ...(n.domain ? [str(7, n.domain)] : []),
  ]);
}

function valueInfo(name: string, shape: readonly number[]): Field {
  const dims = shape.map((d) => bytes(1, int(1, d)));
  const tensorType = cat([int(1, FLOAT), bytes(2, cat(dims))]);
  return cat([str(1, name), bytes(2, bytes(1, tensorType))]);
}

function initializer(name: string, v: Float32Array | BigInt64Array, shape: readonly number[]): Field {
  const raw = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return cat([...shape.map((d) => int(1, d)), int(2, v instanceof Float32Array ? FLOAT : INT64), str(8, name), bytes(9, raw)]);
}

export interface OnnxGraph {
  inputs: Record<string, readonly number[]>;
  outputs: Record<string, readonly number[]>;
  nodes: OnnxNode[];
  initializers?: Record<string, { data: Float32Array | BigInt64Array; shape: readonly number[] }>;
  /** Extra operator-set domains, e.g. { 'com.microsoft': 1 }. */
  domains?: Record<string, number>;
}

/** Serialises a model (IR 8, default opset 17). */
export function onnxModel(g: OnnxGraph): Uint8Array {
  const graph = cat([
    ...g.nodes.map((n, i) => bytes(1, node(n, i))),
    str(2, 'bench'),
    ...Object.entries(g.initializers ?? {}).map(([k, t]) => bytes(5, initializer(k, t.data, t.shape))),
    ...Object.entries(g.inputs).map(([k, s]) => bytes(11, valueInfo(k, s))),
    ...Object.entries(g.outputs).map(([k, s]) => bytes(12, valueInfo(k, s))),
  ]);
  const opsets = [['', 17], ...Object.entries(g.domains ?? {})] as [string, number][];
  return cat([
    int(1, 8),
    str(2, 'fmboost-bench'),
    ...opsets.map(([d, v]) => bytes(8, cat([...(d ? [str(1, d)] : []), int(2, v)]))),
    bytes(7, graph),
  ]);
}
