/**
 * Random weights for the real topologies, so benchmarks need no checkpoint: build the model once against a scope
 * that only records the keys and shapes it asks for, then hand the loader a TensorSource that makes each tensor
 * on read (matrices U(±√(3/fan_in)), norm gains 1, biases small).
 */
import type { HostTensor, TensorSource } from '../../src/io/safetensors.js';
import type { WeightScope } from '../../src/io/weights.js';
import type { Tensor } from '../../src/runtime/tensor.js';

/** Runs `build` against a recording WeightScope and returns every key → shape it asked for. */
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

/** A TensorSource of deterministic random F32 tensors with the given shapes. */
export function randomSource(shapes: Map<string, number[]>, name: string): TensorSource {
  let seed = 12345;
  const next = (): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  return {
    name,
    keys: () => [...shapes.keys()],
    info: (k) => ({ dtype: 'F32', shape: shapes.get(k)! }),
    read: async (k): Promise<HostTensor> => {
      const shape = shapes.get(k)!;
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (shape.length >= 2) {
        const a = 2 * Math.sqrt(3 / (n / shape[0]!));
        for (let i = 0; i < n; i++) data[i] = a * next();
      } else if (/norm[^.]*\.weight$|(^|\.)(gamma|weight)$/.test(k) && /norm/.test(k)) data.fill(1);
      else for (let i = 0; i < n; i++) data[i] = 0.1 * next();
      return { dtype: 'f32', shape, data };
    },
  };
}

/** Parameter count of a shape map. */
export function paramCount(shapes: Map<string, number[]>): number {
  let n = 0;
  for (const s of shapes.values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}
