import { beforeAll, describe, expect, it } from 'vitest';
import { softmax } from '../../src/ops/softmax.js';
import { setSubgroupKernels, subgroupKernels } from '../../src/ops/subgroups.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { softmaxRef } from '../reference/softmax.js';
import { miscChecks } from '../shared/fixtures-misc.js';

// Every case runs on both row-statistics kernels: with subgroups (SwiftShader has them) and the portable one.
describe.each(['subgroups', 'portable'] as const)('softmax (%s)', (path) => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
    expect(rt.hasSubgroups, 'the test device has subgroups').toBe(true);
    setSubgroupKernels(rt, path === 'subgroups');
    expect(subgroupKernels(rt)).toBe(path === 'subgroups');
  });

  it('matches the float64 twin (large logits, odd lengths, SD cross-attention 77 keys)', async () => {
    // Row counts that are not multiples of the subgroup or workgroup size; L = 1, odd, and % 4 == 0.
    const cases: [number[], number][] = [[[3, 1], 1], [[2, 5, 17], 30], [[8, 77], 8], [[2, 4096], 4], [[1, 300], 200], [[67, 12], 3], [[130, 5], 10]];
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
