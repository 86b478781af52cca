import { beforeAll, describe, expect, it } from 'vitest';
import { assertFinite } from '../../src/ops/check-finite.js';
import { NumericalError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { testRuntime } from '../helpers/device.js';
import { randn } from '../helpers/random.js';

describe('assertFinite', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('passes finite tensors of awkward sizes', async () => {
    for (const n of [1, 3, 1023, 4097, 300_001]) {
      const t = rt.upload(randn(n, n, 1e30), [n]);
      await assertFinite(rt, t, 'test');
      t.dispose();
    }
  });

  it('names the stage and counts NaN, +Inf and -Inf anywhere, including the last element', async () => {
    const n = 300_001;
    const v = randn(n, 7);
    v[0] = NaN;
    v[12345] = Infinity;
    v[n - 1] = -Infinity;
    const t = rt.upload(v, [n]);
    await expect(assertFinite(rt, t, 'boost: CFM output')).rejects.toThrow(NumericalError);
    await expect(assertFinite(rt, t, 'boost: CFM output')).rejects.toThrow(/boost: CFM output: 3 of 300001/);
    t.dispose();
  });
});
