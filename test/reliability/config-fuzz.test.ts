/**
 * Config fuzzing: mutated config.json / model_index.json / scheduler / CFM config texts go through the real
 * parsing of each model (parseJson → AutoencoderKL, UNet2DConditionConfig, CLIPTextConfig, CfmUNet config,
 * scheduler config) and through the hub-layout loader. The only outcomes allowed: a parsed config, or a
 * ConfigError / ArgumentError; each case within a time bound and without unbounded allocation.
 * The committed corpus under test/fixtures/malformed/config/ replays inputs that once broke a parser.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseJson } from '../../src/io/config.js';
import { CLIPTextConfig } from '../../src/models/clip-text-encoder.js';
import { CLIPTokenizer } from '../../src/models/clip-tokenizer.js';
import { parseCfmUNetConfig } from '../../src/models/cfm-unet.js';
import { UNet2DConditionConfig } from '../../src/models/unet-2d-condition/config.js';
import { parseAutoencoderKLConfig } from '../../src/models/vae/config.js';
import { bytesModelFiles, loadModelSet } from '../../src/pipelines/model-source.js';
import { schedulerConfigFromDiffusers } from '../../src/pipelines/schedulers/index.js';
import { validateConfig } from '../../src/pipelines/schedulers/noise-schedule.js';
import { ArgumentError, ConfigError, OutOfMemoryError, WeightError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { freshRuntime } from '../helpers/device.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { rng } from '../helpers/random.js';

const TINY = new URL('../../weights/tiny/', import.meta.url);
const CORPUS = FIXTURES + 'malformed/config/';
const text = (rel: string, base: URL | string = TINY): string => readFileSync(typeof base === 'string' ? base + rel : new URL(rel, base), 'utf8');

/** Per case: a parser on a loaded machine takes well under a millisecond; this bound catches blow-ups only. */
const PER_CASE_MS = 250;
/** Heap growth over the whole run: anything unbounded (a huge array from a count field) shows up here. */
const HEAP_BOUND = 256 * 2 ** 20;

type Parser = (file: string, input: string | Uint8Array) => unknown;

/** Each file through the code the loader runs on it (scheduler configs are validated where schedules are made: both). */
const PARSERS: Record<string, Parser> = {
  vae: (f, s) => parseAutoencoderKLConfig(parseJson(f, s), f),
  unet: (f, s) => UNet2DConditionConfig.fromDiffusers(parseJson(f, s), f),
  clip: (f, s) => CLIPTextConfig.fromTransformers(parseJson(f, s), f),
  cfm: (f, s) => parseCfmUNetConfig(parseJson(f, s), f),
  scheduler: (f, s) => {
    const c = schedulerConfigFromDiffusers(parseJson(f, s) as Record<string, unknown>, f);
    validateConfig(c);
    return c;
  },
};

const BASES: [keyof typeof PARSERS, string, string][] = [
  ['vae', 'vae/config.json', text('vae/config.json')],
  ['unet', 'unet/config.json', text('unet/config.json')],
  ['clip', 'text_encoder/config.json', text('text_encoder/config.json')],
  ['cfm', 'cfm/config.json', text('cfm/config.json')],
  ['scheduler', 'scheduler/scheduler_config.json', text('scheduler/scheduler_config.json')],
  ['vae', 'fixtures/vae.config.json', text('vae.config.json', FIXTURES)],
  ['unet', 'fixtures/unet_lcm.config.json', text('unet_lcm.config.json', FIXTURES)],
  ['clip', 'fixtures/clip.config.json', text('clip.config.json', FIXTURES)],
  ['cfm', 'fixtures/cfm.config.json', text('cfm.config.json', FIXTURES)],
];

const TOKENS = ['{', '}', '[', ']', ',', ':', '"', 'null', '-1', '0', '1e309', '-1e309', '1e9', '9007199254740993', '0.5', 'true', '"x"', '"\\u0000"', '"\\ud800"', '[[[[[[[[', '\u00ff', '\ufeff', ' '];

/** Values a field is set to by the structured mutations. */
function interesting(r: () => number): unknown {
  const vals: (() => unknown)[] = [
    () => null, () => -1, () => 0, () => 0.5, () => 1, () => 3, () => 1e9, () => 2 ** 31, () => 2 ** 53, () => -(2 ** 53), () => 1e308, () => -0,
    () => '', () => 'x', () => 'NaN', () => 'Infinity', () => '__proto__', () => true, () => false, () => [], () => ({}), () => [0], () => [-1],
    () => [1e9, 1e9], () => [2 ** 40], () => Array(1 + Math.floor(r() * 5000)).fill(1), () => Array(64).fill(32),
    () => ['x'], () => [null], () => [[1]], () => ({ params: {} }), () => ({ fm_cfg: { params: { net_cfg: {} } } }),
    () => { let v: unknown = 1; for (let i = 0; i < 2000; i++) v = [v]; return v; },
    () => 'x'.repeat(1 + Math.floor(r() * 100_000)),
  ];
  return vals[Math.floor(r() * vals.length)]!();
}

/** Every (container, key) pair of a JSON value, depth first. */
function slots(v: unknown, out: [Record<string, unknown> | unknown[], string | number][] = [], depth = 0): typeof out {
  if (depth > 8 || v === null || typeof v !== 'object') return out;
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), slots(x, out, depth + 1)));
  else for (const [k, x] of Object.entries(v)) out.push([v as Record<string, unknown>, k]), slots(x, out, depth + 1);
  return out;
}

function mutate(base: string, r: () => number): string | Uint8Array {
  const int = (n: number) => Math.floor(r() * n);
  const kind = int(8);
  if (kind < 4) {
    // Structured: set, delete, rename or duplicate a field, then serialise (sometimes truncated).
    const obj = JSON.parse(base) as unknown;
    const s = slots(obj);
    const n = 1 + int(3);
    for (let i = 0; i < n && s.length; i++) {
      const [c, k] = s[int(s.length)]!;
      const op = int(6);
      if (op <= 2) (c as Record<string, unknown>)[k as string] = interesting(r);
      else if (op === 3 && !Array.isArray(c)) delete c[k as string];
      else if (op === 4 && !Array.isArray(c)) {
        c[(k as string) + (r() < 0.5 ? '_' : '').toUpperCase()] = c[k as string];
        delete c[k as string];
      } else if (Array.isArray(c)) c.splice(int(c.length + 1), 0, interesting(r));
    }
    const out = JSON.stringify(obj);
    return r() < 0.1 ? out.slice(0, int(out.length)) : out;
  }
  if (kind === 4) {
    // Byte flips (may make invalid UTF-8).
    const b = new TextEncoder().encode(base);
    for (let n = 1 + int(4); n > 0; n--) b[int(b.length)]! ^= 1 << int(8);
    return b;
  }
  if (kind === 5) {
    const at = int(base.length);
    return base.slice(0, at) + TOKENS[int(TOKENS.length)]! + base.slice(at + (r() < 0.5 ? int(8) : 0));
  }
  if (kind === 6) {
    const a = int(base.length);
    return r() < 0.5 ? base.slice(0, a) : base.slice(0, a) + base.slice(a + 1 + int(40));
  }
  const a = int(base.length);
  const len = 1 + int(60);
  return base.slice(0, a) + base.slice(a, a + len).repeat(1 + int(4)) + base.slice(a);
}

type Outcome = 'parsed' | 'refused';

function runCase(parse: Parser, file: string, input: string | Uint8Array, label: string): Outcome {
  const t0 = performance.now();
  let outcome: Outcome = 'parsed';
  try {
    parse(file, input);
  } catch (e) {
    if (!(e instanceof ConfigError || e instanceof ArgumentError)) {
      const preview = (typeof input === 'string' ? input : new TextDecoder().decode(input)).slice(0, 300);
      throw new Error(`${label}: expected ConfigError/ArgumentError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}\ninput: ${preview}`, { cause: e });
    }
    outcome = 'refused';
  }
  const ms = performance.now() - t0;
  if (ms > PER_CASE_MS) throw new Error(`${label}: took ${ms.toFixed(1)} ms`);
  return outcome;
}

export const CONFIG_FUZZ_CASES = 12_150;

describe('config fuzz', () => {
  test('the unmutated bases parse (rejections come from the mutations)', () => {
    for (const [p, f, s] of BASES) expect(() => PARSERS[p]!(f, s), f).not.toThrow();
  });

  test(`${CONFIG_FUZZ_CASES} mutated configs through every model's config parsing: parsed or ConfigError/ArgumentError, bounded time and heap`, () => {
    const r = rng(0xc0f1);
    const per = CONFIG_FUZZ_CASES / BASES.length;
    const heap0 = process.memoryUsage().heapUsed;
    let heapMax = heap0;
    let total = 0;
    for (const [p, f, base] of BASES) {
      const seen = { parsed: 0, refused: 0 };
      for (let i = 0; i < per; i++) {
        seen[runCase(PARSERS[p]!, f, mutate(base, r), `${f} case ${i}`)]++;
        total++;
        if (i % 200 === 0) heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
      }
      // Both outcomes must occur, or the mutations do not reach the validator.
      expect(seen.refused, f).toBeGreaterThan(per / 4);
      expect(seen.parsed, f).toBeGreaterThan(0);
    }
    expect(total).toBe(CONFIG_FUZZ_CASES);
    expect(heapMax - heap0).toBeLessThan(HEAP_BOUND);
  });

  test('the committed malformed corpus is refused with ConfigError/ArgumentError (regressions)', () => {
    const manifest = JSON.parse(readFileSync(CORPUS + 'manifest.json', 'utf8')) as { file: string; parser: keyof typeof PARSERS; why: string }[];
    expect(manifest.length).toBeGreaterThanOrEqual(8);
    const names = readdirSync(CORPUS).filter((n) => n !== 'manifest.json');
    expect(names.sort()).toEqual(manifest.map((m) => m.file).sort());
    for (const m of manifest) {
      const bytes = new Uint8Array(readFileSync(CORPUS + m.file));
      expect(runCase(PARSERS[m.parser]!, m.file, bytes, m.file), `${m.file}: ${m.why}`).toBe('refused');
    }
  });
});

describe('hub-layout loader fuzz', () => {
  // The loader reads and validates every config before uploading a weight. With a zero budget, a folder whose
  // configs pass ends at the first upload (OutOfMemoryError) or a weight/config mismatch (WeightError): no GPU work.
  let rt: Runtime;
  let tokenizer: CLIPTokenizer;
  const files: Record<string, Uint8Array> = {};
  beforeAll(async () => {
    rt = await freshRuntime({ memoryBudgetBytes: 0 });
    const manifest = JSON.parse(text('files.json')) as { files: { path: string }[] };
    for (const { path } of manifest.files) files[path] = new Uint8Array(readFileSync(new URL(path, TINY)));
    // One tokenizer for every case (parsing the BPE vocabulary is the slow part of a load, and not under test).
    tokenizer = await CLIPTokenizer.fromBpeGz(new Uint8Array(readFileSync(new URL('../../weights/tokenizer/bpe_simple_vocab_16e6.txt.gz', import.meta.url))));
  });
  afterAll(() => rt?.destroy());

  test('a scheduler config the schedules cannot use fails the load with ConfigError (not the first generation)', async () => {
    const bad = new TextEncoder().encode(JSON.stringify({ ...JSON.parse(text('scheduler/scheduler_config.json')), num_train_timesteps: 1e12 }));
    await expect(loadModelSet(rt, bytesModelFiles({ ...files, 'scheduler/scheduler_config.json': bad }), { tokenizer })).rejects.toThrow(ConfigError);
  });

  const TARGETS = ['model_index.json', 'vae/config.json', 'unet/config.json', 'text_encoder/config.json', 'scheduler/scheduler_config.json', 'cfm/config.json'];
  const HUB_CASES = 300;

  test(`${HUB_CASES} folders with one mutated config: ConfigError/ArgumentError, or past every config check; nothing allocated`, async () => {
    const r = rng(0x40b);
    const seen = { refused: 0, passed: 0 };
    for (let i = 0; i < HUB_CASES; i++) {
      const target = TARGETS[i % TARGETS.length]!;
      const m = mutate(new TextDecoder().decode(files[target]!), r);
      const folder = bytesModelFiles({ ...files, [target]: typeof m === 'string' ? new TextEncoder().encode(m) : m }, `case${i}`);
      const t0 = performance.now();
      try {
        const set = await loadModelSet(rt, folder, { tokenizer });
        set.dispose();
        throw new Error(`case ${i} (${target}): loaded with a zero budget`);
      } catch (e) {
        if (e instanceof ConfigError || e instanceof ArgumentError) seen.refused++;
        else if (e instanceof OutOfMemoryError || e instanceof WeightError) seen.passed++;
        else throw new Error(`case ${i} (${target}): ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, { cause: e });
      }
      const ms = performance.now() - t0;
      if (ms > 2000) throw new Error(`case ${i} (${target}) took ${ms.toFixed(0)} ms`);
      expect(rt.memory().liveBytes).toBe(0);
    }
    expect(seen.refused).toBeGreaterThan(HUB_CASES / 4);
    expect(seen.passed).toBeGreaterThan(0);
  });
});
