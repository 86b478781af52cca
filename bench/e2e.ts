/**
 * End-to-end timings of the real topologies with random weights, at sizes SwiftShader finishes in minutes:
 *   SD-1.5 UNet step with CFG (batch 2) at a 32² latent; the released CFM EfficientUNet at a 64² latent;
 *   the SD VAE decoding 256² and encoding 256²; and the tiny model set (weights/tiny) end to end when present.
 * Per stage: median wall time per call (GPU sync included), JS time to record the call, dispatches per call,
 * time spent in device.createBindGroup while recording, and peak GPU bytes. Writes bench-results/e2e.md.
 *
 *   npm run bench:e2e [-- --quick] [-- --runs N] [-- --only unet,cfm,vae,tiny] [-- --dtype f16|f32] [-- --no-throttle] [-- --readme]
 *
 * Every network is first run once at a small size so that pipeline compilation is not timed.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { CfmUNet, CfmUNetConfig } from '../src/models/cfm-unet.js';
import { UNet2DConditionConfig, UNet2DConditionModel } from '../src/models/unet-2d-condition/index.js';
import { AutoencoderKLConfig } from '../src/models/vae/config.js';
import { AutoencoderKL } from '../src/models/vae/model.js';
import { nodeGPU } from '../src/node/gpu.js';
import { bundledTokenizer, folderModelFiles } from '../src/node/model-folder.js';
import { boost } from '../src/pipelines/boost.js';
import { loadModelSet } from '../src/pipelines/model-source.js';
import { textToLatent } from '../src/pipelines/text-to-latent.js';
import { fmtBytes } from '../src/runtime/errors.js';
import { createRuntime } from '../src/runtime/gpu.js';
import type { Runtime } from '../src/runtime/runtime.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { paramCount, randomSource, recordShapes } from './e2e/random-weights.js';
import { updateReadmePerformance } from './peers/readme.js';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = argv.includes('--quick');
const runs = Number(opt('runs') ?? (quick ? 1 : 3));
const only = opt('only')?.split(',');
const dtype = (opt('dtype') ?? 'f16') as 'f16' | 'f32';
const throttle = !argv.includes('--no-throttle');
const want = (s: string) => !only || only.includes(s);

if (throttle) {
  // Dawn's busy-spinning setImmediate would take a core from SwiftShader (docs/WEBGPU-ON-CPU.md).
  const timer = (fn: (...a: unknown[]) => void, ...args: unknown[]) => setTimeout(fn, 1, ...args);
  (globalThis as { setImmediate: unknown }).setImmediate = timer;
}

interface Row {
  stage: string;
  detail: string;
  ms: number | null;
  recordMs: number | null;
  bindGroupMs: number | null;
  dispatches: number | null;
  peak: number | null;
  note?: string;
}
const rows: Row[] = [];

/** Counts time spent in device.createBindGroup (the runtime makes one per dispatch). */
function bindGroupMeter(rt: Runtime): { ms: number; n: number; ok: boolean } {
  const meter = { ms: 0, n: 0, ok: false };
  const dev = rt.device as GPUDevice & { createBindGroup: GPUDevice['createBindGroup'] };
  const orig = dev.createBindGroup.bind(dev);
  try {
    Object.defineProperty(dev, 'createBindGroup', {
      configurable: true,
      value: (d: GPUBindGroupDescriptor) => {
        const t0 = performance.now();
        const g = orig(d);
        meter.ms += performance.now() - t0;
        meter.n++;
        return g;
      },
    });
    meter.ok = true;
  } catch {
    // a native object that refuses the wrapper: report n/a
  }
  return meter;
}

/**
 * Times `call` (which records GPU work and returns a tensor, or a promise of one) `runs` times after the caller's
 * warm-up: wall time to a GPU sync, JS time until `call` returned (recording; work is submitted every 512 dispatches,
 * so the GPU already runs meanwhile), createBindGroup time, dispatches and peak bytes.
 */
async function measure(rt: Runtime, meter: { ms: number; n: number; ok: boolean }, stage: string, detail: string, call: () => Tensor | Promise<Tensor>): Promise<void> {
  await rt.sync();
  rt.allocator.resetPeak();
  const wall: number[] = [];
  const rec: number[] = [];
  const bg: number[] = [];
  let dispatches = 0;
  for (let i = 0; i < runs; i++) {
    const d0 = rt.dispatches;
    meter.ms = 0;
    const t0 = performance.now();
    const r = call();
    const t1 = performance.now();
    const y = await r;
    await rt.sync();
    wall.push(performance.now() - t0);
    // An async call (VAE tiling, pipelines) interleaves recording with GPU waits: no separate recording time.
    rec.push(r instanceof Promise ? NaN : t1 - t0);
    bg.push(meter.ms);
    dispatches = rt.dispatches - d0;
    y.dispose();
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  const recMed = med(rec);
  const row: Row = { stage, detail, ms: med(wall), recordMs: Number.isNaN(recMed) ? null : recMed, bindGroupMs: meter.ok ? med(bg) : null, dispatches, peak: rt.memory().peakBytes };
  rows.push(row);
  console.log(
    `${stage} (${detail}): ${(row.ms! / 1000).toFixed(2)} s/call; JS record ${row.recordMs?.toFixed(0) ?? 'n/a (async)'} ms (createBindGroup ${row.bindGroupMs?.toFixed(0) ?? 'n/a'} ms); ` +
      `${dispatches} dispatches; peak GPU ${fmtBytes(row.peak!)}`,
  );
}

function skip(stage: string, detail: string, note: string): void {
  rows.push({ stage, detail, ms: null, recordMs: null, bindGroupMs: null, dispatches: null, peak: null, note });
  console.log(`${stage}: skipped (${note})`);
}

const ramp = (rt: Runtime, shape: number[], f = 1) => rt.upload(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * f), shape);

async function unetStage(rt: Runtime, meter: ReturnType<typeof bindGroupMeter>): Promise<void> {
  const cfg = UNet2DConditionConfig.sd15;
  const shapes = recordShapes((w) => new UNet2DConditionModel(w, cfg));
  const t0 = performance.now();
  const unet = await UNet2DConditionModel.load(rt, randomSource(shapes, 'random sd15 unet'), cfg, { dtype });
  console.log(`sd15 UNet: ${(paramCount(shapes) / 1e6).toFixed(1)} M parameters as ${dtype}, ${fmtBytes(unet.bytes)}, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  try {
    const ctx = ramp(rt, [2, 77, cfg.crossAttentionDim], 0.5);
    const warm = ramp(rt, [2, 4, 8, 8]);
    rt.scope(() => unet.forward(rt, warm, 500, ctx)).dispose();
    const x = ramp(rt, [2, 4, 32, 32]);
    await measure(rt, meter, 'SD-1.5 UNet step, CFG', `batch 2 × 4 × 32², ${dtype} weights`, () => rt.scope(() => unet.forward(rt, x, 500, ctx)));
    for (const t of [ctx, warm, x]) t.dispose();
  } finally {
    unet.dispose();
  }
}

async function cfmStage(rt: Runtime, meter: ReturnType<typeof bindGroupMeter>): Promise<void> {
  const cfg = CfmUNetConfig.released;
  const shapes = recordShapes((w) => new CfmUNet(w, cfg));
  const cfm = await CfmUNet.load(rt, { weights: randomSource(shapes, 'random cfm'), config: cfg, dtype });
  console.log(`CFM EfficientUNet (released config): ${(paramCount(shapes) / 1e6).toFixed(1)} M parameters as ${dtype}`);
  try {
    const C = cfm.latentChannels;
    const Cc = cfm.contextChannels;
    const w8 = [ramp(rt, [1, C, 8, 8]), ramp(rt, [1, Cc, 8, 8])] as const;
    rt.scope(() => cfm.forward(rt, w8[0], w8[1], 0.5)).dispose();
    const x = ramp(rt, [1, C, 64, 64]);
    const c = ramp(rt, [1, Cc, 64, 64]);
    await measure(rt, meter, 'CFM call (one NFE)', `1 × ${C} × 64², released config, ${dtype} weights`, () => rt.scope(() => cfm.forward(rt, x, c, 0.5)));
    for (const t of [...w8, x, c]) t.dispose();
  } finally {
    cfm.dispose();
  }
}

async function vaeStage(rt: Runtime, meter: ReturnType<typeof bindGroupMeter>): Promise<void> {
  const cfg = AutoencoderKLConfig.sd15;
  const shapes = recordShapes((w) => new AutoencoderKL(cfg, w, 'all'));
  const vae = await AutoencoderKL.load(rt, { config: cfg, weights: randomSource(shapes, 'random sd vae'), dtype });
  console.log(`SD VAE: ${(paramCount(shapes) / 1e6).toFixed(1)} M parameters as ${dtype}`);
  try {
    const z8 = ramp(rt, [1, 4, 8, 8]);
    (await vae.decode(z8)).dispose();
    const i64 = ramp(rt, [1, 3, 64, 64]);
    (await vae.encode(i64)).mean.dispose();
    const z = ramp(rt, [1, 4, 32, 32]);
    await measure(rt, meter, 'VAE decode', `latent 32² → 256² image, tiling auto, ${dtype} weights`, () => vae.decode(z));
    const img = ramp(rt, [1, 3, 256, 256]);
    await measure(rt, meter, 'VAE encode', `256² image → latent 32², tiling auto, ${dtype} weights`, async () => {
      const { mean, logvar } = await vae.encode(img);
      logvar.dispose();
      return mean;
    });
    for (const t of [z8, i64, z, img]) t.dispose();
  } finally {
    vae.dispose();
  }
}

async function tinyStage(rt: Runtime, meter: ReturnType<typeof bindGroupMeter>): Promise<void> {
  const dir = 'weights/tiny';
  if (!existsSync(`${dir}/model_index.json`)) return skip('tiny pipeline', dir, `${dir} does not exist yet (npm run make-tiny)`);
  let set;
  try {
    set = await loadModelSet(rt, await folderModelFiles(dir), { tokenizer: await bundledTokenizer() });
  } catch (e) {
    return skip('tiny pipeline', dir, `could not load: ${(e as Error).message.split('\n')[0]}`);
  }
  try {
    const { textEncoder, unet, tokenizer, vae, cfmStages } = set;
    if (!textEncoder || !unet) return skip('tiny pipeline', dir, 'no text encoder / UNet in the set');
    const stage = cfmStages[0];
    // numSteps counts ODE grid points: Euler makes numSteps − 1 velocity evaluations.
    const run = async (steps: number, gridPoints: number): Promise<Tensor> => {
      const latent = await textToLatent({ tokenizer, textEncoder, unet }, { prompt: 'a photo of a cat', steps, scheduler: 'ddim', seed: 1, height: 64, width: 64 });
      if (!stage) return latent;
      const up = await boost({ vae, cfm: stage.cfm }, latent, { factor: stage.factor, numSteps: gridPoints, seed: 2 });
      latent.dispose();
      return up;
    };
    (await run(1, 2)).dispose();
    const detail = `64² image: DDIM 4 steps with CFG${stage ? ` → CFM ×${stage.factor} (Euler, 4 NFE)` : ''}, latent out`;
    await measure(rt, meter, 'tiny pipeline end to end', detail, () => run(4, 5));
  } finally {
    set.dispose();
  }
}

async function main(): Promise<void> {
  const gpu = await nodeGPU();
  const rt = await createRuntime({ gpu, log: () => {}, memoryBudgetBytes: 24 * 2 ** 30 });
  const meter = bindGroupMeter(rt);
  console.log(`adapter: ${rt.adapterName}; ${runs} timed run(s) per stage after a small-size warm-up; setImmediate ${throttle ? 'throttled (1 ms timer)' : 'stock'}`);
  const stages = { unet: unetStage, cfm: cfmStage, vae: vaeStage, tiny: tinyStage };
  for (const [name, stage] of Object.entries(stages)) {
    if (!want(name)) continue;
    try {
      await stage(rt, meter);
    } catch (e) {
      skip(name, '', `failed: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  const lines = [
    `### End to end (Node, ${rt.adapterName})`,
    '',
    `Random weights, real topologies; median of ${runs} call(s) after a warm-up at a small size (pipelines compiled). ` +
      '"JS record" is the time until the call returned, i.e. recording dispatches (the runtime submits every 512 dispatches, so ' +
      'the GPU works meanwhile); "bind groups" is the part of it spent in device.createBindGroup.',
    '',
    '| stage | what | s / call | JS record ms | bind groups ms | dispatches | µs JS / dispatch | peak GPU |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) =>
      r.ms === null
        ? `| ${r.stage} | ${r.detail} | skipped: ${r.note} | | | | | |`
        : `| ${r.stage} | ${r.detail} | ${(r.ms / 1000).toFixed(2)} | ${r.recordMs?.toFixed(0) ?? 'async'} | ${r.bindGroupMs?.toFixed(0) ?? 'n/a'} | ${r.dispatches} | ` +
          `${r.recordMs === null ? '—' : ((1000 * r.recordMs) / Math.max(1, r.dispatches!)).toFixed(0)} | ${fmtBytes(r.peak!)} |`,
    ),
  ];
  const md = lines.join('\n') + '\n';
  console.log('\n' + md);
  mkdirSync('bench-results', { recursive: true });
  writeFileSync('bench-results/e2e.md', `<!-- generated by \`npm run bench:e2e${quick ? ' -- --quick' : ''}\` on ${new Date().toISOString().slice(0, 10)}; do not edit -->\n\n` + md);
  if (argv.includes('--readme')) console.log(updateReadmePerformance() ? 'updated README.md ## Performance' : 'README.md has no ## Performance section');
  rt.destroy();
  void gpu;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
