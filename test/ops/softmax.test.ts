import { beforeAll, describe, it } from 'vitest';
import { softmax } from '../../src/ops/softmax.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { softmaxRef } from '../reference/softmax.js';
import { miscChecks } from '../shared/fixtures-misc.js';

describe('softmax', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('matches the float64 twin (large logits, odd lengths, SD cross-attention 77 keys)', async () => {
    const cases: [number[], number][] = [[[3, 1], 1], [[2, 5, 17], 30], [[8, 77], 8], [[2, 4096], 4], [[1, 300], 200]];
    for (const [shape, s] of cases) {
      const L = shape[shape.length - 1]!;
      const x = randn(shape.reduce((a, b) => a * b, 1), L, s);
      const got = await rt.scopeAsync(async () => rt.read(softmax(rt, rt.upload(x, shape))));
      expectClose(got, softmaxRef(x, L), { atol: 1e-6, rtol: 1e-4 }, `softmax [${shape}] std ${s}`);
    }
  });

  it('fixture: softmax', async () => {
    const [c] = miscChecks.filter((c) => c.name === 'ops/softmax');
    const r = (await c!.run(rt, nodeLoader)) as { actual: Float32Array; expected: Float32Array; atol: number; rtol: number };
    console.info(`${c!.name}: max abs err ${expectClose(r.actual, r.expected, r, c!.name).maxAbs.toExponential(2)}`);
  });
});
