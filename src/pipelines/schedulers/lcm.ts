/**
 * LCM (diffusers `LCMScheduler`, epsilon prediction; REFERENCE §9.4): timesteps from the 50-step distillation grid;
 * denoised = c_out·x̂₀ + c_skip·x, x̂₀ = (x − √(1−ᾱ_t)·ε)/√ᾱ_t; next = √ᾱ_{t'}·denoised + √(1−ᾱ_{t'})·z, or denoised
 * on the last step. c_skip and c_out are float32 as in the reference.
 */
import { ArgumentError } from '../../runtime/errors.js';
import { alphasCumprod, checkSteps, linspaceF64, validateConfig, type Schedule, type SchedulerConfig } from './noise-schedule.js';

const f32 = Math.fround;
const SIGMA_DATA_SQ = 0.25; // σ_data = 0.5

/** Boundary-condition scalings at timestep t: c_skip = σd²/((s·t)² + σd²), c_out = s·t/√((s·t)² + σd²). */
export function lcmBoundaryScalings(t: number, timestepScaling: number): { cSkip: number; cOut: number } {
  const st = f32(f32(t) * f32(timestepScaling));
  const den = f32(f32(st * st) + SIGMA_DATA_SQ);
  return { cSkip: f32(SIGMA_DATA_SQ / den), cOut: f32(st / f32(Math.sqrt(den))) };
}

/** LCM timesteps: origin grid k·i − 1 (k = ⌊T/K⌋, i = 1..K) reversed, sampled at ⌊linspace(0, K, N, endpoint=False)⌋. */
export function lcmTimesteps(c: SchedulerConfig, numSteps: number): number[] {
  const K = c.originalInferenceSteps;
  checkSteps('lcmSchedule', numSteps, K);
  const k = Math.floor(c.numTrainTimesteps / K);
  const origin = Array.from({ length: K }, (_, i) => (K - i) * k - 1);
  const idx = linspaceF64(0, K, numSteps + 1).slice(0, numSteps).map(Math.floor);
  return idx.map((i) => origin[i]!);
}

export function lcmSchedule(c: SchedulerConfig, numSteps: number): Schedule {
  validateConfig(c);
  const ac = alphasCumprod(c);
  const timesteps = lcmTimesteps(c, numSteps);
  const steps = timesteps.map((t, i) => {
    const last = i === numSteps - 1;
    const a = ac[t]!;
    const ap = ac[last ? t : timesteps[i + 1]!]!;
    const { cSkip, cOut } = lcmBoundaryScalings(t, c.timestepScaling);
    const dx = cOut / Math.sqrt(a) + cSkip;
    const de = (-cOut * Math.sqrt(1 - a)) / Math.sqrt(a);
    const keep = last ? 1 : Math.sqrt(ap);
    return { t, inputScale: 1, x: keep * dx, eps: keep * de, noise: last ? 0 : Math.sqrt(1 - ap), denoised: { x: dx, eps: de } };
  });
  if (steps.some((s) => !Number.isFinite(s.x) || !Number.isFinite(s.eps))) throw new ArgumentError('lcmSchedule', 'non-finite coefficients (check the beta schedule)');
  return { timesteps, initNoiseSigma: 1, steps };
}
