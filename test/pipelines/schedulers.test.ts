import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  SD15_SCHEDULER_CONFIG,
  alphasCumprod,
  createScheduler,
  lcmBoundaryScalings,
  schedulerConfigFromDiffusers,
  trainSigmas,
  type Schedule,
  type SchedulerConfig,
} from '../../src/pipelines/schedulers/index.js';
import { ArgumentError, ConfigError } from '../../src/runtime/errors.js';
import { expectClose } from '../helpers/close.js';
import { FIXTURES, fx, tolerance } from '../helpers/fixtures.js';

const json = (name: string): Record<string, any> => JSON.parse(readFileSync(FIXTURES + name, 'utf8'));
const SD15 = SD15_SCHEDULER_CONFIG;
const f32 = Math.fround;

/** Runs the scheduler loop on the CPU in float64 with the fixture's noise predictions. */
function replay(kind: 'ddim' | 'euler' | 'lcm', name: string, s: Schedule, isolated: boolean): { latents: Float64Array[]; denoised: Float64Array[] } {
  const io = `${name}.io.safetensors`;
  let x = Float64Array.from(fx(io, 'latents_init').data);
  const noise = kind === 'lcm' ? fx(io, 'lcm_step_noise').data : undefined;
  const latents: Float64Array[] = [];
  const denoised: Float64Array[] = [];
  s.steps.forEach((st, i) => {
    if (isolated && i > 0) x = Float64Array.from(fx(io, `step${i - 1}.latents`).data);
    const eps = fx(io, `step${i}.noise_pred`).data;
    const z = noise?.subarray(i * x.length, (i + 1) * x.length);
    const next = new Float64Array(x.length);
    const d = new Float64Array(x.length);
    for (let j = 0; j < x.length; j++) {
      next[j] = st.x * x[j]! + st.eps * eps[j]! + (st.noise !== 0 ? st.noise * z![j]! : 0);
      d[j] = st.denoised.x * x[j]! + st.denoised.eps * eps[j]!;
    }
    latents.push(next);
    denoised.push(d);
    x = next;
  });
  return { latents, denoised };
}

function configOf(name: string): SchedulerConfig {
  return schedulerConfigFromDiffusers(json(`${name}.json`).scheduler);
}

describe('noise schedule', () => {
  it('ᾱ matches the reference (float32 betas, float64 cumprod)', () => {
    const ac = alphasCumprod(SD15);
    expect(ac[0]).toBe(f32(0.99915));
    expect(ac[999]).toBeCloseTo(0.0046601, 7);
    for (const s of json('pipeline_lcm_distilled.json').per_step) {
      expect(ac[s.timestep]).toBe(s.alpha_prod_t); // exact float32 values
      expect(ac[s.prev_timestep]).toBe(s.alpha_prod_t_prev);
    }
  });
});

describe('DDIM', () => {
  it('REFERENCE §9.2 timesteps', () => {
    const s50 = createScheduler('ddim', SD15, 50);
    expect(s50.timesteps.length).toBe(50);
    expect(s50.timesteps.slice(0, 3)).toEqual([981, 961, 941]);
    expect(s50.timesteps.slice(-2)).toEqual([21, 1]);
    expect(createScheduler('ddim', SD15, 25).timesteps.slice(0, 2)).toEqual([961, 921]);
    expect(s50.initNoiseSigma).toBe(1);
    // t = 1 steps to t_prev = −19 → ᾱ₀ (set_alpha_to_one false): x_prev = √(ᾱ₀/ᾱ₁)·x + …
    const ac = alphasCumprod(SD15);
    expect(s50.steps[49]!.x).toBeCloseTo(Math.sqrt(ac[0]! / ac[1]!), 12);
    expect(createScheduler('ddim', { ...SD15, setAlphaToOne: true }, 50).steps[49]!.x).toBeCloseTo(1 / Math.sqrt(ac[1]!), 12);
  });

  it('spacings: linspace and trailing', () => {
    expect(createScheduler('ddim', { ...SD15, timestepSpacing: 'linspace' }, 4).timesteps).toEqual([999, 666, 333, 0]);
    expect(createScheduler('ddim', { ...SD15, timestepSpacing: 'trailing' }, 4).timesteps).toEqual([999, 749, 499, 249]);
    expect(createScheduler('ddim', { ...SD15, timestepSpacing: 'trailing' }, 61).timesteps.length).toBe(61);
  });

  it('reproduces pipeline_ddim step by step', () => {
    const s = createScheduler('ddim', configOf('pipeline_ddim'), 3);
    const ref = json('pipeline_ddim.json');
    expect(s.timesteps).toEqual(ref.timesteps);
    expect(Array.from(fx('pipeline_ddim.io.safetensors', 'timesteps').data)).toEqual(ref.timesteps);
    expect(s.initNoiseSigma).toBe(ref.init_noise_sigma);
    const iso = replay('ddim', 'pipeline_ddim', s, true);
    iso.latents.forEach((l, i) => expectClose(l, fx('pipeline_ddim.io.safetensors', `step${i}.latents`).data, { atol: 5e-6, rtol: 1e-6 }, `ddim step ${i}`));
    const chain = replay('ddim', 'pipeline_ddim', s, false);
    expectClose(chain.latents[2]!, fx('pipeline_ddim.io.safetensors', 'lowres_latent').data, tolerance('pipeline_ddim', 'lowres_latent'), 'ddim lowres_latent');
  });

  it('eta > 0 adds noise with the DDIM σ', () => {
    const s = createScheduler('ddim', SD15, 10, { eta: 1 });
    const ac = alphasCumprod(SD15);
    const a = ac[s.timesteps[0]!]!;
    const ap = ac[s.timesteps[1]!]!;
    const sigma = Math.sqrt((1 - ap) / (1 - a)) * Math.sqrt(1 - a / ap);
    expect(s.steps[0]!.noise).toBeCloseTo(sigma, 12);
    expect(s.steps[0]!.eps).toBeCloseTo(Math.sqrt(1 - ap - sigma ** 2) - Math.sqrt(ap) * Math.sqrt(1 - a) / Math.sqrt(a), 12);
    expect(() => createScheduler('ddim', SD15, 10, { eta: -1 })).toThrow(ArgumentError);
  });
});

describe('Euler', () => {
  it('REFERENCE §9.3 values', () => {
    const lin = createScheduler('euler', SD15, 25);
    expect(lin.timesteps[0]).toBe(999);
    expect(lin.initNoiseSigma).toBeCloseTo(14.614647, 5);
    expect(lin.steps[0]!.inputScale).toBeCloseTo(1 / Math.sqrt(lin.initNoiseSigma ** 2 + 1), 12);
    const lead = createScheduler('euler', { ...SD15, timestepSpacing: 'leading' }, 25);
    expect(lead.timesteps[0]).toBe(961);
    const sig0 = -lead.steps[0]!.denoised.eps;
    expect(sig0).toBeCloseTo(11.67605, 4);
    expect(lead.initNoiseSigma).toBeCloseTo(11.718795, 5);
    const sig = lead.steps.map((s) => -s.denoised.eps);
    expect(sig[23]).toBeCloseTo(0.20179, 4);
    expect(sig[24]).toBeCloseTo(0.04131, 4);
    expect(lead.steps[24]!.eps).toBeCloseTo(-sig[24]!, 12); // last step goes to σ = 0
    expect(trainSigmas(SD15)[999]).toBeCloseTo(14.614647, 5);
  });

  it('reproduces pipeline_euler: timesteps, init sigma, model input scale, every step', () => {
    const io = 'pipeline_euler.io.safetensors';
    const s = createScheduler('euler', configOf('pipeline_euler'), 3);
    const ref = json('pipeline_euler.json');
    expect(s.timesteps).toEqual(ref.timesteps);
    expect(s.initNoiseSigma).toBe(ref.init_noise_sigma); // float32-exact
    const init = fx(io, 'latents_init').data;
    expectClose(init, Array.from(fx(io, 'noise').data, (v) => v * s.initNoiseSigma), { atol: 1e-6, rtol: 1e-6 }, 'latents_init');
    s.steps.forEach((st, i) => {
      const prev = i === 0 ? init : fx(io, `step${i - 1}.latents`).data;
      const mi = fx(io, `step${i}.model_input`).data.subarray(0, prev.length);
      expectClose(mi, Array.from(prev, (v) => v * st.inputScale), { atol: 1e-6, rtol: 1e-6 }, `model_input ${i}`);
    });
    const iso = replay('euler', 'pipeline_euler', s, true);
    iso.latents.forEach((l, i) => expectClose(l, fx(io, `step${i}.latents`).data, { atol: 5e-6, rtol: 1e-6 }, `euler step ${i}`));
    const chain = replay('euler', 'pipeline_euler', s, false);
    expectClose(chain.latents[2]!, fx(io, 'lowres_latent').data, tolerance('pipeline_euler', 'lowres_latent'), 'euler lowres_latent');
  });

  it('trailing spacing', () => {
    expect(createScheduler('euler', { ...SD15, timestepSpacing: 'trailing' }, 4).timesteps).toEqual([999, 749, 499, 249]);
  });
});

describe('LCM', () => {
  it('REFERENCE §9.4 timesteps', () => {
    expect(createScheduler('lcm', SD15, 1).timesteps).toEqual([999]);
    expect(createScheduler('lcm', SD15, 2).timesteps).toEqual([999, 499]);
    expect(createScheduler('lcm', SD15, 4).timesteps).toEqual([999, 759, 499, 259]);
    expect(createScheduler('lcm', SD15, 8).timesteps).toEqual([999, 879, 759, 639, 499, 379, 259, 139]);
    const c = lcmBoundaryScalings(259, 10);
    expect(c.cSkip).toBeCloseTo(3.73e-8, 10);
    expect(c.cOut).toBeCloseTo(0.99999998, 7);
  });

  it('per-step scalars of pipeline_lcm_distilled are float32-exact', () => {
    const ref = json('pipeline_lcm_distilled.json');
    const c = configOf('pipeline_lcm_distilled');
    const s = createScheduler('lcm', c, 4);
    expect(s.timesteps).toEqual(ref.timesteps);
    const ac = alphasCumprod(c);
    ref.per_step.forEach((p: any, i: number) => {
      const { cSkip, cOut } = lcmBoundaryScalings(p.timestep, c.timestepScaling);
      expect(cSkip).toBe(p.c_skip);
      expect(cOut).toBe(p.c_out);
      const st = s.steps[i]!;
      expect(st.noise !== 0).toBe(p.injects_noise);
      expect(st.denoised.x).toBeCloseTo(cOut / Math.sqrt(p.alpha_prod_t) + cSkip, 12);
      expect(st.noise).toBeCloseTo(p.injects_noise ? Math.sqrt(1 - p.alpha_prod_t_prev) : 0, 12);
      expect(ac[p.timestep]).toBe(p.alpha_prod_t);
    });
  });

  for (const name of ['pipeline_lcm', 'pipeline_lcm_distilled']) {
    it(`reproduces ${name} step by step (latents and denoised)`, () => {
      const io = `${name}.io.safetensors`;
      const ref = json(`${name}.json`);
      const s = createScheduler('lcm', configOf(name), ref.num_inference_steps);
      expect(s.timesteps).toEqual(ref.timesteps);
      expect(s.initNoiseSigma).toBe(ref.init_noise_sigma);
      const iso = replay('lcm', name, s, true);
      iso.latents.forEach((l, i) => expectClose(l, fx(io, `step${i}.latents`).data, { atol: 5e-6, rtol: 1e-6 }, `${name} step ${i}`));
      iso.denoised.forEach((d, i) => expectClose(d, fx(io, `step${i}.denoised`).data, { atol: 5e-6, rtol: 1e-6 }, `${name} denoised ${i}`));
      const chain = replay('lcm', name, s, false);
      const group = name === 'pipeline_lcm' ? 'pipeline_lcm' : 'pipeline_lcm_distilled';
      expectClose(chain.denoised[s.steps.length - 1]!, fx(io, 'lowres_latent').data, tolerance(group, 'lowres_latent'), `${name} lowres_latent`);
    });
  }

  it('the library-default LCM config (steps_offset 0, set_alpha_to_one) gives the same schedule', () => {
    const a = createScheduler('lcm', configOf('pipeline_lcm'), 4);
    const b = createScheduler('lcm', SD15, 4);
    expect(a).toEqual(b);
  });
});

describe('validation', () => {
  it('rejects bad kinds, step counts and configs', () => {
    expect(() => createScheduler('pndm' as 'ddim', SD15, 10)).toThrow(ArgumentError);
    for (const n of [0, -1, 1.5, NaN, Infinity, 1001, '10' as unknown as number]) {
      expect(() => createScheduler('ddim', SD15, n), String(n)).toThrow(ArgumentError);
      expect(() => createScheduler('euler', SD15, n), String(n)).toThrow(ArgumentError);
    }
    expect(() => createScheduler('lcm', SD15, 51)).toThrow(ArgumentError);
    expect(() => createScheduler('ddim', { ...SD15, betaStart: NaN }, 10)).toThrow(ArgumentError);
    expect(() => createScheduler('ddim', { ...SD15, timestepSpacing: 'karras' as 'leading' }, 10)).toThrow(ArgumentError);
    expect(() => createScheduler('ddim', null as unknown as SchedulerConfig, 10)).toThrow(ArgumentError);
    expect(() => schedulerConfigFromDiffusers({ prediction_type: 'v_prediction' })).toThrow(ConfigError);
    expect(() => schedulerConfigFromDiffusers({ clip_sample: true })).toThrow(ConfigError);
    expect(() => schedulerConfigFromDiffusers({ beta_start: 'x' })).toThrow(ConfigError);
  });
});
