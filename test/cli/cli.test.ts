/**
 * The `fmboost` command line, run as a child process on the bundled tiny model: generate at 512² and 1024²,
 * upscale, an SD single-file --model with --model-config, convert, info, and the exit codes of bad arguments (2)
 * and failed runs (1, message without a stack).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { PNG } from 'pngjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { bytesSource } from '../../src/io/byte-source.js';
import { loadFixture } from '../helpers/fixtures.js';

const ROOT = new URL('../../', import.meta.url).pathname;
// Inside the repository, so the CLI finds the package root (weights/) from its own location.
const OUT = join(ROOT, 'test-output', 'cli');
const CLI = join(OUT, 'cli.js');
const SLOW = 1_800_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function fmboost(...args: string[]): Promise<Run> {
  return new Promise((ok) => {
    execFile(process.execPath, [CLI, ...args], { cwd: OUT, env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' }, maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      ok({ code, stdout, stderr });
    });
  });
}

function pngSize(path: string): [number, number] {
  const png = PNG.sync.read(readFileSync(path));
  return [png.width, png.height];
}

beforeAll(async () => {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  // The CLI exactly as scripts/build.mjs bundles it, built fresh so the test never runs a stale dist/.
  await build({
    entryPoints: [join(ROOT, 'src/cli/main.ts')],
    outfile: CLI,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'es2022',
    loader: { '.wgsl': 'text' },
    external: ['webgpu', 'pngjs', 'commander', 'cli-progress'],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'warning',
  });
});

describe('fmboost generate', () => {
  it('writes a 512² PNG and reports the seed', { timeout: SLOW }, async () => {
    const r = await fmboost('generate', 'a photo of a cat', '--size', '512', '--steps', '2', '--seed', '11', '-o', 'cat512.png');
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote cat512\.png \(512×512, seed 11\)/);
    expect(pngSize(join(OUT, 'cat512.png'))).toEqual([512, 512]);
    // Not a TTY here: plain progress lines per stage.
    expect(r.stderr).toMatch(/^denoise 2\/2$/m);
  });

  it('boosts to 1024² with the CFM stage and writes the 512² picture too', { timeout: SLOW }, async () => {
    const r = await fmboost('generate', 'a photo of a cat', '--size', '1024', '--steps', '2', '--seed', '3', '-o', 'cat1024.png', '--lowres', 'cat-low.png');
    expect(r.code, r.stderr).toBe(0);
    expect(pngSize(join(OUT, 'cat1024.png'))).toEqual([1024, 1024]);
    expect(pngSize(join(OUT, 'cat-low.png'))).toEqual([512, 512]);
    expect(r.stderr).toMatch(/^refine \d+\/\d+$/m);
  });
});

describe('fmboost upscale', () => {
  it('doubles a picture, cropping its edges to multiples of 8', { timeout: SLOW }, async () => {
    const png = new PNG({ width: 70, height: 48 });
    for (let i = 0; i < png.data.length; i++) png.data[i] = (i * 29) & 255;
    writeFileSync(join(OUT, 'small.png'), PNG.sync.write(png));
    const r = await fmboost('upscale', 'small.png', '--factor', '2', '--cfm-steps', '2', '--seed', '1');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cropped 70×48 to 64×48/);
    expect(pngSize(join(OUT, 'small.x2.png'))).toEqual([128, 96]);
  });
});

describe('fmboost with an SD single-file checkpoint (--model file, --model-config folder)', () => {
  const FIX = join(ROOT, 'test/fixtures');
  /** The fixture models under SD single-file names (unet_ldm/vae_ldm carry their prefixes already). */
  const writeSingleFile = (path: string): void => {
    const parts: [string, string][] = [['unet_ldm.safetensors', ''], ['vae_ldm.safetensors', ''], ['clip.safetensors', 'cond_stage_model.transformer.']];
    const entries = parts.flatMap(([file, prefix]) => [...loadFixture(file)].map(([k, t]) => ({ name: prefix + k, tensor: { dtype: 'f32' as const, shape: t.shape, data: t.data as Float32Array } })));
    writeFileSync(path, writeSafetensors(entries));
  };
  /** A diffusers-layout folder holding only the fixture VAE's config (all the upscaler reads). */
  const writeConfigFolder = (dir: string): void => {
    for (const [sub, file] of [['vae', 'vae.config.json']]) {
      mkdirSync(join(dir, sub!), { recursive: true });
      writeFileSync(join(dir, sub!, 'config.json'), readFileSync(join(FIX, file!)));
    }
  };

  it('refuses a single file that is not SD-1.5-sized, and --model-config without a single file', async () => {
    writeSingleFile(join(OUT, 'sd-tiny.safetensors'));
    const png = new PNG({ width: 16, height: 16 });
    png.data.fill(128);
    writeFileSync(join(OUT, 'gray16.png'), PNG.sync.write(png));
    // upscale loads only the VAE, so only the VAE preset is held against the file.
    const a = await fmboost('upscale', 'gray16.png', '--model', 'sd-tiny.safetensors', '--cfm', join(FIX, 'cfm.safetensors'), '--cfm-config', join(FIX, 'cfm.config.json'));
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/first_stage_model\.decoder\.conv_in\.weight is \[32, 4, 3, 3\], the SD-1\.5 vae preset expects \[512, 4, 3, 3\]/);
    expect(a.stderr).not.toMatch(/\n\s+at /);
    const b = await fmboost('generate', 'x', '--model', 'sd-tiny.safetensors', '--size', '512');
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^fmboost: .*input_blocks\.0\.0\.weight is \[32, 4, 3, 3\], the SD-1\.5 unet preset expects \[320, 4, 3, 3\].*singleFileConfig/m);
    const c = await fmboost('generate', 'x', '--model-config', FIX, '--size', '512');
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--model-config applies to an SD single-file checkpoint/);
    const d = await fmboost('generate', 'x', '--model', 'sd-tiny.safetensors', '--model-config', join(FIX, 'vae.config.json'));
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(/--model-config takes a diffusers folder/);
  });

  it('upscales with the VAE of a single file described by --model-config', { timeout: SLOW }, async () => {
    writeSingleFile(join(OUT, 'sd-tiny.safetensors'));
    writeConfigFolder(join(OUT, 'sd-tiny-configs'));
    const png = new PNG({ width: 16, height: 16 });
    for (let i = 0; i < png.data.length; i++) png.data[i] = (i * 13) & 255;
    writeFileSync(join(OUT, 'tiny16.png'), PNG.sync.write(png));
    const r = await fmboost(
      'upscale', 'tiny16.png', '--model', 'sd-tiny.safetensors', '--model-config', 'sd-tiny-configs',
      '--cfm', join(FIX, 'cfm.safetensors'), '--cfm-config', join(FIX, 'cfm.config.json'), '--cfm-steps', '2', '--seed', '1', '-o', 'tiny32.png',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote tiny32\.png \(32×32, seed 1\)/);
    expect(pngSize(join(OUT, 'tiny32.png'))).toEqual([32, 32]);
  });
});

describe('fmboost convert', () => {
  const ckpt = join(ROOT, 'test/fixtures/cfm_trainer.ckpt');
  const keysOf = async (file: string) => {
    const st = await SafetensorsFile.open(bytesSource(readFileSync(file), file));
    return { keys: st.keys(), st };
  };

  it('writes the EMA weights by default, online with --online, float16 with --f16', async () => {
    const a = await fmboost('convert', ckpt, '-o', join(OUT, 'ema.safetensors'));
    expect(a.code, a.stderr).toBe(0);
    const ema = await keysOf(join(OUT, 'ema.safetensors'));
    expect(ema.keys).toContain('input_blocks.0.0.weight');
    expect(ema.st.metadata.weights).toBe('ema:ema_model.ema_model.net.');
    const b = await fmboost('convert', ckpt, '--online', '--f16', '-o', join(OUT, 'online16.safetensors'));
    expect(b.code, b.stderr).toBe(0);
    const online = await keysOf(join(OUT, 'online16.safetensors'));
    expect(online.st.metadata.weights).toBe('online:model.net.');
    expect(online.st.info('input_blocks.0.0.weight').dtype).toBe('F16');
  });

  it('refuses conflicting selections (exit 2) and a file that is not a checkpoint (exit 1)', async () => {
    const a = await fmboost('convert', ckpt, '--ema', '--online');
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/choose one of/);
    const b = await fmboost('convert', join(ROOT, 'weights/tiny/model_index.json'), '-o', join(OUT, 'x.safetensors'));
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^fmboost: /);
    expect(b.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('fmboost info and argument errors', () => {
  it('prints the adapter and limits', { timeout: SLOW }, async () => {
    const r = await fmboost('info', '--json');
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as { adapter: string; limits: { maxStorageBufferBindingSize: number }; bundledModel: string };
    expect(info.adapter.length).toBeGreaterThan(0);
    expect(info.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(info.bundledModel).toMatch(/weights[/\\]tiny$/);
  });

  it('exits 2 on bad arguments and 1 on a failed run, with the message and no stack trace', { timeout: SLOW }, async () => {
    const size = await fmboost('generate', 'x', '--size', '768');
    expect(size.code).toBe(2);
    expect(size.stderr).toMatch(/--size must be one of 512, 1024, 2048/);
    expect((await fmboost('generate', 'x', '--steps', '0')).code).toBe(2);
    expect((await fmboost('generate', 'x', '--cfm-solver', 'heun')).code).toBe(2);
    expect((await fmboost('frobnicate')).code).toBe(2);
    expect((await fmboost('generate')).code).toBe(2);
    const missing = await fmboost('generate', 'x', '--model', 'no/such/folder', '--size', '512');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^fmboost: no\/such\/folder: no such file or folder/m);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    const verbose = await fmboost('generate', 'x', '--model', 'no/such/folder', '--verbose');
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toMatch(/\n\s+at /);
  });
});
