import embeddingWgsl from '../../shaders/embedding.wgsl';
import { ArgumentError, ShapeError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

const WG_SIZE = 64;
const f32 = Math.fround;

export interface TimestepEmbeddingOptions {
  /** [cos, sin] instead of [sin, cos]; default true (SD-1.5 and fm-boosting). */
  flipSinToCos?: boolean;
  /** Denominator is half − shift; default 0. */
  downscaleFreqShift?: number;
}

/** f[i] = exp(−ln(10000)·i / (half − shift)) with every step rounded to float32, as diffusers/fm-boosting compute it. */
export function timestepFreqs(half: number, shift: number): Float32Array {
  const out = new Float32Array(half);
  const c = f32(-Math.log(10000));
  const den = f32(half - shift);
  for (let i = 0; i < half; i++) out[i] = f32(Math.exp(f32(f32(c * i) / den)));
  return out;
}

/** g[i] = exp(i · −(ln(10000)/(half − 1))) in float32, as LCM's get_guidance_scale_embedding computes it. */
export function guidanceFreqs(half: number): Float32Array {
  const out = new Float32Array(half);
  const e = f32(f32(Math.log(10000)) / (half - 1));
  for (let i = 0; i < half; i++) out[i] = f32(Math.exp(f32(i * -e)));
  return out;
}

/** Frequency tables are tiny and call-invariant: uploaded once per runtime and kept (persistent). */
const freqCache = new WeakMap<Runtime, Map<string, Tensor>>();

function freqTensor(rt: Runtime, key: string, make: () => Float32Array): Tensor {
  let m = freqCache.get(rt);
  if (!m) freqCache.set(rt, (m = new Map()));
  let t = m.get(key);
  // After device loss and rt.restore(), a table of the old device is gone: make it again on the new one.
  if (!t || t.isDisposed || t.allocation.owner !== rt.allocator) {
    const data = make();
    // A zero-length table still needs a bindable buffer.
    t = rt.keep(rt.upload(data.length ? data : new Float32Array(1), [Math.max(1, data.length)], { label: `embedding.${key}`, persistent: true }));
    m.set(key, t);
  }
  return t;
}

function checkInput(op: string, t: Tensor, dim: number): number {
  if (t.dtype !== 'f32') throw new ShapeError(op, `input must be f32 storage, got ${t.dtype}`);
  if (t.shape.length !== 1) throw new ShapeError(op, `input must be [N], got [${t.shape}]`);
  if (!Number.isInteger(dim) || dim < 1) throw new ArgumentError(op, `dim must be a positive integer, got ${dim}`);
  return t.shape[0]!;
}

function run(rt: Runtime, t: Tensor, dim: number, freqs: Tensor, cosFirst: boolean, guidance: boolean, label: string): Tensor {
  const N = t.shape[0]!;
  const half = Math.floor(dim / 2);
  // dim 1: the only column is the zero padding.
  if (half === 0) return rt.zeros([N, dim], 'f32', label);
  const y = rt.empty([N, dim], 'f32', label);
  if (N === 0) return y;
  const k = rt.kernel('embedding', embeddingWgsl, { WG_SIZE, COS_FIRST: cosFirst, GUIDANCE: guidance });
  rt.dispatch(k, [t, freqs, y], { N, dim, half }, rt.grid(Math.ceil((N * half) / WG_SIZE)));
  return y;
}

/**
 * Sinusoidal timestep embedding [N] → [N, dim] (diffusers get_timestep_embedding; fm-boosting's
 * timestep_embedding is flipSinToCos=true, shift 0 with t in [0, 1] as given).
 */
export function timestepEmbedding(rt: Runtime, t: Tensor, dim: number, o: TimestepEmbeddingOptions = {}): Tensor {
  const op = 'timestepEmbedding';
  checkInput(op, t, dim);
  const flip = o.flipSinToCos ?? true;
  const shift = o.downscaleFreqShift ?? 0;
  if (typeof flip !== 'boolean') throw new ArgumentError(op, `flipSinToCos must be a boolean, got ${String(flip)}`);
  const half = Math.floor(dim / 2);
  if (typeof shift !== 'number' || !Number.isFinite(shift) || (half > 0 && half - shift === 0)) {
    throw new ArgumentError(op, `downscaleFreqShift must be finite and ≠ half (${half}), got ${shift}`);
  }
  const freqs = freqTensor(rt, `t${half}:${shift}`, () => timestepFreqs(half, shift));
  return run(rt, t, dim, freqs, flip, false, op);
}

/** LCM guidance-scale embedding [N] → [N, dim]: (w·1000)·g[i], [sin, cos] SIN first, zero column if dim is odd. */
export function guidanceEmbedding(rt: Runtime, w: Tensor, dim: number): Tensor {
  const op = 'guidanceEmbedding';
  checkInput(op, w, dim);
  const half = Math.floor(dim / 2);
  if (half === 1) throw new ArgumentError(op, `dim ${dim} gives half − 1 = 0 in the frequency denominator`);
  const freqs = freqTensor(rt, `g${half}`, () => guidanceFreqs(half));
  return run(rt, w, dim, freqs, false, true, op);
}
