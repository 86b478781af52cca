import { describe, expect, it } from 'vitest';
import { flowTimeGrid, forwardDiffusionAlphaBar, integrateFixedGrid, type OdeMethod, type StateOps } from '../../src/pipelines/flow-schedule.js';
import { AbortError, ArgumentError } from '../../src/runtime/errors.js';
import { fx } from '../helpers/fixtures.js';

/** Scalar states that count live allocations, so leaks and double frees show. */
function scalarOps(): StateOps<{ v: number }> & { live: number } {
  const ops = {
    live: 0,
    lincomb(terms: [number, { v: number }][]) {
      ops.live++;
      let s = 0;
      for (const [c, x] of terms) s += c * x.v;
      return { v: s };
    },
    dispose(x: { v: number }) {
      if (Number.isNaN(x.v)) throw new Error('double dispose');
      x.v = NaN;
      ops.live--;
    },
  };
  return ops;
}

/** dx/dt = sin(3t) − x² (REFERENCE §11.2). */
function rhs(ops: { live: number }) {
  return (t: number, x: { v: number }) => {
    ops.live++;
    return { v: Math.sin(3 * t) - x.v * x.v };
  };
}

const exactGrid = (n: number): number[] => Array.from({ length: n }, (_, k) => k / (n - 1));

async function solve(method: OdeMethod, grid: number[], timeDtype: 'float32' | 'float64' = 'float64') {
  const ops = scalarOps();
  const x0 = { v: 1 };
  const out = await integrateFixedGrid(method, grid, x0, rhs(ops), ops, { timeDtype });
  expect(x0.v).toBe(1); // the caller's state is untouched
  expect(ops.live).toBe(1); // only the result is alive
  return out.v;
}

describe('flowTimeGrid', () => {
  it('is torch.linspace(0, 1, N) in float32, bit for bit', () => {
    for (const n of [3, 5, 10]) {
      expect(flowTimeGrid(n)).toEqual(Array.from(fx('flow.io.safetensors', `euler.n${n}.t_grid`).data));
    }
    expect(flowTimeGrid(5)).toEqual(Array.from(fx('pipeline_ddim.io.safetensors', 'ode.t_grid').data));
    const g40 = flowTimeGrid(40);
    expect(g40[0]).toBe(0);
    expect(g40[39]).toBe(1);
    expect(g40[1]).toBe(Math.fround(1 / 39));
  });

  it('rejects fewer than 2 points', () => {
    for (const n of [1, 0, -3, 2.5, NaN]) expect(() => flowTimeGrid(n)).toThrow(ArgumentError);
  });
});

describe('forwardDiffusionAlphaBar', () => {
  it('matches REFERENCE §4 and the pipeline fixture', () => {
    expect(forwardDiffusionAlphaBar(400)).toBe(0.6539039611816406);
    expect(forwardDiffusionAlphaBar(400)).toBe(fx('pipeline_ddim.io.safetensors', 'q_sample.alpha_bar').data[0]);
    const table: [number, number][] = [
      [0, 1.0], [1, 0.9999975], [100, 0.9754766], [200, 0.9043183], [300, 0.7935045], [399, 0.6553993],
      [401, 0.6524072], [500, 0.4992088], [600, 0.3445913], [700, 0.205216], [800, 0.0947529], [900, 0.0240363],
    ];
    for (const [step, v] of table) expect(forwardDiffusionAlphaBar(step), String(step)).toBeCloseTo(v, 7);
    expect(forwardDiffusionAlphaBar(999)).toBeLessThan(1e-32);
    expect(forwardDiffusionAlphaBar(999)).toBeGreaterThan(3e-33);
  });

  it('rejects bad steps', () => {
    for (const s of [-1, 1000, 0.5, NaN]) expect(() => forwardDiffusionAlphaBar(s)).toThrow(ArgumentError);
    expect(() => forwardDiffusionAlphaBar(0, 1)).toThrow(ArgumentError);
  });
});

describe('integrateFixedGrid', () => {
  const ref: Record<OdeMethod, [number, number]> = {
    euler: [0.879315999487, 0.848103716857],
    midpoint: [0.851787720856, 0.844572454385],
    rk4: [0.844520238634, 0.844545516425],
  };

  for (const method of ['euler', 'midpoint', 'rk4'] as const) {
    it(`${method} matches REFERENCE §11.2 for N = 5 and 40 (float64 times)`, async () => {
      expect(await solve(method, exactGrid(5))).toBeCloseTo(ref[method][0], 11);
      expect(await solve(method, exactGrid(40))).toBeCloseTo(ref[method][1], 11);
      // With torch's float32 grid and time arithmetic the result moves by no more than float32 time rounding.
      expect(Math.abs((await solve(method, flowTimeGrid(40), 'float32')) - ref[method][1])).toBeLessThan(1e-7);
    });
  }

  it('rk4 is the 3/8 rule, not classic RK4', async () => {
    const classic = [0.844413768453, 0.844545501488];
    const n5 = await solve('rk4', exactGrid(5));
    const n40 = await solve('rk4', exactGrid(40));
    expect(Math.abs(n5 - classic[0]!)).toBeGreaterThan(1e-4);
    expect(Math.abs(n40 - classic[1]!)).toBeGreaterThan(1e-8);
  });

  it('hands f the float32 times torch computes, and reports every evaluation', async () => {
    const ops = scalarOps();
    const seen: number[] = [];
    const steps: number[] = [];
    const points: number[] = [];
    const f = (t: number, x: { v: number }) => {
      seen.push(t);
      ops.live++;
      return { v: x.v };
    };
    const out = await integrateFixedGrid('rk4', flowTimeGrid(3), { v: 1 }, f, ops, {
      onStep: (s) => steps.push(s.evaluation * 100 + s.total),
      onGridPoint: (i, t) => points.push(i, t),
    });
    ops.dispose(out);
    expect(ops.live).toBe(0);
    const r = Math.fround;
    const third = r(r(0.5) * r(1 / 3));
    const twoThirds = r(r(0.5) * r(2 / 3));
    expect(seen).toEqual([0, third, twoThirds, 0.5, 0.5, r(0.5 + third), r(0.5 + twoThirds), 1]);
    expect(steps).toEqual([108, 208, 308, 408, 508, 608, 708, 808]);
    expect(points).toEqual([1, 0.5, 2, 1]);
    const mid: number[] = [];
    await integrateFixedGrid('midpoint', flowTimeGrid(5), { v: 1 }, (t, x) => (mid.push(t), ops.live++, { v: x.v }), ops);
    expect(mid).toEqual([0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]);
  });

  it('stops with AbortError between evaluations and releases what it made', async () => {
    const ops = scalarOps();
    const ctl = new AbortController();
    let calls = 0;
    const f = (t: number, x: { v: number }) => {
      if (++calls === 3) ctl.abort();
      ops.live++;
      return { v: x.v + t };
    };
    await expect(integrateFixedGrid('rk4', flowTimeGrid(5), { v: 1 }, f, ops, { signal: ctl.signal })).rejects.toThrow(AbortError);
    expect(calls).toBe(3);
    expect(ops.live).toBe(0);
  });

  it('works with async f and a decreasing grid', async () => {
    const ops = scalarOps();
    const out = await integrateFixedGrid('euler', [1, 0.5, 0], { v: 0 }, async (t) => (ops.live++, { v: 1 }), ops);
    expect(out.v).toBe(-1);
  });

  it('rejects bad methods and grids', async () => {
    const ops = scalarOps();
    const f = rhs(ops);
    await expect(integrateFixedGrid('heun' as OdeMethod, [0, 1], { v: 1 }, f, ops)).rejects.toThrow(ArgumentError);
    await expect(integrateFixedGrid('euler', [0], { v: 1 }, f, ops)).rejects.toThrow(ArgumentError);
    await expect(integrateFixedGrid('euler', [0, 0.5, 0.5, 1], { v: 1 }, f, ops)).rejects.toThrow(ArgumentError);
    await expect(integrateFixedGrid('euler', [0, NaN], { v: 1 }, f, ops)).rejects.toThrow(ArgumentError);
    await expect(integrateFixedGrid('euler', [0, 1], { v: 1 }, f, ops, { timeDtype: 'f16' as 'float32' })).rejects.toThrow(ArgumentError);
  });
});
