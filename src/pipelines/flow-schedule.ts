/**
 * Scalars of the flow-matching side (REFERENCE §3–§4): the ODE time grid, the forward-diffusion ᾱ that noises the
 * CFM source, and torchdiffeq's fixed-grid solvers (`euler`, `midpoint`, `rk4` = the 3/8 rule) written once over an
 * abstract state, so the same code steps numbers in tests and GPU tensors in the pipeline.
 */
import { ArgumentError, throwIfAborted } from '../runtime/errors.js';
import { linspaceF32 } from './schedulers/noise-schedule.js';

const f32 = Math.fround;

/** `torch.linspace(0, 1, numSteps)` in float32: the grid of `FlowModel.generate` (numSteps points, numSteps − 1 steps). */
export function flowTimeGrid(numSteps: number): number[] {
  if (!Number.isInteger(numSteps) || numSteps < 2 || numSteps > 100_000) throw new ArgumentError('flowTimeGrid', `numSteps (grid points) must be an integer in [2, 100000], got ${String(numSteps)}`);
  return Array.from(linspaceF32(0, 1, numSteps));
}

/**
 * ᾱ at `step` of fm-boosting's `ForwardDiffusion` (cosine schedule, no shift at im_size 64): τ = linspace(0, 1, n)[step]
 * (float64), logSNR = −2·ln(tan(πτ/2) + 1e−5), ᾱ = sigmoid(logSNR), returned as float32 (ᾱ₄₀₀ = 0.6539039611816406).
 */
export function forwardDiffusionAlphaBar(step: number, nSteps = 1000): number {
  if (!Number.isInteger(nSteps) || nSteps < 2) throw new ArgumentError('forwardDiffusionAlphaBar', `nSteps must be an integer ≥ 2, got ${String(nSteps)}`);
  if (!Number.isInteger(step) || step < 0 || step >= nSteps) throw new ArgumentError('forwardDiffusionAlphaBar', `step must be an integer in [0, ${nSteps - 1}], got ${String(step)}`);
  // torch.linspace fills the second half from the end.
  const dt = 1 / (nSteps - 1);
  const tau = step < Math.floor(nSteps / 2) ? step * dt : 1 - (nSteps - 1 - step) * dt;
  const logSnr = -2 * Math.log(Math.tan((Math.PI * tau) / 2) + 1e-5);
  return f32(1 / (1 + Math.exp(-logSnr)));
}

export type OdeMethod = 'euler' | 'midpoint' | 'rk4';

/** Network evaluations per interval. */
export const ODE_EVALS_PER_STEP: Readonly<Record<OdeMethod, number>> = { euler: 1, midpoint: 2, rk4: 4 };

/** The linear algebra the solvers need on a state. */
export interface StateOps<S> {
  /** Σ coefᵢ·stateᵢ as a new state; inputs stay valid. */
  lincomb(terms: [number, S][]): S;
  /** Releases a state made by `lincomb` or returned by `f`. */
  dispose(s: S): void;
}

export interface IntegrateOptions<S> {
  /** Checked before every network evaluation. */
  signal?: AbortSignal;
  /** After every network evaluation (1-based `evaluation` of `total`), with the time it was given. */
  onStep?: (info: { evaluation: number; total: number; t: number }) => void;
  /** After every interval with the state at grid point `index` (do not dispose it). */
  onGridPoint?: (index: number, t: number, x: S) => void;
  /**
   * Arithmetic of the times handed to `f`: 'float32' (default) reproduces torch with a float32 grid
   * (`t0 + dt·(1/3)` rounded at each op); 'float64' for a float64 reference.
   */
  timeDtype?: 'float32' | 'float64';
}

/**
 * torchdiffeq `odeint(f, x0, grid, method)` on a fixed grid: returns the state at the last grid point (a new state;
 * `x0` is not disposed). Per interval, with dt = t1 − t0 and k1 = f(t0, x):
 * euler x + dt·k1; midpoint x + dt·f(t0 + dt/2, x + k1·dt/2); rk4 (3/8 rule) k2 = f(t0 + dt/3, x + dt·k1/3),
 * k3 = f(t0 + 2dt/3, x + dt·(k2 − k1/3)), k4 = f(t1, x + dt·(k1 − k2 + k3)), x + dt·(k1 + 3k2 + 3k3 + k4)/8.
 */
export async function integrateFixedGrid<S>(
  method: OdeMethod,
  grid: readonly number[],
  x0: S,
  f: (t: number, x: S) => S | Promise<S>,
  ops: StateOps<S>,
  o: IntegrateOptions<S> = {},
): Promise<S> {
  const where = 'integrateFixedGrid';
  if (!(method in ODE_EVALS_PER_STEP)) throw new ArgumentError(where, `unknown method '${String(method)}' (euler, midpoint, rk4)`);
  if (!Array.isArray(grid) || grid.length < 2) throw new ArgumentError(where, 'grid needs at least 2 time points');
  const dir = Math.sign(grid[1]! - grid[0]!);
  for (let i = 0; i < grid.length; i++) {
    if (!Number.isFinite(grid[i])) throw new ArgumentError(where, `grid[${i}] = ${grid[i]} is not finite`);
    if (i > 0 && (dir === 0 || Math.sign(grid[i]! - grid[i - 1]!) !== dir)) throw new ArgumentError(where, 'grid must be strictly increasing or strictly decreasing');
  }
  const timeDtype = o.timeDtype ?? 'float32';
  if (timeDtype !== 'float32' && timeDtype !== 'float64') throw new ArgumentError(where, `timeDtype must be 'float32' or 'float64', got ${String(timeDtype)}`);
  const r = timeDtype === 'float32' ? f32 : (v: number) => v;
  const total = ODE_EVALS_PER_STEP[method] * (grid.length - 1);
  let evaluation = 0;
  const owned: S[] = []; // states to release when this interval is done
  const evalAt = async (t: number, x: S): Promise<S> => {
    throwIfAborted(o.signal, where);
    const k = await f(t, x);
    owned.push(k);
    o.onStep?.({ evaluation: ++evaluation, total, t });
    return k;
  };
  const comb = (terms: [number, S][]): S => {
    const s = ops.lincomb(terms);
    owned.push(s);
    return s;
  };
  const oneThird = r(1 / 3);
  const twoThirds = r(2 / 3);

  let x = x0;
  try {
    for (let i = 0; i + 1 < grid.length; i++) {
      const t0 = r(grid[i]!);
      const t1 = r(grid[i + 1]!);
      const dt = r(t1 - t0);
      const k1 = await evalAt(t0, x);
      let next: S;
      if (method === 'euler') {
        next = ops.lincomb([[1, x], [dt, k1]]);
      } else if (method === 'midpoint') {
        const half = r(0.5 * dt);
        const k2 = await evalAt(r(t0 + half), comb([[1, x], [half, k1]]));
        next = ops.lincomb([[1, x], [dt, k2]]);
      } else {
        const k2 = await evalAt(r(t0 + r(dt * oneThird)), comb([[1, x], [dt / 3, k1]]));
        const k3 = await evalAt(r(t0 + r(dt * twoThirds)), comb([[1, x], [dt, k2], [-dt / 3, k1]]));
        const k4 = await evalAt(t1, comb([[1, x], [dt, k1], [-dt, k2], [dt, k3]]));
        next = ops.lincomb([[1, x], [dt / 8, k1], [(3 * dt) / 8, k2], [(3 * dt) / 8, k3], [dt / 8, k4]]);
      }
      for (const s of owned.splice(0)) ops.dispose(s);
      if (x !== x0) ops.dispose(x);
      x = next;
      o.onGridPoint?.(i + 1, grid[i + 1]!, x);
    }
  } catch (e) {
    for (const s of owned.splice(0)) ops.dispose(s);
    if (x !== x0) ops.dispose(x);
    throw e;
  }
  return x;
}
