/**
 * Euler discrete (diffusers `EulerDiscreteScheduler`, epsilon prediction, s_churn 0; REFERENCE §9.3):
 * σ_i = √((1−ᾱ_i)/ᾱ_i), σ(t) linearly interpolated at fractional t, UNet input x/√(σ²+1), x ← x + (σ_next − σ)·ε.
 * σ values are float32 as the reference stores them.
 */
import { alphasCumprod, checkSteps, linspaceF64, roundHalfEven, validateConfig, type Schedule, type SchedulerConfig } from './noise-schedule.js';

const f32 = Math.fround;

/** σ of every training step, float32 as torch computes `((1 − ᾱ)/ᾱ) ** 0.5`. */
export function trainSigmas(c: SchedulerConfig): Float32Array {
  return alphasCumprod(c).map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

/** UNet timesteps (float32, descending) for Euler's spacing. */
function eulerTimesteps(spacing: 'leading' | 'linspace' | 'trailing', T: number, N: number, offset: number): number[] {
  if (spacing === 'linspace') return linspaceF64(0, T - 1, N).map(f32).reverse();
  if (spacing === 'leading') {
    const r = Math.floor(T / N);
    return Array.from({ length: N }, (_, k) => roundHalfEven((N - 1 - k) * r) + offset);
  }
  return Array.from({ length: N }, (_, k) => roundHalfEven(T - k * (T / N)) - 1);
}

/** numpy.interp over integer knots 0..n−1 (float64), then stored as float32. */
function interpSigma(s: Float32Array, t: number): number {
  const n = s.length;
  if (t <= 0) return s[0]!;
  if (t >= n - 1) return s[n - 1]!;
  const j = Math.floor(t);
  return f32((s[j + 1]! - s[j]!) * (t - j) + s[j]!);
}

export function eulerSchedule(c: SchedulerConfig, numSteps: number): Schedule {
  validateConfig(c);
  const T = c.numTrainTimesteps;
  checkSteps('eulerSchedule', numSteps, T);
  const spacing = c.timestepSpacing ?? 'linspace';
  const all = trainSigmas(c);
  const timesteps = eulerTimesteps(spacing, T, numSteps, c.stepsOffset);
  const sigmas = [...timesteps.map((t) => interpSigma(all, t)), 0];
  const maxSigma = Math.max(...sigmas);
  const initNoiseSigma = spacing === 'leading' ? f32(Math.sqrt(f32(f32(maxSigma * maxSigma) + 1))) : maxSigma;
  const steps = timesteps.map((t, i) => {
    const s = sigmas[i]!;
    return {
      t,
      inputScale: 1 / Math.sqrt(s * s + 1),
      x: 1,
      eps: sigmas[i + 1]! - s,
      noise: 0,
      denoised: { x: 1, eps: -s },
    };
  });
  return { timesteps, initNoiseSigma, steps };
}
