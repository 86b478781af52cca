/**
 * ops.io.safetensors checks of the GEMM family (linear, conv2d), shared by Node and the browser suite.
 * Tolerances are tolerances.json `ops.<name>`, copied here because this code may not read files.
 */
import { conv2d } from '../../src/ops/conv2d.js';
import { linear } from '../../src/ops/matmul.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { get, type FixtureCheck, type FixtureFile, type FixtureTensor } from './fixture-check.js';

const FILE = 'ops.io.safetensors';

function up(rt: Runtime, t: FixtureTensor) {
  return rt.upload(t.data as Float32Array, t.shape);
}

function convCheck(name: string, tol: { atol: number; rtol: number }, o: { stride?: number; padding?: number | [number, number, number, number] }): FixtureCheck {
  return {
    name: `ops/${name}`,
    async run(rt, load) {
      const f: FixtureFile = await load(FILE);
      const x = up(rt, get(f, `${name}.x`));
      const w = up(rt, get(f, `${name}.w`));
      const b = up(rt, get(f, `${name}.b`));
      const y = conv2d(rt, x, w, b, o);
      const actual = await rt.read(y);
      for (const t of [x, w, b, y]) t.dispose();
      return { actual, expected: get(f, `${name}.y`).data, ...tol };
    },
  };
}

export const gemmChecks: FixtureCheck[] = [
  convCheck('conv3x3', { atol: 2e-5, rtol: 1e-3 }, { padding: 1 }),
  // F.pad(x, (0, 1, 0, 1)): one zero row at the bottom and one zero column on the right.
  convCheck('conv3x3_s2_asym', { atol: 1e-5, rtol: 1e-3 }, { stride: 2, padding: [0, 1, 0, 1] }),
  convCheck('conv3x3_s2_pad1', { atol: 1e-5, rtol: 1e-3 }, { stride: 2, padding: 1 }),
  convCheck('conv1x1', { atol: 5e-6, rtol: 1e-3 }, { padding: 0 }),
  {
    name: 'ops/linear',
    async run(rt, load) {
      const f = await load(FILE);
      const x = up(rt, get(f, 'linear.x'));
      const w = up(rt, get(f, 'linear.w'));
      const b = up(rt, get(f, 'linear.b'));
      const y = linear(rt, x, w, b);
      const actual = await rt.read(y);
      for (const t of [x, w, b, y]) t.dispose();
      return { actual, expected: get(f, 'linear.y').data, atol: 5e-6, rtol: 1e-3 };
    },
  },
];
