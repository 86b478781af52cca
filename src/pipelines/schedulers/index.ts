/**
 * SD-1.5 samplers as scalar schedules. A pipeline runs, per step i:
 * `ε = unet(s.inputScale · x, s.t)`, then `x = axpby(s.x, x, s.eps, ε)` (+ `s.noise · z` when non-zero).
 */
import { ArgumentError, ConfigError } from '../../runtime/errors.js';
import { ddimSchedule, type DDIMOptions } from './ddim.js';
import { eulerSchedule } from './euler.js';
import { lcmSchedule } from './lcm.js';
import { SD15_SCHEDULER_CONFIG, type Schedule, type SchedulerConfig } from './noise-schedule.js';

export { ddimSchedule, type DDIMOptions } from './ddim.js';
export { eulerSchedule, trainSigmas } from './euler.js';
export { lcmSchedule, lcmTimesteps, lcmBoundaryScalings } from './lcm.js';
export { SD15_SCHEDULER_CONFIG, alphasCumprod, type Schedule, type SchedulerConfig, type SchedulerStep } from './noise-schedule.js';

export type SchedulerKind = 'ddim' | 'euler' | 'lcm';
export type SchedulerOptions = DDIMOptions;

/** Timesteps, initial noise scale and per-step coefficients of `kind` with `steps` inference steps. */
export function createScheduler(kind: SchedulerKind, config: SchedulerConfig, steps: number, o: SchedulerOptions = {}): Schedule {
  switch (kind) {
    case 'ddim':
      return ddimSchedule(config, steps, o);
    case 'euler':
      return eulerSchedule(config, steps);
    case 'lcm':
      return lcmSchedule(config, steps);
    default:
      throw new ArgumentError('createScheduler', `unknown scheduler '${String(kind)}' (ddim, euler, lcm)`);
  }
}

/**
 * A diffusers `scheduler_config.json` object → `SchedulerConfig` (missing keys take SD-1.5 values). Settings the
 * schedules do not implement (another prediction type, x̂₀ clipping or thresholding, Karras σ) are refused.
 */
export function schedulerConfigFromDiffusers(json: Record<string, unknown>, file = 'scheduler_config.json'): SchedulerConfig {
  if (json === null || typeof json !== 'object') throw new ConfigError(file, 'expected a JSON object');
  const num = (k: string, d: number): number => {
    const v = json[k];
    if (v === undefined || v === null) return d;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(file, `${k} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const refuse = (k: string, ok: unknown[]): void => {
    const v = json[k];
    if (v !== undefined && v !== null && !ok.includes(v)) throw new ConfigError(file, `${k} = ${JSON.stringify(v)} is not supported`);
  };
  refuse('prediction_type', ['epsilon']);
  refuse('clip_sample', [false]);
  refuse('thresholding', [false]);
  refuse('use_karras_sigmas', [false]);
  refuse('use_exponential_sigmas', [false]);
  refuse('use_beta_sigmas', [false]);
  refuse('interpolation_type', ['linear']);
  refuse('final_sigmas_type', ['zero']);
  refuse('rescale_betas_zero_snr', [false]);
  refuse('trained_betas', []);
  refuse('beta_schedule', ['scaled_linear', 'linear']);
  refuse('timestep_spacing', ['leading', 'linspace', 'trailing']);
  const d = SD15_SCHEDULER_CONFIG;
  return {
    numTrainTimesteps: num('num_train_timesteps', d.numTrainTimesteps),
    betaStart: num('beta_start', d.betaStart),
    betaEnd: num('beta_end', d.betaEnd),
    betaSchedule: (json.beta_schedule as SchedulerConfig['betaSchedule'] | undefined) ?? d.betaSchedule,
    stepsOffset: num('steps_offset', d.stepsOffset),
    setAlphaToOne: typeof json.set_alpha_to_one === 'boolean' ? json.set_alpha_to_one : d.setAlphaToOne,
    timestepSpacing: (json.timestep_spacing as SchedulerConfig['timestepSpacing']) ?? undefined,
    originalInferenceSteps: num('original_inference_steps', d.originalInferenceSteps),
    timestepScaling: num('timestep_scaling', d.timestepScaling),
  };
}
