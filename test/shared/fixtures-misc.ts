/**
 * Fixture checks of the normalisation, elementwise, resize and embedding ops against ops.io.safetensors
 * (ops.md). Tolerances are copied from tolerances.json's ops entries. Runs in Node and the browser.
 */
import { geglu, gelu, geluTanh, quickGelu, silu } from '../../src/ops/elementwise.js';
import { timestepEmbedding } from '../../src/ops/embedding.js';
import { groupNorm } from '../../src/ops/group-norm.js';
import { layerNorm } from '../../src/ops/layer-norm.js';
import { interpolateBilinear, upsampleNearest2x } from '../../src/ops/resize.js';
import { softmax } from '../../src/ops/softmax.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { linearRef } from '../reference/elementwise.js';
import { get, type CheckResult, type FixtureCheck, type FixtureFile, type FixtureLoader } from './fixture-check.js';

const FILE = 'ops.io.safetensors';

// tolerances.json → ops.<name>. timestep_embedding_fmboost has no entry there: it is the same function as
// timestep_embedding_diffusers (t in [0, 1] instead of [0, 1000)), so it uses that entry.
const TOL: Record<string, { atol: number; rtol: number }> = {
  'group_norm_eps1e-5': { atol: 1e-5, rtol: 1e-3 },
  'group_norm_eps1e-6': { atol: 1e-5, rtol: 1e-3 },
  layer_norm: { atol: 1e-5, rtol: 1e-3 },
  softmax: { atol: 5e-6, rtol: 1e-3 },
  silu: { atol: 2e-5, rtol: 1e-3 },
  gelu_erf: { atol: 2e-5, rtol: 1e-3 },
  gelu_tanh: { atol: 1e-5, rtol: 1e-3 },
  quick_gelu: { atol: 1e-5, rtol: 1e-3 },
  geglu: { atol: 2e-5, rtol: 1e-3 },
  upsample_nearest2x: { atol: 5e-6, rtol: 1e-3 },
  bilinear_up2x: { atol: 5e-6, rtol: 1e-3 },
  bilinear_down: { atol: 5e-6, rtol: 1e-3 },
  bilinear_any: { atol: 2e-5, rtol: 1e-3 },
  timestep_embedding_diffusers: { atol: 1e-6, rtol: 1e-3 },
  timestep_embedding_fmboost: { atol: 1e-6, rtol: 1e-3 },
};

/** Uploads `<name>.<key>` tensors, runs `f` on the GPU inside a scope and compares with `<name>.y`. */
function check(name: string, keys: string[], f: (rt: Runtime, t: Tensor[], file: FixtureFile) => Tensor): FixtureCheck {
  return {
    name: `ops/${name}`,
    async run(rt: Runtime, load: FixtureLoader): Promise<CheckResult> {
      const file = await load(FILE);
      const actual = await rt.scopeAsync(async () => {
        const ts = keys.map((k) => {
          const t = get(file, `${name}.${k}`);
          return rt.upload(t.data as Float32Array, t.shape);
        });
        return rt.read(f(rt, ts, file));
      });
      return { actual, expected: get(file, `${name}.y`).data, ...TOL[name]! };
    },
  };
}

const groupNormCheck = (name: string, G: number, eps: number): FixtureCheck =>
  check(name, ['x', 'w', 'b'], (rt, [x, w, b]) => groupNorm(rt, x!, G, w!, b!, eps));

export const miscChecks: FixtureCheck[] = [
  // ops.md: num_groups=8 / 4.
  groupNormCheck('group_norm_eps1e-5', 8, 1e-5),
  groupNormCheck('group_norm_eps1e-6', 4, 1e-6),
  check('layer_norm', ['x', 'w', 'b'], (rt, [x, w, b]) => layerNorm(rt, x!, w!, b!, 1e-5)),
  check('softmax', ['x'], (rt, [x]) => softmax(rt, x!)),
  check('silu', ['x'], (rt, [x]) => silu(rt, x!)),
  check('gelu_erf', ['x'], (rt, [x]) => gelu(rt, x!)),
  check('gelu_tanh', ['x'], (rt, [x]) => geluTanh(rt, x!)),
  check('quick_gelu', ['x'], (rt, [x]) => quickGelu(rt, x!)),
  // The fixture includes GEGLU's Linear; no GPU linear op was available when this was written, so the
  // projection runs on the CPU (float64, rounded to float32) and the GEGLU tail on the GPU.
  check('geglu', [], (rt, _, file) => {
    const x = get(file, 'geglu.x');
    const w = get(file, 'geglu.w');
    const b = get(file, 'geglu.b');
    const [Nout, K] = w.shape as [number, number];
    const h = Float32Array.from(linearRef(x.data, K, w.data, b.data, Nout));
    return geglu(rt, rt.upload(h, [...x.shape.slice(0, -1), Nout]));
  }),
  check('upsample_nearest2x', ['x'], (rt, [x]) => upsampleNearest2x(rt, x!)),
  check('bilinear_up2x', ['x'], (rt, [x]) => interpolateBilinear(rt, x!, [2 * x!.shape[2]!, 2 * x!.shape[3]!])),
  check('bilinear_down', ['x'], (rt, [x]) => interpolateBilinear(rt, x!, [8, 8])),
  check('bilinear_any', ['x'], (rt, [x]) => interpolateBilinear(rt, x!, [9, 4])),
  check('timestep_embedding_diffusers', ['t'], (rt, [t]) => timestepEmbedding(rt, t!, 32, { flipSinToCos: true, downscaleFreqShift: 0 })),
  check('timestep_embedding_fmboost', ['t'], (rt, [t]) => timestepEmbedding(rt, t!, 32)),
];
