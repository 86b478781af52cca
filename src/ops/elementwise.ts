import elementwiseWgsl from '../../shaders/elementwise.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

export { concat } from './concat.js';
export { transpose } from './transpose.js';

const WG_SIZE = 256;

/** @internal Shape/dtype guard shared by the f32-only ops of this family. */
export function assertF32(op: string, name: string, t: Tensor): void {
  if (t.dtype !== 'f32') throw new ShapeError(op, `${name} must be f32 storage (activations are f32), got ${t.dtype}`);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function finite(op: string, name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ArgumentError(op, `${name} must be a finite number, got ${v}`);
}

const BINARY = { add: 0, mul: 1, axpby: 2 } as const;
const UNARY = { scale: 0, silu: 1, gelu: 2, geluTanh: 3, quickGelu: 4 } as const;

function binary(rt: Runtime, op: keyof typeof BINARY, a: Tensor, b: Tensor, alpha: number, beta: number): Tensor {
  assertF32(op, 'a', a);
  assertF32(op, 'b', b);
  if (!sameShape(a.shape, b.shape)) throw new ShapeError(op, `shapes differ: [${a.shape}] vs [${b.shape}]`);
  const y = rt.empty(a.shape, 'f32', op);
  const V = Math.ceil(a.numel / 4);
  const k = rt.kernel('elementwise', elementwiseWgsl, { WG_SIZE, OP: BINARY[op] }, 'main_binary');
  rt.dispatch(k, [a, b, y], { V, alpha, beta, HW: 1, F: 1 }, rt.grid(Math.ceil(V / WG_SIZE)));
  return y;
}

function unary(rt: Runtime, op: keyof typeof UNARY, x: Tensor, alpha = 1): Tensor {
  assertF32(op, 'x', x);
  const y = rt.empty(x.shape, 'f32', op);
  const V = Math.ceil(x.numel / 4);
  const k = rt.kernel('elementwise', elementwiseWgsl, { WG_SIZE, OP: UNARY[op] }, 'main_unary');
  rt.dispatch(k, [x, x, y], { V, alpha, beta: 0, HW: 1, F: 1 }, rt.grid(Math.ceil(V / WG_SIZE)));
  return y;
}

/** a + b (same shape). */
export function add(rt: Runtime, a: Tensor, b: Tensor): Tensor {
  return binary(rt, 'add', a, b, 1, 1);
}

/** a · b (same shape). */
export function mul(rt: Runtime, a: Tensor, b: Tensor): Tensor {
  return binary(rt, 'mul', a, b, 1, 1);
}

/** a·x + b·y: the update form of schedulers and ODE solvers. */
export function axpby(rt: Runtime, a: number, x: Tensor, b: number, y: Tensor): Tensor {
  finite('axpby', 'a', a);
  finite('axpby', 'b', b);
  return binary(rt, 'axpby', x, y, a, b);
}

/** s · x. */
export function scale(rt: Runtime, x: Tensor, s: number): Tensor {
  finite('scale', 's', s);
  return unary(rt, 'scale', x, s);
}

/** x · sigmoid(x). */
export function silu(rt: Runtime, x: Tensor): Tensor {
  return unary(rt, 'silu', x);
}

/** Exact GELU 0.5·x·(1 + erf(x/√2)) (erf to ~1e-7). */
export function gelu(rt: Runtime, x: Tensor): Tensor {
  return unary(rt, 'gelu', x);
}

/** tanh-approximate GELU 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function geluTanh(rt: Runtime, x: Tensor): Tensor {
  return unary(rt, 'geluTanh', x);
}

/** x · sigmoid(1.702·x) (CLIP). */
export function quickGelu(rt: Runtime, x: Tensor): Tensor {
  return unary(rt, 'quickGelu', x);
}

/** x [N,C,...] + b[:, :, None, None] with b [N,C]. */
export function addPerChannel(rt: Runtime, x: Tensor, b: Tensor): Tensor {
  assertF32('addPerChannel', 'x', x);
  assertF32('addPerChannel', 'b', b);
  if (x.shape.length < 2) throw new ShapeError('addPerChannel', `x must be [N, C, ...], got [${x.shape}]`);
  const [N, C] = x.shape as [number, number];
  if (!sameShape(b.shape, [N, C])) throw new ShapeError('addPerChannel', `b must be [${N}, ${C}] for x [${x.shape}], got [${b.shape}]`);
  const HW = x.numel / Math.max(1, N * C);
  const y = rt.empty(x.shape, 'f32', 'addPerChannel');
  const HW4 = HW % 4 === 0;
  const V = HW4 ? x.numel / 4 : x.numel;
  const k = rt.kernel('elementwise', elementwiseWgsl, { WG_SIZE, HW4 }, 'main_add_per_channel');
  rt.dispatch(k, [x, b, y], { V, alpha: 1, beta: 1, HW: Math.max(1, HW), F: 1 }, rt.grid(Math.ceil(V / WG_SIZE)));
  return y;
}

/** diffusers GEGLU tail: x [..., 2F] → x[..., :F] · gelu_erf(x[..., F:]). */
export function geglu(rt: Runtime, x: Tensor): Tensor {
  assertF32('geglu', 'x', x);
  const D = x.shape[x.shape.length - 1];
  if (D === undefined || D % 2 !== 0) throw new ShapeError('geglu', `last dim must be even (2F), got [${x.shape}]`);
  const F = D / 2;
  const y = rt.empty([...x.shape.slice(0, -1), F], 'f32', 'geglu');
  if (y.numel === 0) return y;
  const F4 = F % 4 === 0;
  const V = F4 ? y.numel / 4 : y.numel;
  const k = rt.kernel('elementwise', elementwiseWgsl, { WG_SIZE, F4 }, 'main_geglu');
  rt.dispatch(k, [x, x, y], { V, alpha: 1, beta: 1, HW: 1, F }, rt.grid(Math.ceil(V / WG_SIZE)));
  return y;
}
