/**
 * The discrete DDPM noise schedule shared by the SD-1.5 schedulers (diffusers `scheduling_*.py`, REFERENCE §9.1),
 * reproduced bit for bit: betas in float32 (`linspace(√β₀, √β₁, T)²` for scaled_linear), `ᾱ = cumprod(1 − β)`
 * accumulated in float64 and stored as float32, as torch's CPU cumprod does for float32 tensors.
 */
import { ArgumentError } from '../../runtime/errors.js';

/** Scheduler settings (diffusers `scheduler_config.json`, camelCased). */
export interface SchedulerConfig {
  /** DDPM training steps T (1000 for SD). */
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: 'scaled_linear' | 'linear';
  /** Added to 'leading' timesteps (SD-1.5: 1). LCM ignores it. */
  stepsOffset: number;
  /** DDIM: ᾱ before the first training step is 1 (true) or ᾱ₀ (false, SD-1.5). */
  setAlphaToOne: boolean;
  /** Unset → each scheduler's own default (DDIM 'leading', Euler 'linspace'); LCM always uses its own grid. */
  timestepSpacing?: 'leading' | 'linspace' | 'trailing';
  /** LCM: the distillation grid size (50) and the boundary-condition time scale (10). */
  originalInferenceSteps: number;
  timestepScaling: number;
}

/** SD-1.5 `scheduler/scheduler_config.json` with the LCM defaults. */
export const SD15_SCHEDULER_CONFIG: Readonly<SchedulerConfig> = Object.freeze({
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: 'scaled_linear',
  stepsOffset: 1,
  setAlphaToOne: false,
  originalInferenceSteps: 50,
  timestepScaling: 10,
});

/** One sampler step as scalars; the pipeline applies them to tensors with `axpby`. */
export interface SchedulerStep {
  /** Timestep fed to the UNet (a DDPM index; fractional for Euler 'linspace'), float32-exact. */
  t: number;
  /** The UNet sees `inputScale · latent` (Euler: 1/√(σ²+1); 1 otherwise). */
  inputScale: number;
  /** Next latent = `x · latent + eps · ε`, plus `noise · z` with fresh z ~ N(0, I) when `noise` ≠ 0. */
  x: number;
  eps: number;
  noise: number;
  /**
   * The clean-latent estimate `denoised.x · latent + denoised.eps · ε` (LCM's boundary-condition output, which
   * its pipeline returns after the last step; x̂₀ for DDIM and Euler, e.g. for previews).
   */
  denoised: { x: number; eps: number };
}

export interface Schedule {
  /** UNet timesteps, one per step. */
  timesteps: number[];
  /** Initial latent = `initNoiseSigma · z`, z ~ N(0, I). */
  initNoiseSigma: number;
  steps: SchedulerStep[];
}

const f32 = Math.fround;

/** torch.linspace(start, end, n) in float32 (the CPU kernel: float32 step, fills from both ends, fused multiply-add). */
export function linspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  // step·i is exact in float64 (24-bit step × i < 2²⁹), so one rounding reproduces the kernel's fused multiply-add.
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(s + step * i) : f32(e - step * (n - 1 - i));
  return out;
}

/** ᾱ_t for t = 0..T−1 (float32 values). */
export function alphasCumprod(c: SchedulerConfig): Float32Array {
  validateConfig(c);
  const T = c.numTrainTimesteps;
  const betas =
    c.betaSchedule === 'scaled_linear'
      ? linspaceF32(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), T).map((b) => f32(b * b))
      : linspaceF32(c.betaStart, c.betaEnd, T);
  const out = new Float32Array(T);
  let acc = 1;
  for (let i = 0; i < T; i++) {
    acc *= f32(1 - betas[i]!);
    out[i] = acc;
  }
  return out;
}

export function validateConfig(c: SchedulerConfig): void {
  const where = 'SchedulerConfig';
  if (c === null || typeof c !== 'object') throw new ArgumentError(where, 'expected a config object (e.g. SD15_SCHEDULER_CONFIG)');
  const T = c.numTrainTimesteps;
  if (!Number.isInteger(T) || T < 2 || T > 100_000) throw new ArgumentError(where, `numTrainTimesteps must be an integer in [2, 100000], got ${T}`);
  if (!(c.betaStart > 0 && c.betaEnd > c.betaStart && c.betaEnd < 1)) throw new ArgumentError(where, `need 0 < betaStart < betaEnd < 1, got ${c.betaStart}, ${c.betaEnd}`);
  if (c.betaSchedule !== 'scaled_linear' && c.betaSchedule !== 'linear') throw new ArgumentError(where, `betaSchedule '${String(c.betaSchedule)}' is not supported (scaled_linear, linear)`);
  if (!Number.isInteger(c.stepsOffset) || c.stepsOffset < 0 || c.stepsOffset >= T) throw new ArgumentError(where, `stepsOffset must be an integer in [0, ${T}), got ${c.stepsOffset}`);
  if (typeof c.setAlphaToOne !== 'boolean') throw new ArgumentError(where, 'setAlphaToOne must be a boolean');
  if (c.timestepSpacing !== undefined && !['leading', 'linspace', 'trailing'].includes(c.timestepSpacing)) throw new ArgumentError(where, `timestepSpacing '${String(c.timestepSpacing)}' is not one of leading, linspace, trailing`);
  if (!Number.isInteger(c.originalInferenceSteps) || c.originalInferenceSteps < 1 || c.originalInferenceSteps > T) throw new ArgumentError(where, `originalInferenceSteps must be an integer in [1, ${T}], got ${c.originalInferenceSteps}`);
  if (!(c.timestepScaling > 0 && Number.isFinite(c.timestepScaling))) throw new ArgumentError(where, `timestepScaling must be a positive number, got ${c.timestepScaling}`);
}

/** numpy's round (half to even), which diffusers uses on timestep grids. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy.linspace(start, stop, n) in float64 (`i·step + start`, last point exactly `stop`). */
export function linspaceF64(start: number, stop: number, n: number): number[] {
  if (n === 1) return [start];
  const step = (stop - start) / (n - 1);
  const out = Array.from({ length: n }, (_, i) => i * step + start);
  out[n - 1] = stop;
  return out;
}

/**
 * Integer timesteps of DDIM-style spacing (descending): 'leading' `(N−1−k)·⌊T/N⌋ + offset`, 'linspace'
 * `round(linspace(0, T−1, N))`, 'trailing' `round(T − k·T/N) − 1`.
 */
export function integerTimesteps(spacing: 'leading' | 'linspace' | 'trailing', T: number, N: number, stepsOffset: number): number[] {
  if (spacing === 'leading') {
    const r = Math.floor(T / N);
    return Array.from({ length: N }, (_, k) => (N - 1 - k) * r + stepsOffset);
  }
  if (spacing === 'linspace') return linspaceF64(0, T - 1, N).map(roundHalfEven).reverse();
  // The reference's np.arange(T, 0, −T/N) has N + 1 points for some N (61, 103, …) through rounding, the last
  // being timestep −1; the first N are the intended grid.
  return Array.from({ length: N }, (_, k) => roundHalfEven(T + k * (-T / N)) - 1);
}

/** Validates a step count: an integer in [1, max]. */
export function checkSteps(where: string, steps: number, max: number): void {
  if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 1 || steps > max) {
    throw new ArgumentError(where, `steps must be an integer in [1, ${max}], got ${String(steps)}`);
  }
}
