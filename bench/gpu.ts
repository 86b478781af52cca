/**
 * One short run on a machine with a real GPU: 1024² FM-Boost timings with the real topologies and random weights.
 *   LCM SD-1.5 UNet, 4 steps at a 64² latent (batch 1, guidance embedding, no CFG)
 *   CFM EfficientUNet (released config) at a 128² latent: Euler with 4 and with 40 velocity evaluations (NFE)
 *   SD VAE decode of the 128² latent to a 1024² image (tiling auto)
 * Each stage is run once to compile its pipelines, then timed (median of --runs, GPU sync included).
 * On a CPU adapter (SwiftShader) it refuses, unless --tiny: the same code path at 1/8 of every size (a smoke test).
 * Writes bench-results/gpu.md.
 *
 *   npm run bench:gpu [-- --tiny] [-- --runs 3] [-- --dtype f16|f32] [-- --force]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { CfmUNet, CfmUNetConfig } from '../src/models/cfm-unet.js';
import { UNet2DConditionConfig, UNet2DConditionModel } from '../src/models/unet-2d-condition/index.js';
import { AutoencoderKLConfig } from '../src/models/vae/config.js';
import { AutoencoderKL } from '../src/models/vae/model.js';
import { nodeGPU } from '../src/node/gpu.js';
import { guidanceEmbedding } from '../src/ops/embedding.js';
import { axpby } from '../src/ops/elementwise.js';
import { fmtBytes } from '../src/runtime/errors.js';
import { createRuntime } from '../src/runtime/gpu.js';
import type { Runtime } from '../src/runtime/runtime.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { randomSource, recordShapes } from './e2e/random-weights.js';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const tiny = argv.includes('--tiny');
const runs = Number(opt('runs') ?? (tiny ? 1 : 3));
const dtype = (opt('dtype') ?? 'f16') as 'f16' | 'f32';
/** Latent edge of the SD stage (64 → 512² image), ×2 for the CFM stage and the 1024² decode. */
const SD_LATENT = tiny ? 8 : 64;

interface Stage {
  name: string;
  seconds: number;
  dispatches: number;
  peak: number;
}
const stages: Stage[] = [];

async function timed(rt: Runtime, name: string, call: () => Promise<Tensor> | Tensor, n = runs): Promise<void> {
  (await call()).dispose(); // compiles the pipelines
  await rt.sync();
  rt.allocator.resetPeak();
  const t: number[] = [];
  let dispatches = 0;
  for (let i = 0; i < n; i++) {
    const d0 = rt.dispatches;
    const t0 = performance.now();
    const y = await call();
    await rt.sync();
    t.push((performance.now() - t0) / 1000);
    dispatches = rt.dispatches - d0;
    y.dispose();
  }
  t.sort((a, b) => a - b);
  const s: Stage = { name, seconds: t[t.length >> 1]!, dispatches, peak: rt.memory().peakBytes };
  stages.push(s);
  console.log(`${name}: ${s.seconds.toFixed(3)} s (${n} run${n > 1 ? 's' : ''}: ${t.map((x) => x.toFixed(3)).join(', ')}); ${dispatches} dispatches; peak GPU ${fmtBytes(s.peak)}`);
}

const ramp = (rt: Runtime, shape: number[], f = 1) => rt.upload(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * f), shape);

async function main(): Promise<void> {
  const gpu = await nodeGPU();
  const rt = await createRuntime({ gpu, log: () => {}, memoryBudgetBytes: 24 * 2 ** 30 });
  const cpu = rt.adapterInfo.isFallback || /swiftshader|llvmpipe|lavapipe/i.test(`${rt.adapterInfo.architecture} ${rt.adapterInfo.description} ${rt.adapterInfo.device}`);
  console.log(`adapter: ${rt.adapterName}${cpu ? ' (a CPU implementation)' : ''}`);
  if (cpu && !tiny && !argv.includes('--force')) {
    console.log(
      'bench:gpu measures 1024² generation on a real GPU; on this CPU adapter it would take hours. ' +
        'Run `npm run bench:gpu -- --tiny` for a smoke test of the same code path at 1/8 size, or `npm run bench:e2e` for CPU-sized timings.',
    );
    rt.destroy();
    return;
  }
  const H = SD_LATENT;

  // LCM: 4 UNet calls at a 64² latent with the guidance embedding (w = 8 → g − 1 = 7); the scheduler update is an axpby.
  const lcmCfg = UNet2DConditionConfig.lcmSd15;
  const unet = await UNet2DConditionModel.load(rt, randomSource(recordShapes((w) => new UNet2DConditionModel(w, lcmCfg)), 'random lcm unet'), lcmCfg, { dtype });
  const ctx = ramp(rt, [1, 77, lcmCfg.crossAttentionDim], 0.5);
  const wEmb = rt.upload([7], [1]);
  const cond = guidanceEmbedding(rt, wEmb, lcmCfg.timeCondProjDim!);
  const x0 = ramp(rt, [1, 4, H, H]);
  await timed(rt, `LCM SD-1.5 UNet, 4 steps, latent ${H}² (${8 * H}² image)`, () =>
    rt.scope(() => {
      let x = x0;
      for (const t of [999, 759, 499, 259]) {
        const eps = unet.forward(rt, x, t, ctx, { timestepCond: cond });
        x = axpby(rt, 1, x, -0.1, eps);
      }
      return x;
    }),
  );
  unet.dispose();
  for (const t of [ctx, wEmb, cond, x0]) t.dispose();

  // CFM: Euler over [0, 1] with n velocity evaluations at a 128² latent, context = the upsampled SD latent (noised).
  const cfmCfg = CfmUNetConfig.released;
  const cfm = await CfmUNet.load(rt, { weights: randomSource(recordShapes((w) => new CfmUNet(w, cfmCfg)), 'random cfm'), config: cfmCfg, dtype });
  const H2 = 2 * H;
  const xt0 = ramp(rt, [1, cfm.latentChannels, H2, H2]);
  const context = ramp(rt, [1, cfm.contextChannels, H2, H2]);
  const euler = (nfe: number) => () =>
    rt.scope(() => {
      let x = xt0;
      for (let i = 0; i < nfe; i++) x = axpby(rt, 1, x, 1 / nfe, cfm.forward(rt, x, context, i / nfe));
      return x;
    });
  await timed(rt, `CFM Euler, 4 NFE, latent ${H2}² (${8 * H2}² image)`, euler(4));
  await timed(rt, `CFM Euler, 40 NFE, latent ${H2}²`, euler(40), 1);
  cfm.dispose();
  for (const t of [xt0, context]) t.dispose();

  // Tiled decode of the 128² latent to a 1024² image.
  const vaeCfg = AutoencoderKLConfig.sd15;
  const vae = await AutoencoderKL.load(rt, { config: vaeCfg, weights: randomSource(recordShapes((w) => new AutoencoderKL(vaeCfg, w, 'decoder')), 'random vae decoder'), parts: 'decoder', dtype });
  const z = ramp(rt, [1, 4, H2, H2]);
  await timed(rt, `VAE decode (tiling auto), latent ${H2}² → ${8 * H2}² image`, () => vae.decode(z));
  vae.dispose();
  z.dispose();

  const s = (prefix: string) => stages.find((x) => x.name.startsWith(prefix))!.seconds;
  const total4 = s('LCM') + s('CFM Euler, 4') + s('VAE');
  const total40 = s('LCM') + s('CFM Euler, 40') + s('VAE');
  const md = [
    `### ${tiny ? 'Smoke run at 1/8 size' : `${8 * H2}² generation`} on ${rt.adapterName}`,
    '',
    `Random weights (${dtype}), real topologies; median of ${runs} run(s) after one compiling run; each ends in a GPU sync.`,
    '',
    '| stage | s | dispatches | peak GPU |',
    '|---|---:|---:|---:|',
    ...stages.map((x) => `| ${x.name} | ${x.seconds.toFixed(3)} | ${x.dispatches} | ${fmtBytes(x.peak)} |`),
    `| **total: LCM 4 + CFM 4 NFE + decode** | **${total4.toFixed(3)}** | | |`,
    `| **total: LCM 4 + CFM 40 NFE + decode** | **${total40.toFixed(3)}** | | |`,
  ].join('\n');
  console.log('\n' + md);
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(`bench-results/gpu${tiny ? '-tiny' : ''}.md`, `<!-- generated by \`npm run bench:gpu${tiny ? ' -- --tiny' : ''}\`; do not edit -->\n\n${md}\n`);
  rt.destroy();
  void gpu;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
