/**
 * Runs FixtureChecks and reports each output's agreement without a test framework, for the browser page
 * (Node runs the same checks through expectClose). The rule is test/helpers/close.ts's:
 * pass iff |a − e| ≤ atol + rtol·|e| and a is finite, elementwise.
 */
import type { Runtime } from '../../src/runtime/runtime.js';
import type { CheckResult, FixtureCheck, FixtureLoader } from './fixture-check.js';

export interface OutputReport {
  n: number;
  atol: number;
  rtol: number;
  maxAbs: number;
  bad: number;
  /** Up to five offenders as '[index] got a, want e'. */
  first: string[];
}

export interface CheckReport {
  name: string;
  ok: boolean;
  ms: number;
  outputs: OutputReport[];
  /** Set when the check threw (compile error, missing fixture, …). */
  error?: string;
}

/** Compares one result; a length mismatch counts every element as bad. */
export function compareResult(r: CheckResult): OutputReport {
  const { actual, expected, atol, rtol } = r;
  const out: OutputReport = { n: expected.length, atol, rtol, maxAbs: 0, bad: 0, first: [] };
  if (actual.length !== expected.length) {
    out.bad = Math.max(actual.length, expected.length);
    out.maxAbs = Infinity;
    out.first.push(`length ${actual.length}, want ${expected.length}`);
    return out;
  }
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const d = Math.abs(a - e);
    if (!(d <= atol + rtol * Math.abs(e)) || !Number.isFinite(a)) {
      out.bad++;
      if (out.first.length < 5) out.first.push(`[${i}] got ${a}, want ${e}`);
    }
    if (d > out.maxAbs || Number.isNaN(d)) out.maxAbs = Number.isNaN(d) ? Infinity : d;
  }
  return out;
}

/** Runs one check and compares its outputs; never throws. */
export async function runCheck(rt: Runtime, check: FixtureCheck, load: FixtureLoader): Promise<CheckReport> {
  const t0 = performance.now();
  try {
    const res = await check.run(rt, load);
    const outputs = (Array.isArray(res) ? res : [res]).map(compareResult);
    const ok = outputs.length > 0 && outputs.every((o) => o.bad === 0);
    return { name: check.name, ok, ms: performance.now() - t0, outputs };
  } catch (e) {
    const err = e as Error;
    return { name: check.name, ok: false, ms: performance.now() - t0, outputs: [], error: `${err.name}: ${err.message}` };
  }
}

/** One line per check, for test failure messages. */
export function describeReport(r: CheckReport): string {
  if (r.error) return `${r.name}: threw ${r.error}`;
  if (!r.outputs.length) return `${r.name}: returned no outputs`;
  return r.outputs
    .map((o, i) => `${r.name}#${i}: ${o.bad}/${o.n} bad (atol ${o.atol}, rtol ${o.rtol}), maxAbs ${o.maxAbs.toExponential(3)}${o.first.length ? '; ' + o.first.join('; ') : ''}`)
    .join('\n');
}
