import { beforeAll, describe, expect, it } from 'vitest';
import { interpolateBilinear, upsampleNearest2x } from '../../src/ops/resize.js';
import { ArgumentError, ShapeError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { testRuntime } from '../helpers/device.js';
import { nodeLoader } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';
import { interpolateBilinearRef, upsampleNearest2xRef } from '../reference/resize.js';
import { miscChecks } from '../shared/fixtures-misc.js';

const TOL = { atol: 1e-5, rtol: 1e-4 };

describe('resize', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  it('nearest ×2 and bilinear (up, down, arbitrary, 1-pixel) match the twins', async () => {
    for (const [N, C, H, W] of [[1, 1, 1, 1], [2, 3, 5, 7], [1, 4, 64, 64]]) {
      const x = randn(N! * C! * H! * W!, H!);
      const got = await rt.scopeAsync(async () => rt.read(upsampleNearest2x(rt, rt.upload(x, [N!, C!, H!, W!]))));
      expectClose(got, upsampleNearest2xRef(x, N! * C!, H!, W!), { atol: 0, rtol: 0 }, `nearest [${N}, ${C}, ${H}, ${W}]`);
    }
    const cases: [number[], [number, number]][] = [
      [[1, 2, 5, 7], [10, 14]],
      [[2, 3, 16, 16], [8, 8]],
      [[1, 2, 5, 7], [9, 4]],
      [[1, 1, 1, 1], [3, 2]],
      [[1, 4, 64, 64], [128, 128]], // PSU: latent-size ×2 (REFERENCE §5.2)
      [[1, 3, 13, 11], [7, 29]],
    ];
    for (const [shape, [Ho, Wo]] of cases) {
      const [N, C, H, W] = shape as [number, number, number, number];
      const x = randn(N * C * H * W, Ho + Wo);
      const got = await rt.scopeAsync(async () => rt.read(interpolateBilinear(rt, rt.upload(x, shape), [Ho, Wo])));
      expectClose(got, interpolateBilinearRef(x, N * C, H, W, Ho, Wo), TOL, `bilinear [${shape}] → ${Ho}×${Wo}`);
    }
  });

  it('rejects bad inputs with typed errors', () => {
    rt.scope(() => {
      expect(() => upsampleNearest2x(rt, rt.zeros([2, 3, 4]))).toThrow(ShapeError);
      expect(() => interpolateBilinear(rt, rt.zeros([1, 1, 2, 2]), [0, 2])).toThrow(ArgumentError);
      expect(() => interpolateBilinear(rt, rt.zeros([1, 1, 2, 2]), [2.5, 2])).toThrow(ArgumentError);
    });
  });

  it('fixtures: upsample_nearest2x, bilinear_up2x, bilinear_down, bilinear_any', async () => {
    const names = ['ops/upsample_nearest2x', 'ops/bilinear_up2x', 'ops/bilinear_down', 'ops/bilinear_any'];
    const checks = miscChecks.filter((c) => names.includes(c.name));
    expect(checks).toHaveLength(4);
    for (const c of checks) {
      const r = (await c.run(rt, nodeLoader)) as { actual: Float32Array; expected: Float32Array; atol: number; rtol: number };
      console.info(`${c.name}: max abs err ${expectClose(r.actual, r.expected, r, c.name).maxAbs.toExponential(2)}`);
    }
  });
});
