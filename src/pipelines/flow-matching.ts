/**
 * Flow-matching ODE sampling with the CFM network (REFERENCE §3.2–3.3): fm-boosting `FlowModel.generate`, i.e.
 * torchdiffeq `odeint(f, x0, linspace(0, 1, numSteps), method)` with f(t, x) = net(cat([x, context]), t).
 * The state lives on the GPU for the whole solve; nothing is read back between steps.
 */
import type { CfmUNet } from '../models/cfm-unet.js';
import { axpby, scale } from '../ops/elementwise.js';
import { ArgumentError, ShapeError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { flowTimeGrid, integrateFixedGrid, ODE_EVALS_PER_STEP, type OdeMethod, type StateOps } from './flow-schedule.js';

export interface SampleFlowOptions {
  /** torchdiffeq fixed-grid solver; 'rk4' is its 3/8 rule. Default 'euler'. */
  method?: OdeMethod;
  /** Grid POINTS (numSteps − 1 intervals), as FlowModel.generate counts them. */
  numSteps: number;
  /** After every network evaluation: (evaluations done, total = evals per interval × (numSteps − 1)). */
  onProgress?: (nfe: number, total: number) => void;
  signal?: AbortSignal;
  /**
   * The state at grid point `index` (0 = x0, numSteps − 1 = the result) at time `t`. Borrowed: clone it to keep
   * it (recording a copy does not wait for the GPU).
   */
  onGridPoint?: (index: number, t: number, x: Tensor) => void;
}

/** Network evaluations a solve makes. */
export function flowNfe(method: OdeMethod, numSteps: number): number {
  return ODE_EVALS_PER_STEP[method] * (numSteps - 1);
}

/** Σ cᵢ·xᵢ on the GPU with the fewest axpby calls; intermediates released at once. */
export function lincomb(rt: Runtime, terms: readonly [number, Tensor][]): Tensor {
  if (terms.length === 0) throw new ArgumentError('lincomb', 'needs at least one term');
  if (terms.length === 1) return scale(rt, terms[0]![1], terms[0]![0]);
  let acc = axpby(rt, terms[0]![0], terms[0]![1], terms[1]![0], terms[1]![1]);
  for (let i = 2; i < terms.length; i++) {
    const next = axpby(rt, 1, acc, terms[i]![0], terms[i]![1]);
    acc.dispose();
    acc = next;
  }
  return acc;
}

/**
 * x1 = ODE solution at t = 1 from x0 at t = 0, with velocity net(x_t, context, t). x0 and context [N, C, H, W]
 * stay the caller's; the result is a new tensor.
 */
export async function sampleFlow(rt: Runtime, net: CfmUNet, x0: Tensor, context: Tensor, o: SampleFlowOptions): Promise<Tensor> {
  const op = 'sampleFlow';
  if (typeof o !== 'object' || o === null) throw new ArgumentError(op, 'options { numSteps, method? } are required');
  const method = o.method ?? 'euler';
  if (!(method in ODE_EVALS_PER_STEP)) throw new ArgumentError(op, `method must be 'euler', 'midpoint' or 'rk4', got '${String(method)}'`);
  if (!Number.isInteger(o.numSteps) || o.numSteps < 2) {
    throw new ArgumentError(op, `numSteps counts grid points and must be an integer ≥ 2 (2 = one step), got ${String(o.numSteps)}`);
  }
  if (!(x0 instanceof Tensor) || x0.shape.length !== 4 || x0.dtype !== 'f32') throw new ShapeError(op, `x0 must be an f32 [N, ${net.latentChannels}, H, W] tensor`);
  if (x0.shape[1] !== net.latentChannels) throw new ShapeError(op, `x0 [${x0.shape}] must have ${net.latentChannels} channels`);
  if (!(context instanceof Tensor) || context.shape.length !== 4) throw new ShapeError(op, `context must be an f32 [N, ${net.contextChannels}, H, W] tensor`);
  const [N, , H, W] = x0.shape as [number, number, number, number];
  if (context.shape[0] !== N || context.shape[2] !== H || context.shape[3] !== W) {
    throw new ShapeError(op, `context [${context.shape}] and x0 [${x0.shape}] differ in batch or size`);
  }
  throwIfAborted(o.signal, op);
  const grid = flowTimeGrid(o.numSteps);
  // Validates the context (channels, size multiple) before any work is recorded.
  const cond = net.prepareContext(rt, context);
  const ops: StateOps<Tensor> = {
    lincomb: (terms) => lincomb(rt, terms),
    dispose: (s) => s.dispose(),
  };
  try {
    o.onGridPoint?.(0, grid[0]!, x0);
    const x1 = await integrateFixedGrid(method, grid, x0, (t, x) => net.forward(rt, x, cond, t), ops, {
      signal: o.signal,
      onStep: o.onProgress && ((s) => o.onProgress!(s.evaluation, s.total)),
      onGridPoint: o.onGridPoint,
    });
    return x1 === x0 ? rt.clone(x0) : x1;
  } finally {
    cond.dispose();
  }
}
