/**
 * Random weights for the real topologies, so benchmarks need no checkpoint: build the model once against a scope
 * that only records the keys and shapes it asks for (in the order it asks: PyTorch's state_dict order), then hand
 * the loader a TensorSource that makes each tensor on read. One helper for every bench script:
 *
 *   randomSource(recordShapes((w) => new UNet2DConditionModel(w, cfg)), 'random sd15 unet')
 *
 * Initialisations (`init`):
 *   'uniform' (default): matrices U(±√(3/fan_in)), norm gains 1, other vectors U(±0.05); one LCG stream in read order.
 *   'normal': matrices N(0, 1/fan_in) (Box–Muller on a per-key mulberry32 stream: independent of read order), norm
 *     gains 1, other vectors 0 — what bench/vae-memory.ts generates (randomVaeSource below gives exactly its tensors).
 *   'sine': REFERENCE §11.3's deterministic weights, tensor k (state_dict order), element j: 0.05·sin(0.7k + 0.013j + 0.1).
 */
import type { HostTensor, TensorSource } from '../../src/io/safetensors.js';
import type { WeightScope } from '../../src/io/weights.js';
import { AutoencoderKLConfig } from '../../src/models/vae/config.js';
import { AutoencoderKL } from '../../src/models/vae/model.js';
import type { Tensor } from '../../src/runtime/tensor.js';

export type WeightInit = 'uniform' | 'normal' | 'sine';

/** Runs `build` against a recording WeightScope and returns every key → shape it asked for, in the order asked. */
export function recordShapes(build: (w: WeightScope) => unknown): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const fake = (shape: readonly number[]): Tensor =>
    new Proxy({} as Tensor, {
      get(_t, p) {
        if (p === 'shape') return [...shape];
        if (p === 'dtype') return 'f32';
        if (p === 'numel') return shape.reduce((a, b) => a * b, 1);
        if (p === 'reshape') return (s: number[]) => fake(s);
        if (p === 'rt') return { keep: (t: Tensor) => t };
        return undefined;
      },
    });
  const record = (prefix: string, k: string, shape: readonly number[] | undefined) => {
    if (!shape) throw new Error(`recordShapes: '${prefix}${k}' was requested without a shape`);
    shapes.set(prefix + k, [...shape]);
    return fake(shape);
  };
  const scope = (prefix: string): WeightScope =>
    ({
      prefix,
      pp: (n: string | number) => scope(`${prefix}${n}.`),
      get: (k: string, shape?: readonly number[]) => record(prefix, k, shape),
      getReshaped: (k: string, shape: readonly number[]) => record(prefix, k, shape),
      optional: () => undefined,
      has: () => false,
      keysUnder: () => [],
      synthesized: () => [],
      unused: () => [],
      assertAllUsed: () => {},
      onDispose: () => {},
      dispose: () => {},
      bytes: 0,
      isDisposed: false,
    }) as unknown as WeightScope;
  build(scope(''));
  return shapes;
}

const isNormGain = (key: string): boolean => /norm/.test(key) && /(^|\.)(weight|gamma)$/.test(key);

/** A TensorSource of deterministic F32 tensors with the given shapes, made on read (see the file comment for `init`). */
export function randomSource(shapes: Map<string, number[]>, name: string, init: WeightInit = 'uniform'): TensorSource {
  const index = new Map([...shapes.keys()].map((k, i) => [k, i]));
  let seed = 12345;
  const lcg = (): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const fill = (key: string, shape: number[], data: Float32Array): void => {
    const n = data.length;
    const fanIn = shape.length >= 2 ? n / shape[0]! : 0;
    if (init === 'sine') {
      const k = index.get(key)!;
      for (let j = 0; j < n; j++) data[j] = 0.05 * Math.sin(0.7 * k + 0.013 * j + 0.1);
    } else if (shape.length < 2) {
      if (isNormGain(key)) data.fill(1);
      else if (init === 'uniform') for (let i = 0; i < n; i++) data[i] = 0.1 * lcg();
    } else if (init === 'uniform') {
      const a = 2 * Math.sqrt(3 / fanIn);
      for (let i = 0; i < n; i++) data[i] = a * lcg();
    } else {
      const std = 1 / Math.sqrt(fanIn);
      let s = hash(key);
      const u = () => ((s = (s + 0x6d2b79f5) >>> 0), mix(s));
      for (let i = 0; i < n; i += 2) {
        const r = Math.sqrt(-2 * Math.log(u() + 1e-12)) * std;
        const t = 2 * Math.PI * u();
        data[i] = r * Math.cos(t);
        if (i + 1 < n) data[i + 1] = r * Math.sin(t);
      }
    }
  };
  return {
    name,
    keys: () => [...shapes.keys()],
    info: (k) => ({ dtype: 'F32', shape: shapes.get(k)! }),
    read: async (k): Promise<HostTensor> => {
      const shape = shapes.get(k);
      if (!shape) throw new Error(`${name}: no tensor '${k}'`);
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      fill(k, shape, data);
      return { dtype: 'f32', shape, data };
    },
  };
}

/**
 * The SD VAE (AutoencoderKLConfig.sd15 unless given) with 'normal' weights: the same tensors bench/vae-memory.ts
 * makes with its own RandomVaeSource (kernels N(0, 1/fan_in) seeded by key, norm gains 1, biases 0).
 */
export function randomVaeSource(config: AutoencoderKLConfig = AutoencoderKLConfig.sd15, parts: 'all' | 'decoder' | 'encoder' = 'all'): TensorSource {
  return randomSource(recordShapes((w) => new AutoencoderKL(config, w, parts)), 'random-sd-vae', 'normal');
}

/** Parameter count of a shape map. */
export function paramCount(shapes: Map<string, number[]>): number {
  let n = 0;
  for (const s of shapes.values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

function mix(a: number): number {
  let t = Math.imul(a ^ (a >>> 15), a | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
