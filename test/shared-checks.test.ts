/**
 * Every check of test/shared/all-checks.ts in Node (Dawn on SwiftShader); test/browser/ops.test.ts runs
 * the same list in Chromium.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../src/runtime/runtime.js';
import { compare, expectClose } from './helpers/close.js';
import { testRuntime } from './helpers/device.js';
import { nodeLoader } from './helpers/fixtures.js';
import { allChecks } from './shared/all-checks.js';
import { compareResult } from './shared/check-report.js';

describe('shared fixture checks (Node)', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('check names are unique', () => {
    const names = allChecks.map((c) => c.name);
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
  });

  it.each(allChecks.map((c) => [c.name, c] as const))('%s', async (name, check) => {
    const res = await check.run(rt, nodeLoader);
    const list = Array.isArray(res) ? res : [res];
    expect(list.length, `${name} returned no outputs`).toBeGreaterThan(0);
    list.forEach((r, i) => expectClose(r.actual, r.expected, r, `${name}#${i}`));
  });
});

describe('the page comparator agrees with expectClose', () => {
  const cases: [string, number[], number[]][] = [
    ['equal', [1, -2, 3], [1, -2, 3]],
    ['within rtol', [100.05], [100]],
    ['outside', [1, 2.1], [1, 2]],
    ['NaN actual', [NaN], [0]],
    ['Infinity both', [Infinity], [Infinity]],
    ['NaN expected', [0], [NaN]],
  ];
  it.each(cases)('%s', (_, a, e) => {
    const tol = { atol: 1e-3, rtol: 1e-3 };
    const actual = Float32Array.from(a);
    const expected = Float32Array.from(e);
    const page = compareResult({ actual, expected, ...tol });
    const node = compare(actual, expected, tol);
    expect(page.bad).toBe(node.bad);
    expect(page.maxAbs).toBe(node.maxAbs);
    expect(page.first).toEqual(node.first);
  });
});
