import { expect } from 'vitest';

export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface CloseReport {
  maxAbs: number;
  maxRel: number;
  nmse: number;
  bad: number;
  first: string[];
}

/** Compares elementwise: pass iff |a − e| ≤ atol + rtol·|e| everywhere (and both are finite). */
export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): CloseReport {
  let maxAbs = 0;
  let maxRel = 0;
  let se = 0;
  let ss = 0;
  let bad = 0;
  const first: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const d = Math.abs(a - e);
    se += (a - e) ** 2;
    ss += e * e;
    if (!(d <= tol.atol + tol.rtol * Math.abs(e)) || !Number.isFinite(a)) {
      bad++;
      if (first.length < 5) first.push(`[${i}] got ${a}, want ${e}`);
    }
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
    if (Math.abs(e) > 1e-6) maxRel = Math.max(maxRel, d / Math.abs(e));
  }
  return { maxAbs, maxRel, nmse: ss > 0 ? se / ss : se, bad, first };
}

/** Asserts closeness; on failure prints the first offending indices, max-abs, max-rel and NMSE. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what = 'values'): CloseReport {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const r = compare(actual, expected, tol);
  const msg = `${what}: ${r.bad} of ${expected.length} outside atol=${tol.atol} rtol=${tol.rtol}; maxAbs=${r.maxAbs.toExponential(3)} maxRel=${r.maxRel.toExponential(3)} nmse=${r.nmse.toExponential(3)}; ${r.first.join('; ')}`;
  expect(r.bad, msg).toBe(0);
  return r;
}
