/**
 * Setup shared by the attention op tests (test/ops/attention.test.ts, test/ops/fmboost-attention.test.ts):
 * the tolerance, uploading inputs and reading one result, and running fixture checks.
 */
import { expect } from 'vitest';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import type { FixtureCheck } from '../shared/fixture-check.js';
import { expectClose } from './close.js';
import { nodeLoader } from './fixtures.js';

/** Attention reduces over D (scores) and Lk (softmax-weighted sum) in f32; the GPU uses exp2 on prescaled scores. */
export const ATTENTION_TOL = { atol: 1e-5, rtol: 1e-4 };

/** Uploads `inputs` ([data, shape] pairs) in a scope, runs `op` on them, checks the output shape and reads it. */
export function runAttention(rt: Runtime, inputs: [Float32Array, number[]][], outShape: number[], op: (...t: Tensor[]) => Tensor): Promise<Float32Array> {
  return rt.scopeAsync(async () => {
    const y = op(...inputs.map(([data, shape]) => rt.upload(data, shape)));
    expect(y.shape).toEqual(outShape);
    return rt.read(y);
  });
}

/**
 * Runs a fixture check, compares each of its outputs (named by `labels` when given, whose count must
 * match) and logs the largest absolute error of each.
 */
export async function expectFixture(rt: Runtime, check: FixtureCheck, labels?: string[]): Promise<void> {
  const results = [await check.run(rt, nodeLoader)].flat();
  if (labels) expect(results).toHaveLength(labels.length);
  else expect(results.length).toBeGreaterThan(0);
  for (const [i, r] of results.entries()) {
    const name = labels ? `${check.name}.${labels[i]}` : results.length > 1 ? `${check.name}#${i}` : check.name;
    console.info(`${name}: max abs err ${expectClose(r.actual, r.expected, r, name).maxAbs.toExponential(2)}`);
  }
}
