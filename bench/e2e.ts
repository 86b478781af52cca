/**
 * End-to-end timings of the real topologies with random weights, at sizes SwiftShader finishes in minutes:
 *   SD-1.5 UNet step with CFG (batch 2) at a 32² latent; the released CFM EfficientUNet at a 64² latent;
 *   the SD VAE decoding 256² and encoding 256²; and the tiny model set (weights/tiny) end to end when present.
 * Per stage: median wall time per call (GPU sync included), main-thread CPU time per call, JS time to record a
 * synchronous call, dispatches per call, time spent in device.createBindGroup and bind groups made (the runtime
 * caches them), peak GPU bytes, and the load average (the machine is shared). Writes bench-results/e2e.md.
 *
 *   npm run bench:e2e [-- --quick] [-- --runs N] [-- --only unet,cfm,vae,tiny] [-- --dtype f16|f32] [-- --no-throttle] [-- --ab] [-- --readme]
 *
 * --ab also runs the tiny pipeline on a second runtime with the bind-group cache off, calls interleaved, then the
 * tiny UNet's CFG step on both with dispatches recorded but not launched (the recording cost alone).
 * --only keeps the other stages' rows of the previous bench-results/e2e.md (run the long stages one by one).
 *
 * Every network is first run once at a small size so that pipeline compilation is not timed.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance as nodePerformance } from 'node:perf_hooks';
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
  /** Main-thread CPU time during the call (see mainThreadMs). */
  jsMs: number | null;
  bindGroupMs: number | null;
  dispatches: number | null;
  /** Bind groups the runtime made during the call (the rest of the dispatches reused cached ones). */
  bindGroupsMade: number | null;
  peak: number | null;
  /** 1-minute load average when the stage finished (the machine is shared). */
  load: number;
  note?: string;
}
const rows: Row[] = [];

/** Counts time spent in device.createBindGroup (on a bind-group cache miss; with the cache off, once per dispatch). */
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

type Meter = ReturnType<typeof bindGroupMeter>;

/**
 * CPU time of the main (JS) thread in ms, from Linux's /proc schedstat: recording, uploads, Dawn's API calls, but not
 * SwiftShader's worker threads, and not time spent waiting for a core, so it holds under load. Elsewhere the event
 * loop's busy time (wall clock) stands in for it.
 */
const schedstat = `/proc/self/task/${process.pid}/schedstat`;
const hasSchedstat = existsSync(schedstat);
function mainThreadMs(): number {
  if (!hasSchedstat) return nodePerformance.eventLoopUtilization().active;
  return Number(readFileSync(schedstat, 'utf8').split(' ')[0]) / 1e6;
}

/** One thing to time: `call` records GPU work on `rt` and returns a tensor, or a promise of one. */
interface Variant {
  rt: Runtime;
  meter: Meter;
  stage: string;
  detail: string;
  call: () => Tensor | Promise<Tensor>;
}

/**
 * Times each variant `runs` times after the caller's warm-up, interleaved (A B A B …: load drift on the shared
 * machine hits both alike): wall time to a GPU sync, main-thread CPU time, JS time until `call` returned
 * (recording; work is submitted every 512 dispatches, so the GPU already runs meanwhile), createBindGroup time,
 * bind groups made, dispatches and peak bytes.
 */
async function measure(...variants: Variant[]): Promise<void> {
  return measureN(runs, ...variants);
}

async function measureN(runs: number, ...variants: Variant[]): Promise<void> {
  const acc = variants.map(() => ({ wall: [] as number[], rec: [] as number[], js: [] as number[], bg: [] as number[], dispatches: 0, made: 0, compiled: 0 }));
  for (const { rt } of variants) {
    await rt.sync();
    rt.allocator.resetPeak();
  }
  for (let i = 0; i < runs; i++) {
    for (const [v, { rt, meter, call }] of variants.entries()) {
      const a = acc[v]!;
      const d0 = rt.dispatches;
      const b0 = rt.bindGroupStats.created;
      const k0 = rt.kernelCount;
      meter.ms = 0;
      const cpu0 = mainThreadMs();
      const t0 = performance.now();
      const r = call();
      const t1 = performance.now();
      const y = await r;
      await rt.sync();
      a.wall.push(performance.now() - t0);
      a.js.push(mainThreadMs() - cpu0);
      // An async call (VAE tiling, pipelines) interleaves recording with GPU waits: no separate recording time.
      a.rec.push(r instanceof Promise ? NaN : t1 - t0);
      a.bg.push(meter.ms);
      a.dispatches = rt.dispatches - d0;
      a.made = rt.bindGroupStats.created - b0;
      a.compiled += rt.kernelCount - k0;
      y.dispose();
    }
  }
  const med = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1]!;
  for (const [v, { rt, meter, stage, detail }] of variants.entries()) {
    const a = acc[v]!;
    const recMed = med(a.rec);
    // Kernel variants first chosen at the timed size are compiled inside the call (JS time): say so.
    const row: Row = {
      stage,
      detail: a.compiled ? `${detail}; ${a.compiled} pipeline(s) compiled inside the timed call(s)` : detail,
      ms: med(a.wall),
      recordMs: Number.isNaN(recMed) ? null : recMed,
      jsMs: med(a.js),
      bindGroupMs: meter.ok ? med(a.bg) : null,
      dispatches: a.dispatches,
      bindGroupsMade: a.made,
      peak: rt.memory().peakBytes,
      load: loadavg()[0]!,
    };
    rows.push(row);
    console.log(
      `${stage} (${detail}): ${(row.ms! / 1000).toFixed(2)} s/call (runs ${a.wall.map((w) => (w / 1000).toFixed(2)).join(', ')}); ` +
        `JS record ${row.recordMs?.toFixed(0) ?? 'n/a (async)'} ms, main thread ${row.jsMs!.toFixed(0)} ms (runs ${a.js.map((j) => j.toFixed(0)).join(', ')}), ` +
        `createBindGroup ${row.bindGroupMs?.toFixed(0) ?? 'n/a'} ms; ${a.dispatches} dispatches (${a.made} bind groups made); peak GPU ${fmtBytes(row.peak!)}; ` +
        `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    );
  }
}

/** The --only name of a table row's stage. */
function stageKey(stage: string): string {
  if (stage.startsWith('SD-1.5 UNet') || stage === 'unet') return 'unet';
  if (stage.startsWith('CFM') || stage === 'cfm') return 'cfm';
  if (stage.startsWith('VAE') || stage === 'vae') return 'vae';
  return 'tiny';
}

function skip(stage: string, detail: string, note: string): void {
  rows.push({ stage, detail, ms: null, recordMs: null, jsMs: null, bindGroupMs: null, dispatches: null, bindGroupsMade: null, peak: null, load: loadavg()[0]!, note });
  console.log(`${stage}: skipped (${note})`);
}

const ramp = (rt: Runtime, shape: number[], f = 1) => rt.upload(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * f), shape);

async function unetStage(rt: Runtime, meter: Meter): Promise<void> {
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
    await measure({ rt, meter, stage: 'SD-1.5 UNet step, CFG', detail: `batch 2 × 4 × 32², ${dtype} weights`, call: () => rt.scope(() => unet.forward(rt, x, 500, ctx)) });
    for (const t of [ctx, warm, x]) t.dispose();
  } finally {
    unet.dispose();
  }
}

async function cfmStage(rt: Runtime, meter: Meter): Promise<void> {
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
    await measure({ rt, meter, stage: 'CFM call (one NFE)', detail: `1 × ${C} × 64², released config, ${dtype} weights`, call: () => rt.scope(() => cfm.forward(rt, x, c, 0.5)) });
    for (const t of [...w8, x, c]) t.dispose();
  } finally {
    cfm.dispose();
  }
}

async function vaeStage(rt: Runtime, meter: Meter): Promise<void> {
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
    await measure({ rt, meter, stage: 'VAE decode', detail: `latent 32² → 256² image, tiling auto, ${dtype} weights`, call: () => vae.decode(z) });
    const img = ramp(rt, [1, 3, 256, 256]);
    await measure({
      rt,
      meter,
      stage: 'VAE encode',
      detail: `256² image → latent 32², tiling auto, ${dtype} weights`,
      call: async () => {
        const { mean, logvar } = await vae.encode(img);
        logvar.dispose();
        return mean;
      },
    });
    for (const t of [z8, i64, z, img]) t.dispose();
  } finally {
    vae.dispose();
  }
}

/**
 * The tiny model set end to end. With a second runtime (`--ab`: the same device kind with the bind-group cache off),
 * the set is loaded on both and their calls are interleaved, so the cache's effect is measured in one run.
 */
async function tinyStage(rt: Runtime, meter: Meter, uncached?: { rt: Runtime; meter: Meter }): Promise<void> {
  const dir = 'weights/tiny';
  if (!existsSync(`${dir}/model_index.json`)) return skip('tiny pipeline', dir, `${dir} does not exist yet (npm run make-tiny)`);
  const sets: Awaited<ReturnType<typeof loadModelSet>>[] = [];
  try {
    for (const r of uncached ? [rt, uncached.rt] : [rt]) sets.push(await loadModelSet(r, await folderModelFiles(dir), { tokenizer: await bundledTokenizer() }));
  } catch (e) {
    for (const s of sets) s.dispose();
    return skip('tiny pipeline', dir, `could not load: ${(e as Error).message.split('\n')[0]}`);
  }
  try {
    const stage = sets[0]!.cfmStages[0];
    if (!sets[0]!.textEncoder || !sets[0]!.unet) return skip('tiny pipeline', dir, 'no text encoder / UNet in the set');
    // numSteps counts ODE grid points: Euler makes numSteps − 1 velocity evaluations.
    const runner = (set: (typeof sets)[number]) => async (steps: number, gridPoints: number): Promise<Tensor> => {
      const { textEncoder, unet, tokenizer, vae, cfmStages } = set;
      const latent = await textToLatent({ tokenizer, textEncoder: textEncoder!, unet: unet! }, { prompt: 'a photo of a cat', steps, scheduler: 'ddim', seed: 1, height: 64, width: 64 });
      const cfm = cfmStages[0];
      if (!cfm) return latent;
      const up = await boost({ vae, cfm: cfm.cfm }, latent, { factor: cfm.factor, numSteps: gridPoints, seed: 2 });
      latent.dispose();
      return up;
    };
    const pipelines = sets.map(runner);
    for (const run of pipelines) (await run(1, 2)).dispose();
    const detail = `64² image: DDIM 4 steps with CFG${stage ? ` → CFM ×${stage.factor} (Euler, 4 NFE)` : ''}, latent out`;
    const variants: Variant[] = [{ rt, meter, stage: 'tiny pipeline end to end', detail, call: () => pipelines[0]!(4, 5) }];
    if (uncached) variants.push({ ...uncached, stage: 'tiny pipeline end to end', detail: `${detail}; bind-group cache off (one per dispatch)`, call: () => pipelines[1]!(4, 5) });
    await measure(...variants);
    if (uncached) {
      // The recording cost alone, GPU idle: the tiny UNet's CFG step with dispatches recorded but not launched.
      const inputs = sets.map((set, i) => {
        const r = i === 0 ? rt : uncached.rt;
        return { r, unet: set.unet!, x: ramp(r, [2, 4, 8, 8]), ctx: ramp(r, [2, 77, set.unet!.config.crossAttentionDim], 0.5) };
      });
      for (const { r } of inputs) r.executeDispatches = false;
      try {
        const step = (i: number) => () => inputs[i]!.r.scope(() => inputs[i]!.unet.forward(inputs[i]!.r, inputs[i]!.x, 500, inputs[i]!.ctx));
        for (const i of [0, 1]) step(i)().dispose();
        const what = 'batch 2 × 4 × 8² (64² image), dispatches recorded but not launched (executeDispatches off)';
        await measureN(Math.max(runs, 9), { rt, meter, stage: 'tiny UNet step, recording only', detail: what, call: step(0) }, { ...uncached, stage: 'tiny UNet step, recording only', detail: `${what}; bind-group cache off`, call: step(1) });
      } finally {
        for (const { r, x, ctx } of inputs) {
          r.executeDispatches = true;
          x.dispose();
          ctx.dispose();
        }
      }
    }
  } finally {
    for (const s of sets) s.dispose();
  }
}

async function main(): Promise<void> {
  const gpu = await nodeGPU();
  const rt = await createRuntime({ gpu, log: () => {}, memoryBudgetBytes: 24 * 2 ** 30 });
  const meter = bindGroupMeter(rt);
  // --ab: a second runtime with the bind-group cache off, timed against the first in the tiny stage.
  let uncached: { rt: Runtime; meter: Meter } | undefined;
  if (argv.includes('--ab')) {
    const rtOff = await createRuntime({ gpu, log: () => {}, memoryBudgetBytes: 4 * 2 ** 30, maxCachedBindGroups: 0 });
    uncached = { rt: rtOff, meter: bindGroupMeter(rtOff) };
  }
  console.log(`adapter: ${rt.adapterName}; ${runs} timed run(s) per stage after a small-size warm-up; setImmediate ${throttle ? 'throttled (1 ms timer)' : 'stock'}`);
  const stages = { unet: unetStage, cfm: cfmStage, vae: vaeStage, tiny: tinyStage };
  for (const [name, stage] of Object.entries(stages)) {
    if (!want(name)) continue;
    try {
      await (name === 'tiny' ? tinyStage(rt, meter, uncached) : stage(rt, meter));
    } catch (e) {
      skip(name, '', `failed: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  const loadEnd = loadavg();
  const fmtRow = (r: Row): string =>
    r.ms === null
      ? `| ${r.stage} | ${r.detail} | skipped: ${r.note} | | | | | | | | ${r.load.toFixed(1)} |`
      : `| ${r.stage} | ${r.detail} | ${(r.ms / 1000).toFixed(2)} | ${r.jsMs!.toFixed(0)} | ${r.recordMs?.toFixed(0) ?? 'async'} | ${r.bindGroupMs?.toFixed(0) ?? 'n/a'} | ` +
        `${r.bindGroupsMade} | ${r.dispatches} | ${((1000 * r.jsMs!) / Math.max(1, r.dispatches!)).toFixed(0)} | ${fmtBytes(r.peak!)} | ${r.load.toFixed(1)} |`;
  // With --only, the other stages' rows of the previous run are kept (stages take long on SwiftShader: run them one by one).
  const out = 'bench-results/e2e.md';
  const ran = new Set(rows.map((r) => r.stage));
  const stageOrder = ['SD-1.5 UNet step, CFG', 'unet', 'CFM call (one NFE)', 'cfm', 'VAE decode', 'VAE encode', 'vae', 'tiny pipeline end to end', 'tiny UNet step, recording only', 'tiny pipeline', 'tiny'];
  const kept: { stage: string; line: string }[] = [];
  if (only && existsSync(out)) {
    for (const line of readFileSync(out, 'utf8').split('\n')) {
      const m = /^\| ([^|]+?) \| /.exec(line);
      if (!m || m[1] === 'stage' || line.startsWith('|---') || ran.has(m[1]!) || !stageOrder.includes(m[1]!)) continue;
      if (line.split('|').length !== 13) continue; // a row of an older table layout
      if (only.some((o) => stageKey(m[1]!) === o)) continue;
      kept.push({ stage: m[1]!, line });
    }
  }
  const all = [...kept, ...rows.map((r) => ({ stage: r.stage, line: fmtRow(r) }))].sort((x, y) => stageOrder.indexOf(x.stage) - stageOrder.indexOf(y.stage));
  const lines = [
    `### End to end (Node, ${rt.adapterName})`,
    '',
    `Random weights, real topologies; median of ${runs} call(s) after a warm-up at a small size (pipelines compiled); ` +
      `setImmediate ${throttle ? 'throttled to a 1 ms timer' : 'stock'}. ` +
      (hasSchedstat
        ? '"JS ms" is the CPU time of the main thread during the call (Linux schedstat: recording, uploads, reads, Dawn\'s API calls; not SwiftShader\'s threads, not time spent waiting for a core); '
        : '"JS ms" is the main thread\'s busy time during the call (event loop active: recording, uploads, reads; GPU waits excluded); ') +
      '"JS record" is the time until a synchronous call returned, i.e. recording its dispatches (the runtime submits every 512 ' +
      'dispatches, so the GPU works meanwhile; "async" for calls that wait on the GPU inside); "createBindGroup" is the time ' +
      'spent making bind groups and "made" how many were made in the call: the runtime caches them per (kernel layout, buffers), ' +
      'so a repeated call reuses them. The machine is shared (2 cores): "load" is the 1-minute load average when the stage ended; ' +
      'compare rows measured at similar load.',
    '',
    '| stage | what | s / call | JS ms | JS record ms | createBindGroup ms | bind groups made | dispatches | µs JS / dispatch | peak GPU | load |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...all.map((r) => r.line),
  ];
  const md = lines.join('\n') + '\n';
  console.log('\n' + md);
  console.log(`load average at the end: ${loadEnd.map((l) => l.toFixed(2)).join(' ')}`);
  mkdirSync('bench-results', { recursive: true });
  const cmd = `npm run bench:e2e${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  writeFileSync(out, `<!-- generated by \`${cmd}\` on ${new Date().toISOString().slice(0, 10)}${kept.length ? ' (other rows kept from earlier runs)' : ''}; do not edit -->\n\n` + md);
  if (argv.includes('--readme')) console.log(updateReadmePerformance() ? 'updated README.md ## Performance' : 'README.md has no ## Performance section');
  rt.destroy();
  uncached?.rt.destroy();
  void gpu;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
