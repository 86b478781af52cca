/**
 * DDIM (diffusers `DDIMScheduler`, epsilon prediction, no clipping; REFERENCE §9.2) as per-step scalars:
 * x̂₀ = (x − √(1−ᾱ_t)·ε)/√ᾱ_t and x_prev = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev−σ²)·ε + σ·z, σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev).
 */
import { ArgumentError } from '../../runtime/errors.js';
import { alphasCumprod, checkSteps, integerTimesteps, validateConfig, type Schedule, type SchedulerConfig } from './noise-schedule.js';

export interface DDIMOptions {
  /** Stochasticity η (0 = deterministic DDIM, the pipeline default). */
  eta?: number;
}

export function ddimSchedule(c: SchedulerConfig, numSteps: number, o: DDIMOptions = {}): Schedule {
  validateConfig(c);
  const T = c.numTrainTimesteps;
  checkSteps('ddimSchedule', numSteps, T);
  const eta = o.eta ?? 0;
  if (!(eta >= 0 && Number.isFinite(eta))) throw new ArgumentError('ddimSchedule', `eta must be a finite number ≥ 0, got ${eta}`);
  const ac = alphasCumprod(c);
  const finalAlpha = c.setAlphaToOne ? 1 : ac[0]!;
  const timesteps = integerTimesteps(c.timestepSpacing ?? 'leading', T, numSteps, c.stepsOffset);
  // The reference steps back by ⌊T/N⌋ whatever the spacing.
  const ratio = Math.floor(T / numSteps);
  const steps = timesteps.map((t) => {
    if (t < 0 || t >= T) throw new ArgumentError('ddimSchedule', `timestep ${t} is outside [0, ${T}); lower stepsOffset`);
    const a = ac[t]!;
    const prev = t - ratio;
    const ap = prev >= 0 ? ac[prev]! : finalAlpha;
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    const sigma = eta * Math.sqrt((1 - ap) / (1 - a)) * Math.sqrt(1 - a / ap);
    return {
      t,
      inputScale: 1,
      x: Math.sqrt(ap) / sa,
      eps: Math.sqrt(Math.max(0, 1 - ap - sigma * sigma)) - (Math.sqrt(ap) * sb) / sa,
      noise: sigma,
      denoised: { x: 1 / sa, eps: -sb / sa },
    };
  });
  return { timesteps, initNoiseSigma: 1, steps };
}
