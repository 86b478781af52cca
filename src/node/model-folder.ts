/**
 * Node-only model sources: a folder on disk as ModelFiles, the bundled tiny model and tokenizer, and one
 * resolver for what a command line names (folder, URL, or a single checkpoint file).
 */
import { existsSync, readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ByteSource } from '../io/byte-source.js';
import { CLIPTokenizer } from '../models/clip-tokenizer.js';
import { loadModelSet, urlModelFiles, type CfmStageInput, type LoadModelSetOptions, type ModelFiles, type ModelInput, type ModelSet } from '../pipelines/model-source.js';
import { ArgumentError, IOError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { fileSource } from './fs-source.js';

/** Folders deeper than this are not model folders (and symlink loops stop here). */
const MAX_DEPTH = 4;
/** Bounds the walk of a folder given by mistake (e.g. a home directory). */
const MAX_FILES = 2000;

/** A model folder on disk (diffusers layout). Paths are relative, '/'-separated. */
export async function folderModelFiles(dir: string): Promise<ModelFiles> {
  const root = resolve(dir);
  let st;
  try {
    st = await stat(root);
  } catch {
    throw new IOError(dir, 'no such folder');
  }
  if (!st.isDirectory()) throw new IOError(dir, 'is not a folder');
  const files: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) return;
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p, depth + 1);
      else if (e.isFile()) {
        files.push(relative(root, p).split(sep).join('/'));
        if (files.length > MAX_FILES) throw new IOError(dir, `holds more than ${MAX_FILES} files; is it a model folder?`);
      }
    }
  };
  await walk(root, 0);
  const set = new Set(files);
  return {
    name: root,
    list: () => [...files].sort(),
    async open(path) {
      const p = path.replace(/\\/g, '/').replace(/^\.?\/+/, '');
      if (!set.has(p)) throw new IOError(join(root, p), 'no such file in the model folder');
      return fileSource(join(root, ...p.split('/')));
    },
  };
}

/** The package root (where package.json names fmboost-webgpu), found from this module's location. */
export function packageRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pj = join(d, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'fmboost-webgpu') return d;
      } catch {
        // not ours; keep walking up
      }
    }
    d = dirname(d);
  }
  throw new IOError(fileURLToPath(import.meta.url), 'cannot find the fmboost-webgpu package root (weights/ lives there)');
}

/** weights/tiny: the bundled random-weight model (noise-like images; for offline runs and tests). */
export function bundledModelDir(): string {
  return join(packageRoot(), 'weights', 'tiny');
}

/** The CLIP BPE vocabulary shipped in weights/tokenizer/. */
export async function bundledTokenizer(): Promise<CLIPTokenizer> {
  return CLIPTokenizer.fromBpeGz(readFileSync(join(packageRoot(), 'weights', 'tokenizer', 'bpe_simple_vocab_16e6.txt.gz')));
}

/**
 * What a command line or a config names as a model: undefined → the bundled tiny model; http(s) URL → a
 * folder or (by extension) a checkpoint on a server; a local folder → ModelFiles; a local file → a checkpoint.
 */
export async function resolveModelPath(spec?: string): Promise<ModelInput> {
  if (spec === undefined || spec === '' || spec === 'tiny') return folderModelFiles(bundledModelDir());
  if (typeof spec !== 'string') throw new ArgumentError('resolveModelPath', 'expected a path or URL');
  if (/^https?:\/\//i.test(spec)) return /\.(safetensors|ckpt)(\?|$)/i.test(spec) ? spec : urlModelFiles(spec);
  let st;
  try {
    st = await stat(spec);
  } catch {
    throw new IOError(spec, 'no such file or folder (give a diffusers folder, an SD .safetensors/.ckpt file, or an http(s) URL)');
  }
  return st.isDirectory() ? folderModelFiles(spec) : fileSource(spec);
}

/** A CFM stage file (safetensors or training .ckpt) with an optional config JSON next to it or given. */
export async function cfmStageFromPath(weights: string, o: { config?: string; factor?: 2 | 4; ema?: boolean } = {}): Promise<CfmStageInput> {
  const src: ByteSource | string = /^https?:\/\//i.test(weights) ? weights : await fileSource(weights);
  let config: unknown;
  const cfgPath = o.config ?? (typeof src === 'string' ? undefined : [weights.replace(/\.(safetensors|ckpt)$/i, '.config.json'), join(dirname(weights), 'config.json')].find((p) => p !== weights && existsSync(p)));
  if (cfgPath) config = await fileSource(cfgPath);
  return { weights: src, config, factor: o.factor, ema: o.ema };
}

/** loadModelSet for Node: a path/URL/undefined (tiny) model, with the bundled tokenizer when the model has none. */
export async function loadModelFromPath(rt: Runtime, spec: string | undefined, o: LoadModelSetOptions = {}): Promise<ModelSet> {
  const model = await resolveModelPath(spec);
  // A file source: read only when the model has no tokenizer of its own.
  const tokenizer = o.tokenizer ?? (await fileSource(join(packageRoot(), 'weights', 'tokenizer', 'bpe_simple_vocab_16e6.txt.gz')));
  return loadModelSet(rt, model, { ...o, tokenizer });
}
