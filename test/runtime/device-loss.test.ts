import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { loadWeights } from '../../src/io/weights.js';
import { linear } from '../../src/ops/matmul.js';
import { DeviceLostError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { freshRuntime } from '../helpers/device.js';
import { randn } from '../helpers/random.js';

describe('device loss', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await freshRuntime();
  });
  afterAll(() => rt.destroy());

  it('rejects the running call with DeviceLostError, then restores the device and re-uploads weights', async () => {
    const w = randn(6 * 5, 1);
    const b = randn(6, 2);
    const file = writeSafetensors([
      { name: 'fc.weight', tensor: { dtype: 'f32', shape: [6, 5], data: w } },
      { name: 'fc.bias', tensor: { dtype: 'f32', shape: [6], data: b } },
    ]);
    const weights = await loadWeights(rt, await SafetensorsFile.open(bytesSource(file, 'fc.safetensors')));
    const xData = randn(3 * 5, 3);
    const run = async () => {
      const x = rt.upload(xData, [3, 5]);
      const y = linear(rt, x, weights.pp('fc').get('weight'), weights.pp('fc').get('bias'));
      const out = await rt.read(y);
      x.dispose();
      y.dispose();
      return out;
    };
    const before = await rt.exclusive('test', run);

    const stale = rt.upload([1, 2, 3], [3]);
    // A loss in the middle of a call: the pending read must reject, not hang.
    const x = rt.upload(xData, [3, 5]);
    const y = linear(rt, x, weights.pp('fc').get('weight'), weights.pp('fc').get('bias'));
    const pending = rt.read(y);
    rt.device.destroy();
    await expect(pending).rejects.toBeInstanceOf(DeviceLostError);
    await new Promise((r) => setTimeout(r, 10));
    expect(rt.isLost).toBe(true);
    expect(() => rt.zeros([4])).toThrow(DeviceLostError);
    // Bind groups of the lost device are dropped with it.
    expect(rt.bindGroupStats.size).toBe(0);

    // The next call through the job queue re-acquires a device; weights come back from their source.
    const after = await rt.exclusive('test', run);
    expect(rt.isLost).toBe(false);
    expect(Array.from(after)).toEqual(Array.from(before));
    // The new device's bind groups are made, then reused by the next identical call.
    const made = rt.bindGroupStats.created;
    expect(Array.from(await rt.exclusive('test', run))).toEqual(Array.from(before));
    expect(rt.bindGroupStats.created).toBe(made);
    // Tensors computed before the loss are gone, with an error that says so.
    expect(() => stale.buffer).toThrow(DeviceLostError);
    stale.dispose();
    x.dispose();
    y.dispose();
    weights.dispose();
  });

  it('a runtime destroyed by its owner cannot be restored', async () => {
    const other = await freshRuntime();
    other.destroy();
    await new Promise((r) => setTimeout(r, 10));
    await expect(other.restore()).rejects.toBeInstanceOf(DeviceLostError);
  });
});
