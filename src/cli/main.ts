/**
 * `fmboost` command line (Node): generate, upscale, convert, info. The default model is the bundled tiny model,
 * so every command runs offline on a fresh checkout. Errors print the library's typed message and exit non-zero
 * (1: the run failed, 2: bad arguments); --verbose adds the stack trace and the runtime's log.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { PNG } from 'pngjs';
import { convertCheckpoint } from '../io/checkpoint.js';
import { fileSource } from '../node/fs-source.js';
import { createNodeRuntime } from '../node/gpu.js';
import { bundledModelDir, cfmStageFromPath, loadModelFromPath, resolveModelPath } from '../node/model-folder.js';
import { FMBoostPipeline, type GenerateStage } from '../pipelines/fmboost-pipeline.js';
import type { LoadProgress, ModelFiles, SingleFileConfig } from '../pipelines/model-source.js';
import { FmBoostError, fmtBytes } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

let verbose = process.argv.includes('--verbose') || process.argv.includes('-v');

// ------------------------------------------------------------------------------------------ argument parsers

function oneOf<T extends string | number>(name: string, allowed: readonly T[], numeric = false) {
  return (v: string): T => {
    const x = (numeric ? Number(v) : v) as T;
    if (!allowed.includes(x)) throw new InvalidArgumentError(`${name} must be one of ${allowed.join(', ')}`);
    return x;
  };
}

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

function num(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`);
    return n;
  };
}

/** A bad combination of arguments found inside a command (commander's own errors are printed by commander). */
class UsageError extends Error {}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

// ------------------------------------------------------------------------------------------ progress

/** One bar per stage on a terminal; plain lines (one per stage and its last step) when piped. */
class Progress {
  private readonly tty = Boolean(process.stderr.isTTY);
  private bar: cliProgress.SingleBar | null = null;
  private stage = '';
  private lastPlain = 0;

  update(stage: string, step: number, total: number, unit = ''): void {
    if (this.tty) {
      if (stage !== this.stage) {
        this.bar?.stop();
        this.bar = new cliProgress.SingleBar(
          { format: `${stage.padEnd(13)} [{bar}] {value}/{total}${unit}`, stream: process.stderr, hideCursor: true, barsize: 30, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(total, step);
        this.stage = stage;
      } else {
        this.bar!.setTotal(total);
        this.bar!.update(step);
      }
      return;
    }
    const t = Date.now();
    // Piped output: every step of short stages, at most one line per second for long ones.
    if (stage !== this.stage || step === total || t - this.lastPlain > 1000) {
      process.stderr.write(`${stage} ${step}/${total}${unit}\n`);
      this.stage = stage;
      this.lastPlain = t;
    }
  }

  done(): void {
    this.bar?.stop();
    this.bar = null;
    this.stage = '';
  }
}

function loadProgress(p: Progress): (l: LoadProgress) => void {
  return (l) => p.update('load', Math.round(l.loadedBytes / 2 ** 10), Math.max(1, Math.round(l.totalBytes / 2 ** 10)), ' KiB');
}

// ------------------------------------------------------------------------------------------ helpers

async function runtime(): Promise<Runtime> {
  return createNodeRuntime({ log: verbose ? (m) => process.stderr.write(m + '\n') : () => {} });
}

/** --model-config: a diffusers folder (local or URL) whose config.json files describe a single-file checkpoint. */
async function singleFileConfig(spec: string | undefined, model: string | undefined): Promise<SingleFileConfig | undefined> {
  if (spec === undefined) return undefined;
  if (model === undefined || !/\.(safetensors|ckpt)(\?|$)/i.test(model)) throw new UsageError('--model-config applies to an SD single-file checkpoint given with --model (.safetensors or .ckpt)');
  if (/^https?:\/\//i.test(spec)) return spec;
  const files = await resolveModelPath(spec);
  if (typeof (files as ModelFiles).list !== 'function') throw new UsageError(`--model-config takes a diffusers folder (unet/, vae/, text_encoder/ with config.json), not a file: ${spec}`);
  return files as ModelFiles;
}

async function loadPipeline(
  rt: Runtime,
  o: { model?: string; modelConfig?: string; components?: 'upscale'; cfm?: string[]; cfmConfig?: string; dtype?: 'auto' | 'f32' | 'f16'; fp16?: boolean; ema?: boolean },
  progress: Progress,
): Promise<FMBoostPipeline> {
  const config = await singleFileConfig(o.modelConfig, o.model);
  const cfm = o.cfm?.length ? await Promise.all(o.cfm.map((f) => cfmStageFromPath(f, { config: o.cfmConfig, ema: o.ema }))) : undefined;
  const models = await loadModelFromPath(rt, o.model, {
    cfm,
    dtype: o.dtype,
    variant: o.fp16 ? 'fp16' : undefined,
    singleFileConfig: config,
    components: o.components,
    onProgress: loadProgress(progress),
  });
  progress.done();
  return FMBoostPipeline.fromModels(rt, models);
}

function writePng(path: string, img: { width: number; height: number; data: Uint8ClampedArray | Uint8Array }): void {
  const png = new PNG({ width: img.width, height: img.height });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  writeFileSync(path, PNG.sync.write(png));
}

function readPng(path: string): { width: number; height: number; data: Uint8ClampedArray } {
  let png: PNG;
  try {
    png = PNG.sync.read(readFileSync(path));
  } catch (e) {
    throw new FmBoostError(`${path}: not a readable PNG (${(e as Error).message})`);
  }
  return { width: png.width, height: png.height, data: new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.byteLength) };
}

/** The largest top-left crop whose edges are multiples of `m` (the VAE needs them). */
function cropTo(img: { width: number; height: number; data: Uint8ClampedArray }, m: number) {
  const W = img.width - (img.width % m);
  const H = img.height - (img.height % m);
  if (W === img.width && H === img.height) return img;
  if (W === 0 || H === 0) throw new FmBoostError(`the picture is ${img.width}×${img.height}; at least ${m}×${m} is needed`);
  const data = new Uint8ClampedArray(W * H * 4);
  for (let y = 0; y < H; y++) data.set(img.data.subarray(y * img.width * 4, (y * img.width + W) * 4), y * W * 4);
  process.stderr.write(`note: cropped ${img.width}×${img.height} to ${W}×${H} (edges must be multiples of ${m})\n`);
  return { width: W, height: H, data };
}

function secs(ms: number | undefined): string {
  return ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`;
}

// ------------------------------------------------------------------------------------------ commands

const program = new Command();
program
  .name('fmboost')
  .description('FM-Boost on WebGPU: SD-1.5 text→image at 512², boosted to 1024²/2048² by a flow-matching model in latent space.\nThe default model is the bundled tiny random-weight model (noise-like pictures; see weights/README.md for real weights).')
  .option('-v, --verbose', 'print stack traces and the runtime log')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

program
  .command('generate')
  .description('text → image (512² by SD, then the CFM stage(s) for 1024² and 2048²)')
  .argument('<prompt>', 'the text prompt')
  .option('-n, --negative <text>', 'negative prompt (with classifier-free guidance)')
  .addOption(new Option('-s, --size <px>', 'output size: 512, 1024 or 2048').argParser(oneOf('--size', [512, 1024, 2048] as const, true)).default(1024))
  .addOption(new Option('--scheduler <name>', 'SD sampler: ddim, euler or lcm (default: lcm for LCM-distilled UNets, else ddim)').argParser(oneOf('--scheduler', ['ddim', 'euler', 'lcm'] as const)))
  .option('--steps <n>', 'SD sampler steps (default 4 with lcm, else 25)', int('--steps', 1, 1000))
  .option('-g, --guidance <scale>', 'classifier-free guidance scale', num('--guidance', 0, 50))
  .addOption(new Option('--cfm-solver <name>', "ODE solver of the CFM stage: euler, midpoint or rk4 (default: the stage's, else euler)").argParser(oneOf('--cfm-solver', ['euler', 'midpoint', 'rk4'] as const)))
  .option('--cfm-steps <n>', "ODE grid points of the CFM stage (default: the stage's, else 40)", int('--cfm-steps', 2, 1000))
  .option('--noising-step <n>', "forward-diffusion step of the CFM source noise (default: the stage's, 400)", int('--noising-step', 0, 999))
  .option('--seed <n>', 'random seed (default: random, printed)', int('--seed', 0, 2 ** 32 - 1))
  .option('-m, --model <folder|url|file>', 'diffusers folder or URL, or an SD single-file .safetensors/.ckpt (default: bundled tiny model)')
  .option('--model-config <folder|url>', 'single-file --model that is not SD-1.5-sized: a diffusers folder whose unet/, vae/, text_encoder/ config.json describe it')
  .option('--cfm <file>', 'CFM stage weights (.safetensors or training .ckpt); repeat for a cascade', collect)
  .option('--cfm-config <file>', 'CFM config JSON (default: <weights>.config.json or config.json beside it)')
  .option('--online', 'training checkpoints: use the online weights instead of the EMA ones')
  .option('--hires-fix [strength]', 'use the SD UNet hires fix (img2img) instead of CFM', num('--hires-fix', 0.01, 1))
  .addOption(new Option('--dtype <t>', 'GPU weight storage').choices(['auto', 'f32', 'f16']).default('auto'))
  .option('--fp16', 'read *.fp16.safetensors variants when the folder has them')
  .option('--lowres <file>', 'also write the 512² SD picture')
  .option('-o, --output <file>', 'output PNG', 'fmboost.png')
  .action(async (prompt: string, o) => {
    const progress = new Progress();
    const rt = await runtime();
    let pipe: FMBoostPipeline | undefined;
    try {
      pipe = await loadPipeline(rt, { model: o.model, modelConfig: o.modelConfig, cfm: o.cfm, cfmConfig: o.cfmConfig, dtype: o.dtype, fp16: o.fp16, ema: o.online ? false : undefined }, progress);
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      const r = await pipe.generate({
        prompt,
        negativePrompt: o.negative,
        size: o.size,
        scheduler: o.scheduler,
        steps: o.steps,
        guidanceScale: o.guidance,
        seed: o.seed,
        cfm: { solver: o.cfmSolver, steps: o.cfmSteps, noisingStep: o.noisingStep },
        hiresFix: o.hiresFix === undefined ? undefined : o.hiresFix === true ? true : { strength: o.hiresFix },
        signal: ac.signal,
        onProgress: (stage: GenerateStage, step, total) => progress.update(stage, step, total),
      });
      progress.done();
      writePng(o.output, r.image);
      if (o.lowres) writePng(o.lowres, r.lowres);
      const t = r.timings;
      process.stdout.write(
        `wrote ${o.output} (${r.image.width}×${r.image.height}, seed ${r.seed}) — denoise ${secs(t.denoise)}, boost ${secs(t.refine)}, decode ${secs((t['decode-lowres'] ?? 0) + (t.decode ?? 0))}\n`,
      );
    } finally {
      progress.done();
      pipe?.dispose();
      rt.destroy();
    }
  });

program
  .command('upscale')
  .description('a picture (PNG) → ×2 or ×4 with the CFM stage(s): VAE encode → CFM → decode')
  .argument('<image>', 'input PNG (edges are cropped to multiples of 8)')
  .addOption(new Option('-f, --factor <n>', 'scale factor: 2 or 4').argParser(oneOf('--factor', [2, 4] as const, true)).default(2))
  .addOption(new Option('--cfm-solver <name>', 'ODE solver: euler, midpoint or rk4').argParser(oneOf('--cfm-solver', ['euler', 'midpoint', 'rk4'] as const)))
  .option('--cfm-steps <n>', "ODE grid points (default: the stage's, else 40)", int('--cfm-steps', 2, 1000))
  .option('--seed <n>', 'random seed', int('--seed', 0, 2 ** 32 - 1))
  .option('-m, --model <folder|url|file>', 'model with the VAE (default: bundled tiny model)')
  .option('--model-config <folder|url>', 'single-file --model whose VAE is not SD-1.5-sized: a diffusers folder with its vae/config.json')
  .option('--cfm <file>', 'CFM stage weights; repeat for ×2 then ×2', collect)
  .option('--cfm-config <file>', 'CFM config JSON')
  .option('-o, --output <file>', 'output PNG (default: <input>.x<factor>.png)')
  .action(async (image: string, o) => {
    const input = cropTo(readPng(image), 8);
    const progress = new Progress();
    const rt = await runtime();
    let pipe: FMBoostPipeline | undefined;
    try {
      pipe = await loadPipeline(rt, { model: o.model, modelConfig: o.modelConfig, components: 'upscale', cfm: o.cfm, cfmConfig: o.cfmConfig }, progress);
      const r = await pipe.upscale(input, { factor: o.factor, seed: o.seed, cfm: { solver: o.cfmSolver, steps: o.cfmSteps }, onProgress: (s, i, n) => progress.update(s, i, n) });
      progress.done();
      const out = o.output ?? join(dirname(image), `${basename(image, extname(image))}.x${o.factor}.png`);
      writePng(out, r.image);
      process.stdout.write(`wrote ${out} (${r.image.width}×${r.image.height}, seed ${r.seed})\n`);
    } finally {
      progress.done();
      pipe?.dispose();
      rt.destroy();
    }
  });

program
  .command('convert')
  .description('PyTorch checkpoint (.ckpt, e.g. an fm-boosting training checkpoint) → .safetensors, without executing pickle code')
  .argument('<checkpoint>', 'input .ckpt')
  .option('--ema', 'the CFM EMA weights (default when present)')
  .option('--online', 'the CFM online (non-EMA) weights')
  .option('--all', 'every state-dict tensor, names unchanged')
  .option('--prefix <p>', 'with --all: only keys under this prefix, written without it')
  .option('--f16', 'store float tensors as float16')
  .option('-o, --output <file>', 'output file (default: <input>.safetensors)')
  .action(async (ckpt: string, o) => {
    const picked = [o.ema, o.online, o.all || o.prefix !== undefined].filter(Boolean).length;
    if (picked > 1) throw new UsageError('choose one of --ema, --online, --all');
    const select = o.ema ? 'ema' : o.online ? 'online' : o.all || o.prefix !== undefined ? 'all' : undefined;
    const out = o.output ?? ckpt.replace(/\.(ckpt|pt|pth)$/i, '') + '.safetensors';
    if (out === ckpt) throw new UsageError('the output would overwrite the input; pass -o');
    const bytes = await convertCheckpoint(await fileSource(ckpt), { select, prefix: o.prefix, dtype: o.f16 ? 'f16' : undefined });
    writeFileSync(out, bytes);
    process.stdout.write(`wrote ${out} (${fmtBytes(bytes.byteLength)})\n`);
  });

program
  .command('info')
  .description('the WebGPU adapter, its limits and features, and the bundled model')
  .option('--json', 'machine-readable output')
  .action(async (o) => {
    const rt = await runtime();
    try {
      const l = rt.limits;
      const info = {
        adapter: rt.adapterName || 'unknown',
        fallback: rt.adapterInfo.isFallback,
        features: { 'shader-f16': rt.hasF16, subgroups: rt.hasSubgroups },
        limits: {
          maxBufferSize: l.maxBufferSize,
          maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
          maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
          maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
          maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
          maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
        },
        memoryBudgetBytes: rt.allocator.budgetBytes,
        bundledModel: existsSync(bundledModelDir()) ? bundledModelDir() : null,
        node: process.version,
      };
      if (o.json) {
        process.stdout.write(JSON.stringify(info, null, 2) + '\n');
        return;
      }
      const lines = [
        `adapter        ${info.adapter}`,
        `shader-f16     ${info.features['shader-f16'] ? 'yes' : 'no'}`,
        `subgroups      ${info.features.subgroups ? 'yes' : 'no'}`,
        `max buffer     ${fmtBytes(l.maxBufferSize)}`,
        `max binding    ${fmtBytes(l.maxStorageBufferBindingSize)}`,
        `workgroup mem  ${fmtBytes(l.maxComputeWorkgroupStorageSize)}`,
        `invocations    ${l.maxComputeInvocationsPerWorkgroup} per workgroup`,
        `bundled model  ${info.bundledModel ?? 'missing (run npm run make-tiny)'}`,
        `node           ${info.node}`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    } finally {
      rt.destroy();
    }
  });

async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version exit 0; commander already printed its message.
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') return 0;
      return EXIT_USAGE;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`fmboost: ${e.message}\n`);
      return EXIT_USAGE;
    }
    verbose ||= Boolean(program.opts().verbose);
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`fmboost: ${e instanceof FmBoostError ? msg : `unexpected error: ${msg}`}\n`);
    if (verbose && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
    return EXIT_FAILED;
  }
}

process.exitCode = await main(process.argv);
