/**
 * Fixture checks that run both in Node (vitest) and inside headless Chromium (test/browser): each check
 * computes an output on the GPU from fixture inputs and returns it with the expected values and the
 * tolerance. Nothing here imports Node modules.
 */
import type { Runtime } from '../../src/runtime/runtime.js';

export interface FixtureTensor {
  shape: number[];
  dtype: string;
  data: Float32Array | Int32Array;
}

/** Tensors of one fixture file by name. */
export type FixtureFile = Map<string, FixtureTensor>;

/** Loads fixture files by name (e.g. 'ops.io.safetensors'), from disk in Node and over HTTP in the browser. */
export type FixtureLoader = (file: string) => Promise<FixtureFile>;

export interface CheckResult {
  actual: Float32Array;
  expected: Float32Array | Int32Array;
  atol: number;
  rtol: number;
}

export interface FixtureCheck {
  /** e.g. 'ops/conv3x3' */
  name: string;
  run(rt: Runtime, load: FixtureLoader): Promise<CheckResult | CheckResult[]>;
}

/** Parses a safetensors file's tensors (F32, F16 → f32; I32 kept). Test-side reader, no validation. */
export function parseFixture(buf: ArrayBuffer): FixtureFile {
  const n = Number(new DataView(buf).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out: FixtureFile = new Map();
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    const [a, b] = v.data_offsets;
    const raw = buf.slice(8 + n + a, 8 + n + b);
    let data: Float32Array | Int32Array;
    if (v.dtype === 'F32') data = new Float32Array(raw);
    else if (v.dtype === 'I32') data = new Int32Array(raw);
    else if (v.dtype === 'F16') {
      const h = new Uint16Array(raw);
      data = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) {
        const x = h[i]!;
        const s = x & 0x8000 ? -1 : 1;
        const e = (x >> 10) & 31;
        const f = x & 1023;
        data[i] = s * (e === 0 ? f * 2 ** -24 : e === 31 ? (f ? NaN : Infinity) : (1 + f / 1024) * 2 ** (e - 15));
      }
    } else continue;
    out.set(k, { shape: v.shape, dtype: v.dtype, data });
  }
  return out;
}

/** One tensor of a loaded file; throws if absent. */
export function get(file: FixtureFile, key: string): FixtureTensor {
  const t = file.get(key);
  if (!t) throw new Error(`fixture has no tensor '${key}'`);
  return t;
}
