/**
 * Time per UNet step (one UNet2DConditionModel forward, GPU work included) at the fixture size and at a real
 * SD-1.5 shape with random weights.
 *
 *   node scripts/build.mjs && node dist/bench/unet-step.js [--latent 32] [--batch 2] [--dtype f16|f32] [--runs 2]
 *     [--no-sd15] [--no-fixture]
 *
 * fixture: test/fixtures/unet.safetensors (blocks 32/64) at 16² batch 1, and at 8² batch 2 (the pipeline's CFG step).
 * sd15: UNet2DConditionConfig.sd15 (859.5 M parameters, random weights generated on read by bench/e2e/random-weights.ts:
 * the loader sees a TensorSource, so no file is needed), latent [batch, 4, latent, latent], context [batch, 77, 768].
 * Each case: one warm-up call (pipeline compilation), then `runs` timed calls, each followed by rt.sync().
 */
import { SafetensorsFile } from '../src/io/safetensors.js';
import { UNet2DConditionConfig, UNet2DConditionModel } from '../src/models/unet-2d-condition/index.js';
import { fileSource } from '../src/node/fs-source.js';
import { nodeGPU } from '../src/node/gpu.js';
import { createRuntime } from '../src/runtime/gpu.js';
import { fmtBytes } from '../src/runtime/errors.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { paramCount, randomSource, recordShapes } from './e2e/random-weights.js';

const args = process.argv.slice(2);
const opt = (name: string, d: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : d;
};
const latent = Number(opt('latent', '32'));
const batch = Number(opt('batch', '2'));
const runs = Number(opt('runs', '2'));
const dtype = opt('dtype', 'f16') as 'f16' | 'f32';

async function timeSteps(rt: Runtime, unet: UNet2DConditionModel, label: string, B: number, hw: number): Promise<void> {
  const C = unet.config.inChannels;
  const D = unet.config.crossAttentionDim;
  const sample = rt.upload(Float32Array.from({ length: B * C * hw * hw }, (_, i) => Math.sin(i)), [B, C, hw, hw]);
  const ctx = rt.upload(Float32Array.from({ length: B * 77 * D }, (_, i) => Math.cos(i) * 0.5), [B, 77, D]);
  let recordMs = 0;
  let made = 0;
  const step = async (): Promise<number> => {
    const b0 = rt.bindGroupStats.created;
    const t0 = performance.now();
    rt.scope(() => unet.forward(rt, sample, 500, ctx)).dispose();
    recordMs = performance.now() - t0;
    made = rt.bindGroupStats.created - b0;
    await rt.sync();
    return performance.now() - t0;
  };
  try {
    const d0 = rt.dispatches;
    const warm = await step();
    const perCall = rt.dispatches - d0;
    console.log(`${label}: first call ${(warm / 1000).toFixed(2)} s (pipeline compilation included), ${perCall} dispatches`);
    rt.allocator.resetPeak();
    const times: number[] = [];
    for (let i = 0; i < runs; i++) times.push(await step());
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    const m = rt.memory();
    console.log(
      `${label}: [${B}, ${C}, ${hw}, ${hw}] → ${(mean / 1000).toFixed(3)} s/step (runs ${times.map((t) => (t / 1000).toFixed(2)).join(', ')}; ` +
        `peak GPU ${fmtBytes(m.peakBytes)}; last step: JS record ${recordMs.toFixed(0)} ms, ${made} bind groups made)`,
    );
  } finally {
    sample.dispose();
    ctx.dispose();
  }
}

async function main(): Promise<void> {
  // dawn.node crashes once the GPU object behind a device is garbage-collected: hold it for the whole run.
  const gpu = await nodeGPU();
  const rt = await createRuntime({ gpu, memoryBudgetBytes: 16 * 2 ** 30 });
  console.log(`adapter: ${rt.adapterName}`);
  if (!args.includes('--no-fixture')) {
    const tiny = await UNet2DConditionModel.load(
      rt,
      await SafetensorsFile.open(await fileSource('test/fixtures/unet.safetensors')),
      UNet2DConditionConfig.fromDiffusers(JSON.parse(await (await import('node:fs/promises')).readFile('test/fixtures/unet.config.json', 'utf8'))),
    );
    await timeSteps(rt, tiny, 'fixture unet (f32)', 1, 16);
    await timeSteps(rt, tiny, 'fixture unet, pipeline CFG step (f32)', 2, 8);
    tiny.dispose();
  }
  if (!args.includes('--no-sd15')) {
    const cfg = UNet2DConditionConfig.sd15;
    const shapes = recordShapes((w) => new UNet2DConditionModel(w, cfg));
    const params = paramCount(shapes);
    const t0 = performance.now();
    const unet = await UNet2DConditionModel.load(rt, randomSource(shapes, 'random sd15 unet'), cfg, { dtype });
    console.log(`sd15 unet: ${shapes.size} tensors, ${(params / 1e6).toFixed(1)} M parameters, ${fmtBytes(unet.bytes)} as ${dtype}, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await timeSteps(rt, unet, `sd15 unet (${dtype} weights)`, batch, latent);
    unet.dispose();
  }
  rt.destroy();
  void gpu;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
