/**
 * The CFM EfficientUNet, the flow ODE and the boost half of the pipeline against their fixtures (test/fixtures/README.md:
 * cfm, flow, pipeline_ddim). Tolerances: tolerances.json → cfm.out, flow.euler.n5.x1, pipeline_ddim.*. Runs in Node and
 * in the browser; weights load through the real safetensors path (fixtureSource).
 */
import { CfmUNet, parseCfmUNetConfig, type CfmUNetConfig } from '../../src/models/cfm-unet.js';
import { AutoencoderKL } from '../../src/models/vae/model.js';
import { boost, decodeToImage } from '../../src/pipelines/boost.js';
import { sampleFlow } from '../../src/pipelines/flow-matching.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { get, type CheckResult, type FixtureCheck, type FixtureFile, type FixtureLoader, type FixtureTensor } from './fixture-check.js';
import { fixtureSource, TINY_VAE_CONFIG } from './fixtures-vae.js';

/** test/fixtures/cfm.config.json, inlined so the page needs no JSON fetch. */
export const TINY_CFM_CONFIG_JSON = {
  fm_cfg: {
    target: 'fmboost.flow.FlowModel',
    params: {
      schedule: 'linear',
      sigma_min: 0.0,
      net_cfg: {
        target: 'fmboost.models.unet.model.EfficientUNet',
        params: {
          in_channels: 8,
          model_channels: 32,
          out_channels: 4,
          num_res_blocks: 1,
          channel_mult: [1, 2],
          attention_resolutions: [2],
          dropout: 0.0,
          conv_resample: true,
          dim_head: 8,
          num_heads: 2,
          use_linear_attn: false,
          use_scale_shift_norm: true,
          pool_factor: -1,
        },
      },
    },
  },
  scale_factor: 0.18215,
};

export const TINY_CFM_CONFIG: CfmUNetConfig = parseCfmUNetConfig(TINY_CFM_CONFIG_JSON);

// tolerances.json rows used below
export const CFM_TOL = {
  out: { atol: 5e-5, rtol: 1e-3 }, // cfm.out
  outEma: { atol: 5e-5, rtol: 1e-3 }, // cfm_trainer_ckpt.out_ema
  eulerN5: { atol: 2e-5, rtol: 1e-3 }, // flow.euler.n5.x1
  psuLatent: { atol: 1e-5, rtol: 1e-3 }, // pipeline_ddim.psu.latent
  finalLatent: { atol: 5e-5, rtol: 1e-3 }, // pipeline_ddim.final_latent
  finalImage: { atol: 5e-5, rtol: 1e-3 }, // pipeline_ddim.final_image
  decoded: { atol: 5e-5, rtol: 1e-3 }, // vae.decoded (the PSU images are decoder/bilinear outputs)
};

export async function loadTinyCfm(rt: Runtime, load: FixtureLoader, file = 'cfm.safetensors'): Promise<CfmUNet> {
  return CfmUNet.load(rt, { config: TINY_CFM_CONFIG_JSON, weights: await fixtureSource(load, file) });
}

/** cat([x_t, context]) [N, 2C, H, W] → (x_t, context), each [N, C, H, W]. */
export function splitInput(x: FixtureTensor): [Float32Array, Float32Array, number[]] {
  const [N, C2, H, W] = x.shape as [number, number, number, number];
  const C = C2 / 2;
  const plane = H * W;
  const a = new Float32Array(N * C * plane);
  const b = new Float32Array(N * C * plane);
  for (let n = 0; n < N; n++) {
    a.set(x.data.subarray(n * C2 * plane, (n * C2 + C) * plane), n * C * plane);
    b.set(x.data.subarray((n * C2 + C) * plane, (n + 1) * C2 * plane), n * C * plane);
  }
  return [a, b, [N, C, H, W]];
}

/** The net on cfm.io's input: out and every debug.* tensor the fixture holds. */
export async function cfmIoResults(rt: Runtime, net: CfmUNet, io: FixtureFile): Promise<{ name: string; result: CheckResult }[]> {
  const [xt, ctx, shape] = splitInput(get(io, 'x'));
  const t = get(io, 't').data[0]!;
  const debug = new Map<string, Tensor>();
  const out = await rt.scopeAsync(async () => rt.read(net.forward(rt, rt.upload(xt, shape), rt.upload(ctx, shape), t, { debug })));
  const res = [{ name: 'out', result: { actual: out, expected: get(io, 'out').data, ...CFM_TOL.out } }];
  try {
    for (const key of io.keys()) {
      if (!key.startsWith('debug.')) continue;
      const mine = debug.get(key.slice('debug.'.length));
      if (!mine) throw new Error(`CfmUNet produced no debug tensor for '${key}'`);
      res.push({ name: key, result: { actual: await rt.read(mine), expected: get(io, key).data, ...CFM_TOL.out } });
    }
  } finally {
    for (const v of debug.values()) v.dispose();
  }
  return res;
}

const cfmIoCheck: FixtureCheck = {
  name: 'models/cfm/out+debug',
  async run(rt, load) {
    const net = await loadTinyCfm(rt, load);
    try {
      return (await cfmIoResults(rt, net, await load('cfm.io.safetensors'))).map((r) => r.result);
    } finally {
      net.dispose();
    }
  },
};

/** Every trajectory point of one flow.io run (`method.nN`), collected through onGridPoint without readback in the loop. */
export async function flowRun(rt: Runtime, net: CfmUNet, io: FixtureFile, method: 'euler' | 'midpoint' | 'rk4', n: number): Promise<{ traj: Float32Array[]; nfe: number; times: number[] }> {
  const x0 = get(io, 'x0');
  const ctx = get(io, 'context');
  const points: Tensor[] = [];
  const times: number[] = [];
  let nfe = 0;
  try {
    const x1 = await rt.scopeAsync(async () =>
      sampleFlow(rt, net, rt.upload(x0.data, x0.shape), rt.upload(ctx.data, ctx.shape), {
        method,
        numSteps: n,
        onProgress: (k) => (nfe = k),
        onGridPoint: (_i, t, x) => {
          times.push(t);
          points.push(rt.keep(rt.clone(x)));
        },
      }),
    );
    const traj: Float32Array[] = [];
    for (const p of points) traj.push(await rt.read(p));
    const last = await rt.read(x1);
    x1.dispose();
    if (last.some((v, i) => v !== traj[traj.length - 1]![i])) throw new Error('sampleFlow result differs from its last grid point');
    return { traj, nfe, times };
  } finally {
    for (const p of points) p.dispose();
  }
}

const flowCheck: FixtureCheck = {
  name: 'pipelines/flow/euler.n5',
  async run(rt, load) {
    const net = await loadTinyCfm(rt, load);
    try {
      const io = await load('flow.io.safetensors');
      const { traj } = await flowRun(rt, net, io, 'euler', 5);
      const want = get(io, 'euler.n5.traj').data;
      const per = want.length / 5;
      return traj.map((x, i) => ({ actual: x, expected: want.subarray(i * per, (i + 1) * per), ...CFM_TOL.eulerN5 }));
    } finally {
      net.dispose();
    }
  },
};

/** PSU → q_sample (the fixture's noise) → Euler ODE (5 points) → decode, from the stored float32 lowres_latent. */
export async function boostHalf(rt: Runtime, vae: AutoencoderKL, net: CfmUNet, io: FixtureFile): Promise<Map<string, Float32Array>> {
  const lowres = get(io, 'lowres_latent');
  const noise = get(io, 'q_sample.noise');
  const nGrid = get(io, 'ode.t_grid').shape[0]!;
  const debug = new Map<string, Tensor>();
  const out = new Map<string, Float32Array>();
  try {
    const latent = await rt.scopeAsync(async () =>
      boost({ vae, cfm: net }, rt.upload(lowres.data, lowres.shape), {
        mode: 'psu',
        factor: 2,
        solver: 'euler',
        numSteps: nGrid,
        noisingStep: 400,
        noise: noise.data as Float32Array,
        tiling: 'off',
        debug,
      }),
    );
    try {
      out.set('final_latent', await rt.read(latent));
      out.set('final_image', (await decodeToImage(vae, latent, { tiling: 'off' })).float);
    } finally {
      latent.dispose();
    }
    for (const [k, v] of debug) out.set(k, await rt.read(v));
  } finally {
    for (const v of debug.values()) v.dispose();
  }
  return out;
}

/** The fixture name → the tolerance row that bounds it (REFERENCE tolerance table; traj points as final_latent). */
export function boostTolerance(kind: string, name: string): { atol: number; rtol: number } {
  if (name === 'psu.lowres_image' || name === 'psu.upsampled_image') return CFM_TOL.decoded;
  if (name === 'psu.latent' || name === 'noised_source') return CFM_TOL.psuLatent;
  if (name === 'final_image') return kind === 'euler' ? { atol: 1e-4, rtol: 1e-3 } : CFM_TOL.finalImage;
  return CFM_TOL.finalLatent;
}

const boostCheck: FixtureCheck = {
  name: 'pipelines/boost/pipeline_ddim',
  async run(rt, load) {
    const vae = await AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await fixtureSource(load, 'vae.safetensors') });
    const net = await loadTinyCfm(rt, load);
    try {
      const io = await load('pipeline_ddim.io.safetensors');
      const got = await boostHalf(rt, vae, net, io);
      const results: CheckResult[] = [];
      for (const name of ['psu.lowres_image', 'psu.upsampled_image', 'psu.latent', 'noised_source', 'final_latent', 'final_image']) {
        results.push({ actual: got.get(name)!, expected: get(io, name).data, ...boostTolerance('ddim', name) });
      }
      const traj = get(io, 'ode.traj').data;
      const n = get(io, 'ode.t_grid').shape[0]!;
      const per = traj.length / n;
      for (let i = 0; i < n; i++) results.push({ actual: got.get(`ode.traj.${i}`)!, expected: traj.subarray(i * per, (i + 1) * per), ...CFM_TOL.finalLatent });
      return results;
    } finally {
      net.dispose();
      vae.dispose();
    }
  },
};

export const cfmChecks: FixtureCheck[] = [cfmIoCheck, flowCheck, boostCheck];
