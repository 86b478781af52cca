import type { Allocation } from './allocator.js';
import { storageBytes, type DType } from './dtype.js';
import { DeviceLostError, FmBoostError, ShapeError } from './errors.js';
import type { Runtime } from './runtime.js';

/**
 * A GPU tensor: a shape and a storage dtype over an allocator-owned buffer. Values are NCHW / row-major
 * float32 in meaning; f16 storage is packed two per u32. Several tensors (views) may share one buffer:
 * the buffer goes back to the pool when the last of them is disposed.
 */
export class Tensor {
  private disposed = false;

  /** @internal — made by Runtime. */
  constructor(
    readonly rt: Runtime,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** @internal */ readonly allocation: Allocation,
    readonly label: string,
  ) {}

  get buffer(): GPUBuffer {
    if (this.disposed) throw new FmBoostError(`tensor '${this.label}' was used after dispose()`);
    if (this.allocation.owner !== this.rt.allocator) {
      throw new DeviceLostError('destroyed', `tensor '${this.label}' belonged to a GPU device that was lost; recompute it`);
    }
    return this.allocation.buffer;
  }

  /** Number of elements. */
  get numel(): number {
    return numel(this.shape);
  }

  /** Bytes of storage the values occupy (the buffer may be larger). */
  get byteLength(): number {
    return storageBytes(this.numel, this.dtype);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** A view with another shape of the same number of elements; shares the buffer. `-1` infers one dim. */
  reshape(shape: readonly number[]): Tensor {
    const resolved = resolveShape(shape, this.numel, `reshape(${this.label})`);
    this.allocation.refs++;
    return this.rt.adopt(new Tensor(this.rt, resolved, this.dtype, this.allocation, this.label));
  }

  /** Returns the buffer to the pool (when no other view holds it). Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt.release(this);
  }

  toString(): string {
    return `Tensor(${this.label}, [${this.shape.join(', ')}], ${this.dtype})`;
  }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function resolveShape(shape: readonly number[], n: number, op: string): number[] {
  const out = [...shape];
  const neg = out.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(out.filter((_, i) => i !== neg));
    if (rest === 0 || n % rest !== 0) throw new ShapeError(op, `cannot infer -1 in [${shape}] for ${n} elements`);
    out[neg] = n / rest;
  }
  if (out.some((d) => !Number.isInteger(d) || d < 0) || numel(out) !== n) {
    throw new ShapeError(op, `shape [${shape}] does not hold ${n} elements`);
  }
  return out;
}
