/**
 * Where a model's files come from, and how a whole FM-Boost model set is loaded from them. Browser-safe (Node
 * folders: src/node/model-folder.ts).
 *
 * - `ModelFiles`: a folder-like view `{ list(), open(path) }` over a base URL (HTTP Range reads, optionally
 *   cached in the browser's Cache API), over dropped `File`s, or over bytes in memory.
 * - `loadModelSet`: the diffusers hub layout (`model_index.json`, `text_encoder/`, `tokenizer/`, `unet/`, `vae/`,
 *   optional `scheduler/` and `cfm/`), or an SD single-file checkpoint (`.safetensors`, `.ckpt`), plus CFM stages.
 */
import { blobSource, bytesSource, urlSource, type ByteSource, type UrlSourceOptions } from '../io/byte-source.js';
import { openCheckpoint } from '../io/checkpoint.js';
import { readJson } from '../io/config.js';
import { SafetensorsFile, type TensorSource } from '../io/safetensors.js';
import { CfmUNet } from '../models/cfm-unet.js';
import { CLIPTextConfig, CLIPTextModel } from '../models/clip-text-encoder.js';
import { CLIPTokenizer } from '../models/clip-tokenizer.js';
import { UNet2DConditionConfig, UNet2DConditionModel } from '../models/unet-2d-condition/index.js';
import { AutoencoderKLConfig, parseAutoencoderKLConfig, type AutoencoderKLConfig as AutoencoderKLConfigJson } from '../models/vae/config.js';
import { AutoencoderKL } from '../models/vae/model.js';
import { AbortError, ArgumentError, ConfigError, IOError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { DEFAULT_NOISING_STEP } from './boost.js';
import type { OdeMethod } from './flow-schedule.js';
import { SD15_SCHEDULER_CONFIG, schedulerConfigFromDiffusers, type SchedulerConfig } from './schedulers/index.js';
import { validateConfig } from './schedulers/noise-schedule.js';

// ------------------------------------------------------------------------------------------ ModelFiles

/** A folder of model files: relative '/'-separated paths, each opened as a random-access ByteSource. */
export interface ModelFiles {
  /** Where the files are (a path, a URL, 'dropped files'), for messages. */
  readonly name: string;
  /** Every file's relative path, e.g. 'unet/config.json'. */
  list(): string[];
  open(path: string, signal?: AbortSignal): Promise<ByteSource>;
}

/** Files in memory (tests, files fetched some other way). */
export function bytesModelFiles(files: Record<string, Uint8Array>, name = 'memory'): ModelFiles {
  if (typeof files !== 'object' || files === null) throw new ArgumentError('bytesModelFiles', 'expected { path: bytes }');
  const map = new Map(Object.entries(files).map(([p, b]) => [normalizePath(p), b]));
  return {
    name,
    list: () => [...map.keys()].sort(),
    async open(path) {
      const b = map.get(normalizePath(path));
      if (!b) throw new IOError(`${name}/${path}`, 'no such file');
      return bytesSource(b, `${name}/${path}`);
    },
  };
}

/** A File with the path it had in a dropped folder (from `webkitGetAsEntry()`, which File objects do not carry). */
export interface PathedFile {
  path: string;
  file: File;
}

/**
 * `File`s from an `<input type=file webkitdirectory>` or a drop. A file's path is its given path or
 * `webkitRelativePath`, without the top folder when every file shares it (so dropping the model folder itself
 * works), else its name; `open` also accepts a path whose last segments match, so files picked one by one still
 * resolve when the match is unique.
 */
export function fileListModelFiles(files: Iterable<File | PathedFile> | ArrayLike<File | PathedFile>, name = 'dropped files'): ModelFiles {
  const items = Array.from(files as ArrayLike<File | PathedFile>).map((f) => {
    const file = f instanceof Blob ? f : f?.file;
    if (typeof Blob === 'undefined' || !(file instanceof Blob)) throw new ArgumentError('fileListModelFiles', 'expected File objects (or { path, file })');
    const rel = f instanceof Blob ? (f as File & { webkitRelativePath?: string }).webkitRelativePath || (f as File).name : f.path;
    return { file, parts: normalizePath(rel).split('/') };
  });
  if (items.length === 0) throw new ArgumentError('fileListModelFiles', 'no files given');
  const top = items[0]!.parts[0]!;
  const shared = items.length > 1 && items.every((i) => i.parts.length > 1 && i.parts[0] === top);
  const byPath = new Map<string, File>();
  for (const i of items) byPath.set((shared ? i.parts.slice(1) : i.parts).join('/'), i.file as File);
  return {
    name,
    list: () => [...byPath.keys()].sort(),
    async open(path) {
      const p = normalizePath(path);
      let f = byPath.get(p);
      if (!f) {
        const hits = [...byPath.entries()].filter(([k]) => p.endsWith('/' + k) || k.endsWith('/' + p));
        if (hits.length === 1) f = hits[0]![1];
      }
      if (!f) throw new IOError(`${name}: ${path}`, `not among the given files (${[...byPath.keys()].slice(0, 8).join(', ')})`);
      return blobSource(f, p);
    },
  };
}

export interface UrlModelFilesOptions extends Pick<UrlSourceOptions, 'fetch' | 'headers' | 'onProgress'> {
  /** The file list; default: `files.json` at the base URL (see weights/tiny), else the hub layout's usual names that answer a HEAD. */
  files?: string[];
  /** Keep downloaded ranges in the browser's Cache API (default true where it exists). */
  cache?: boolean;
  signal?: AbortSignal;
}

/** The hub layout's usual file names, probed when a server has no `files.json`. */
const HUB_NAMES = [
  'model_index.json',
  'scheduler/scheduler_config.json',
  'text_encoder/config.json', 'text_encoder/model.safetensors', 'text_encoder/model.fp16.safetensors',
  'tokenizer/vocab.json', 'tokenizer/merges.txt',
  'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.fp16.safetensors',
  'vae/config.json', 'vae/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.fp16.safetensors',
  'cfm/config.json', 'cfm/cfm.safetensors',
];

/**
 * A model folder on a web server (or the Hugging Face hub: `https://huggingface.co/<repo>/resolve/main/`).
 * Files are read with HTTP Range requests, so only the bytes a loader asks for are downloaded.
 */
export async function urlModelFiles(base: string | URL, o: UrlModelFilesOptions = {}): Promise<ModelFiles> {
  const where = 'urlModelFiles';
  let root: string;
  try {
    root = new URL(String(base), typeof location !== 'undefined' ? location.href : undefined).href;
  } catch {
    throw new ArgumentError(where, `not a URL: ${String(base)}`);
  }
  if (!root.endsWith('/')) root += '/';
  const doFetch = o.fetch ?? globalThis.fetch;
  if (typeof doFetch !== 'function') throw new ArgumentError(where, 'no fetch available; pass options.fetch');
  const open = (path: string, signal?: AbortSignal): Promise<ByteSource> =>
    cachedUrlSource(root + normalizePath(path), { fetch: doFetch, headers: o.headers, onProgress: o.onProgress, signal: signal ?? o.signal, cache: o.cache });
  let files = o.files?.map(normalizePath);
  if (!files) {
    try {
      const manifest = (await readJson(await open('files.json'))) as { files?: unknown };
      if (!Array.isArray(manifest?.files)) throw new ConfigError(root + 'files.json', "expected { files: [{ path }, …] }");
      files = manifest.files.map((f, i) => {
        const p = typeof f === 'string' ? f : (f as { path?: unknown })?.path;
        if (typeof p !== 'string' || p === '') throw new ConfigError(root + 'files.json', `files[${i}] has no path`);
        return normalizePath(p);
      });
    } catch (e) {
      if (e instanceof AbortError || e instanceof ConfigError) throw e;
      files = await probe(root, doFetch, o);
    }
  }
  return { name: root, list: () => [...files!].sort(), open };
}

async function probe(root: string, doFetch: typeof fetch, o: UrlModelFilesOptions): Promise<string[]> {
  const found = await Promise.all(
    HUB_NAMES.map(async (p) => {
      try {
        const r = await doFetch(root + p, { method: 'HEAD', headers: o.headers, signal: o.signal });
        return r.ok ? p : null;
      } catch (e) {
        if (o.signal?.aborted) throw new AbortError(root);
        throw new IOError(root + p, `HEAD failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    }),
  );
  const files = found.filter((p): p is string => p !== null);
  if (files.length === 0) throw new IOError(root, 'no model files found (no files.json, and none of the usual hub-layout names answered)');
  return files;
}

function normalizePath(p: string): string {
  return p.replace(/\\/g, '/').replace(/^\.?\/+/, '').replace(/\/{2,}/g, '/');
}

// ------------------------------------------------------------------------------------------ browser cache

/** Cache API bucket that holds downloaded model ranges. */
export const MODEL_CACHE_NAME = 'fmboost-models-v1';

interface CacheLike {
  match(key: string): Promise<Response | undefined>;
  put(key: string, res: Response): Promise<void>;
}

async function openModelCache(): Promise<CacheLike | null> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) return null;
  try {
    return await storage.open(MODEL_CACHE_NAME);
  } catch {
    // Opaque origins and some private modes refuse the Cache API: load without it.
    return null;
  }
}

/** Deletes every cached model range; resolves true when there was something to delete. No-op without the Cache API. */
export async function clearModelCache(): Promise<boolean> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) return false;
  try {
    return await storage.delete(MODEL_CACHE_NAME);
  } catch (e) {
    throw new IOError(MODEL_CACHE_NAME, `could not clear the model cache: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * urlSource with a browser cache: the file size and every range read are stored in the Cache API under
 * synthetic keys of the URL, so the same reads on a reload (loaders read deterministically) touch no network.
 * The server is contacted only on a miss. Without the Cache API (Node) this is plain urlSource.
 */
export async function cachedUrlSource(url: string, o: UrlSourceOptions & { cache?: boolean } = {}): Promise<ByteSource> {
  const cache = o.cache === false ? null : await openModelCache();
  if (!cache) return urlSource(url, o);
  const key = (what: string) => `${url}${url.includes('?') ? '&' : '?'}fmboost-cache=${what}`;
  const put = async (k: string, body: BodyInit): Promise<void> => {
    try {
      await cache.put(k, new Response(body, { status: 200, headers: { 'Content-Type': 'application/octet-stream' } }));
    } catch (e) {
      if (isQuotaError(e)) {
        throw new IOError(url, 'the browser storage quota is exhausted while caching model data; free space (clearModelCache()) or load with { cache: false }', { cause: e });
      }
      throw new IOError(url, `caching a downloaded range failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  };
  let size: number;
  let net: ByteSource | null = null;
  const network = async (): Promise<ByteSource> => (net ??= await urlSource(url, o));
  const hit = await cache.match(key('size'));
  if (hit) size = Number(await hit.text());
  else {
    size = (await network()).size;
    await put(key('size'), String(size));
  }
  if (!Number.isSafeInteger(size) || size < 0) throw new IOError(url, `the cached size entry is corrupt; call clearModelCache()`);
  let loaded = 0;
  return {
    name: url,
    size,
    async read(offset, length, signal) {
      throwIfAborted(signal ?? o.signal, url);
      const k = key(`${offset}-${length}`);
      const cached = await cache.match(k);
      if (cached) {
        const buf = new Uint8Array(await cached.arrayBuffer());
        if (buf.byteLength === length) {
          loaded += length;
          o.onProgress?.(Math.min(loaded, size), size);
          return buf;
        }
      }
      const bytes = await (await network()).read(offset, length, signal);
      await put(k, bytes.slice());
      return bytes;
    },
  };
}

function isQuotaError(e: unknown): boolean {
  const n = (e as { name?: string } | null)?.name;
  return n === 'QuotaExceededError' || n === 'NS_ERROR_DOM_QUOTA_REACHED';
}

// ------------------------------------------------------------------------------------------ inputs

/** A model given as files: a ModelFiles folder, a base URL, a single-file checkpoint (URL, Blob/File, ByteSource), or dropped Files. */
export type ModelInput = ModelFiles | string | URL | ByteSource | Blob | (File | PathedFile)[] | FileList;

/** One CFM stage: weights (safetensors, or a training .ckpt) and its EfficientUNet config. */
export interface CfmStageInput {
  weights: string | URL | ByteSource | Blob;
  /** JSON object (any wrapper parseCfmUNetConfig accepts), or a JSON file; default the released config. */
  config?: unknown;
  /** Latent factor of this stage; default the config's `factor`, else 2. */
  factor?: 2 | 4;
  /** Forward-diffusion step of the source noise; default the config's `noising_step`, else 400. */
  noisingStep?: number;
  /** Training checkpoints: EMA weights (default when present) or online ones. */
  ema?: boolean;
  /** Default ODE solver and grid points of this stage; default the config's `solver` / `num_steps`, else Euler with 40. */
  solver?: OdeMethod;
  steps?: number;
}

export interface LoadProgress {
  /** Bytes of weight files read so far / in all (bytes come from the network, the cache, a disk or memory). */
  loadedBytes: number;
  totalBytes: number;
  /** The file the last read was from. */
  file: string;
}

export interface LoadModelSetOptions {
  /** Weight storage on the GPU: 'auto' keeps the files' dtypes. */
  dtype?: 'auto' | 'f32' | 'f16';
  /** 'fp16': read `*.fp16.safetensors` when the folder has them (smaller downloads). */
  variant?: 'fp16';
  /** Tokenizer when the model files have none: an instance, or the gzip'd BPE vocabulary as a file or URL. */
  tokenizer?: CLIPTokenizer | ByteSource | string | URL;
  /** CFM stages; default the folder's `cfm/` when present. false: none. */
  cfm?: CfmStageInput | CfmStageInput[] | false;
  /** The VAE encoder is needed only for PSU and upscaling (default true). */
  vaeEncoder?: boolean;
  /**
   * 'all' (default), or 'upscale': only the VAE and the CFM stages (for upscaling pictures; the text encoder,
   * UNet and tokenizer files are not read at all, and a folder needs only vae/ and cfm/).
   */
  components?: 'all' | 'upscale';
  /**
   * SD single-file checkpoints only (the file holds weights, not configs). Without it the SD-1.5 presets are used
   * (LCM-distilled when the file has `time_embed.cond_proj`), which fits SD-1.x fine-tunes; a checkpoint of another
   * size needs its configs, like diffusers' `from_single_file(…, config=…)`:
   * - a diffusers folder of the same architecture (`ModelFiles`, or a base URL): its `unet/config.json`,
   *   `vae/config.json`, `text_encoder/config.json` and (if present) `scheduler/scheduler_config.json` are read,
   *   none of its weights;
   * - or `{ unet?, vae?, textEncoder?, scheduler? }`: each the parsed JSON of that component's config file
   *   (diffusers / transformers field names), or that JSON file as a URL or ByteSource; a component left out keeps
   *   its SD-1.5 preset.
   *
   * The file's weight shapes are checked against the configs before anything is uploaded (ConfigError naming the
   * tensor). Passing it with a diffusers folder as the model is an ArgumentError.
   */
  singleFileConfig?: SingleFileConfig;
  /** Browser: cache downloaded ranges (default true). */
  cache?: boolean;
  fetch?: typeof fetch;
  headers?: Record<string, string>;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

/** Configs for an SD single-file checkpoint that is not SD-1.5-sized (see LoadModelSetOptions.singleFileConfig). */
export type SingleFileConfig = ModelFiles | string | URL | SingleFileComponentConfigs;

/** Per-component configs: parsed JSON objects, or JSON files (URL, ByteSource). */
export interface SingleFileComponentConfigs {
  /** diffusers `unet/config.json` (UNet2DConditionModel). */
  unet?: unknown;
  /** diffusers `vae/config.json` (AutoencoderKL). */
  vae?: unknown;
  /** transformers `text_encoder/config.json` (CLIPTextModel). */
  textEncoder?: unknown;
  /** diffusers `scheduler/scheduler_config.json`. */
  scheduler?: unknown;
}

/** A loaded CFM stage: the network and its defaults (REFERENCE §5.6: checkpoint, factor, noising step, solver). */
export interface LoadedCfmStage {
  cfm: CfmUNet;
  factor: 2 | 4;
  noisingStep: number;
  solver: OdeMethod;
  /** ODE grid points. */
  steps: number;
}

/** Everything FMBoostPipeline runs on. `dispose()` frees the GPU weights. */
export interface ModelSet {
  /** Absent when loaded with components 'upscale'. */
  tokenizer?: CLIPTokenizer;
  textEncoder?: CLIPTextModel;
  unet?: UNet2DConditionModel;
  vae: AutoencoderKL;
  cfmStages: LoadedCfmStage[];
  schedulerConfig: SchedulerConfig;
  /** Where the model came from, for reports. */
  source: string;
  dispose(): void;
}

/** URL of the BPE vocabulary shipped next to the library bundle (dist/ → weights/tokenizer/). */
export function bundledTokenizerUrl(): URL {
  return new URL('../weights/tokenizer/bpe_simple_vocab_16e6.txt.gz', import.meta.url);
}

/** URL of the bundled tiny model next to the library bundle (dist/ → weights/tiny/). */
export function bundledTinyModelUrl(): URL {
  return new URL('../weights/tiny/', import.meta.url);
}

/** ODE grid points of a stage whose config names none: the paper's 40-NFE Euler setting. */
export const DEFAULT_CFM_STEPS = 40;

const CHECKPOINT_EXT = /\.(safetensors|ckpt|pt|pth|bin)$/i;

/**
 * Loads tokenizer, CLIP text encoder, UNet, VAE (and CFM stages) from a hub-layout folder or an SD single-file
 * checkpoint. Every config is read and every weight file opened (headers only) before any weight is uploaded,
 * so a wrong folder fails early and the progress total is known from the start; on any error nothing stays
 * allocated.
 */
export async function loadModelSet(rt: Runtime, input: ModelInput, o: LoadModelSetOptions = {}): Promise<ModelSet> {
  const where = 'loadModelSet';
  checkLoadOptions(where, o);
  const progress = new ProgressMeter(o.onProgress);
  const net: Net = { fetch: o.fetch, headers: o.headers, cache: o.cache, signal: o.signal };
  const resolved = await resolveInput(input, net);
  if (o.singleFileConfig !== undefined && resolved.kind !== 'single') {
    throw new ArgumentError(where, `singleFileConfig applies to SD single-file checkpoints; ${resolved.files.name} is a folder with its own config.json files`);
  }
  const plan = resolved.kind === 'single' ? await planSingleFile(resolved.source, o, progress, net) : await planHubFolder(resolved.files, o, progress);
  const stageInputs = o.cfm === false ? [] : o.cfm === undefined ? (plan.folderCfm ? [plan.folderCfm] : []) : Array.isArray(o.cfm) ? o.cfm : [o.cfm];
  const stages = [];
  for (const s of stageInputs) stages.push(await prepareCfmStage(s, net, progress));
  const textToImage = o.components !== 'upscale';
  const tokenizer = textToImage ? plan.tokenizer ?? (await loadTokenizer(o.tokenizer, net)) : undefined;

  const owned: { dispose(): void }[] = [];
  try {
    const common = { dtype: o.dtype, signal: o.signal };
    // Independent loads: over HTTP their range requests overlap.
    const [vae, textEncoder, unet] = await settleAll(owned, [
      AutoencoderKL.load(rt, { config: plan.vaeConfig, weights: plan.vae, parts: o.vaeEncoder === false ? 'decoder' : 'all', ...common }),
      ...(textToImage
        ? [CLIPTextModel.load(rt, plan.textEncoder!, { config: plan.clipConfig, ...common }), UNet2DConditionModel.load(rt, plan.unet!, plan.unetConfig!, common)]
        : []),
    ] as const) as [AutoencoderKL, CLIPTextModel | undefined, UNet2DConditionModel | undefined];
    const cfmStages: LoadedCfmStage[] = [];
    for (const s of stages) {
      const cfm = await CfmUNet.load(rt, { config: s.config, weights: s.tensors, ema: s.ema, ...common });
      owned.push(cfm);
      cfmStages.push({ cfm, factor: s.factor, noisingStep: s.noisingStep, solver: s.solver, steps: s.steps });
    }
    return {
      tokenizer,
      textEncoder,
      unet,
      vae,
      cfmStages,
      schedulerConfig: plan.schedulerConfig,
      source: resolved.kind === 'single' ? resolved.source.name : resolved.files.name,
      dispose: () => owned.splice(0).forEach((m) => m.dispose()),
    };
  } catch (e) {
    owned.forEach((m) => m.dispose());
    throw e;
  }
}

/** Awaits every load; if one fails, the others' models are still collected in `owned` (to be freed) and the first error is thrown. */
async function settleAll<T extends readonly Promise<{ dispose(): void }>[]>(owned: { dispose(): void }[], jobs: T): Promise<{ [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(jobs);
  for (const s of settled) if (s.status === 'fulfilled') owned.push(s.value);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as { [K in keyof T]: Awaited<T[K]> };
}

type Resolved = { kind: 'single'; source: ByteSource } | { kind: 'folder'; files: ModelFiles };
type Net = { fetch?: typeof fetch; headers?: Record<string, string>; cache?: boolean; signal?: AbortSignal };

async function resolveInput(input: ModelInput, net: Net): Promise<Resolved> {
  if (isModelFiles(input)) return { kind: 'folder', files: input };
  if (isByteSource(input)) return { kind: 'single', source: input };
  if (typeof input === 'string' || input instanceof URL) {
    const url = String(input);
    if (/^file:/i.test(url)) {
      throw new ArgumentError('loadModelSet', `${url} is a local path: in Node pass folderModelFiles(dir) or use loadModelFromPath (fmboost-webgpu/node)`);
    }
    if (CHECKPOINT_EXT.test(new URL(url, typeof location !== 'undefined' ? location.href : 'http://x/').pathname)) {
      return { kind: 'single', source: await cachedUrlSource(absoluteUrl(url), net) };
    }
    return { kind: 'folder', files: await urlModelFiles(url, net) };
  }
  if (typeof Blob !== 'undefined' && input instanceof Blob) return { kind: 'single', source: blobSource(input) };
  if (input && typeof (input as ArrayLike<unknown>).length === 'number') {
    const files = Array.from(input as ArrayLike<File | PathedFile>);
    const only = files.length === 1 ? files[0]! : undefined;
    const file = only instanceof Blob ? (only as File) : only?.file;
    if (file && CHECKPOINT_EXT.test(file.name)) return { kind: 'single', source: blobSource(file) };
    return { kind: 'folder', files: fileListModelFiles(files) };
  }
  throw new ArgumentError('loadModelSet', 'model must be a ModelFiles folder, a URL, a checkpoint (ByteSource, Blob/File), or a list of Files');
}

function absoluteUrl(u: string): string {
  return typeof location !== 'undefined' ? new URL(u, location.href).href : u;
}

function isModelFiles(x: unknown): x is ModelFiles {
  return typeof x === 'object' && x !== null && typeof (x as ModelFiles).list === 'function' && typeof (x as ModelFiles).open === 'function';
}

function isByteSource(x: unknown): x is ByteSource {
  return typeof x === 'object' && x !== null && typeof (x as ByteSource).read === 'function' && typeof (x as ByteSource).size === 'number';
}

function checkLoadOptions(where: string, o: LoadModelSetOptions): void {
  if (typeof o !== 'object' || o === null) throw new ArgumentError(where, 'options must be an object');
  if (o.dtype !== undefined && !['auto', 'f32', 'f16'].includes(o.dtype)) throw new ArgumentError(where, `dtype must be 'auto', 'f32' or 'f16', got '${String(o.dtype)}'`);
  if (o.variant !== undefined && o.variant !== 'fp16') throw new ArgumentError(where, `variant must be 'fp16' or omitted, got '${String(o.variant)}'`);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new ArgumentError(where, 'onProgress must be a function');
  throwIfAborted(o.signal, where);
}

/** Sums bytes read across every weight source so one bar covers the whole load. */
class ProgressMeter {
  private total = 0;
  private loaded = 0;
  constructor(private readonly cb?: (p: LoadProgress) => void) {}

  /** Counts reads of `src` toward the total (its size is added now). */
  track(src: ByteSource): ByteSource {
    this.total += src.size;
    if (!this.cb) return src;
    return {
      name: src.name,
      size: src.size,
      read: async (offset, length, signal) => {
        const b = await src.read(offset, length, signal);
        this.loaded += length;
        this.cb!({ loadedBytes: Math.min(this.loaded, this.total), totalBytes: this.total, file: src.name });
        return b;
      },
    };
  }
}

/** A checkpoint's tensors: safetensors, or a torch.save zip (sniffed by its 'PK' signature). */
async function openTensors(raw: ByteSource, signal?: AbortSignal): Promise<TensorSource> {
  const n = Math.min(8, raw.size);
  const head = new Uint8Array(await raw.read(0, n, signal));
  const isZip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
  // The safetensors reader starts with the same 8 bytes: serve them from memory, so no byte is downloaded twice.
  const src: ByteSource = {
    name: raw.name,
    size: raw.size,
    read: (offset, length, sig) => (offset + length <= n ? Promise.resolve(head.slice(offset, offset + length)) : raw.read(offset, length, sig)),
  };
  return isZip ? openCheckpoint(src, { signal }) : SafetensorsFile.open(src, signal);
}

/** What a model folder or file holds, opened but not loaded. */
interface Plan {
  textEncoder?: TensorSource;
  unet?: TensorSource;
  vae: TensorSource;
  clipConfig?: CLIPTextConfig;
  unetConfig?: UNet2DConditionConfig;
  vaeConfig: unknown;
  schedulerConfig: SchedulerConfig;
  tokenizer?: CLIPTokenizer;
  folderCfm?: CfmStageInput;
}

/**
 * SD single-file checkpoint: one file, three models split by prefix (models/keys.ts). Configs: the SD-1.5 presets,
 * or `singleFileConfig`; either way the file's anchor tensors are checked against them before any upload.
 */
async function planSingleFile(raw: ByteSource, o: LoadModelSetOptions, progress: ProgressMeter, net: Net): Promise<Plan> {
  const textToImage = o.components !== 'upscale';
  const given = await readSingleFileConfigs(o.singleFileConfig, net, textToImage);
  const tensors = await openTensors(progress.track(raw), o.signal);
  const keys = tensors.keys();
  const has = (re: RegExp) => keys.some((k) => re.test(k));
  if (!has(/^model\.diffusion_model\./) || !has(/^first_stage_model\./) || !has(/^cond_stage_model\.transformer\./)) {
    throw new ConfigError(raw.name, "is not an SD-1.x single-file checkpoint (expected 'model.diffusion_model.*', 'first_stage_model.*' and 'cond_stage_model.transformer.*' keys); for a diffusers folder pass the folder");
  }
  // LCM-distilled UNets carry the guidance projection.
  const lcm = has(/^model\.diffusion_model\.time_embed(ding)?\.cond_proj\.weight$/);
  const unetConfig = given.unet ?? (lcm ? UNet2DConditionConfig.lcmSd15 : UNet2DConditionConfig.sd15);
  const clipConfig = given.textEncoder ?? CLIPTextConfig.sd15;
  const vaeConfig = given.vae ?? parseAutoencoderKLConfig(AutoencoderKLConfig.sd15);
  checkSingleFileShapes(raw.name, tensors, { unet: unetConfig, textEncoder: clipConfig, vae: vaeConfig }, given, textToImage);
  return {
    textEncoder: tensors,
    unet: tensors,
    vae: tensors,
    clipConfig,
    unetConfig,
    vaeConfig,
    schedulerConfig: given.scheduler ?? SD15_SCHEDULER_CONFIG,
  };
}

interface ParsedSingleFileConfigs {
  unet?: UNet2DConditionConfig;
  vae?: AutoencoderKLConfigJson;
  textEncoder?: CLIPTextConfig;
  scheduler?: SchedulerConfig;
}

const SINGLE_FILE_COMPONENTS = ['unet', 'vae', 'textEncoder', 'scheduler'] as const;

/**
 * Reads and validates `singleFileConfig` (ArgumentError for a wrong form, ConfigError for a bad config). From a
 * folder, the upscaler (`textToImage` false) reads only `vae/config.json`.
 */
async function readSingleFileConfigs(c: SingleFileConfig | undefined, net: Net, textToImage: boolean): Promise<ParsedSingleFileConfigs> {
  const where = 'loadModelSet: singleFileConfig';
  if (c === undefined) return {};
  const json: Partial<Record<(typeof SINGLE_FILE_COMPONENTS)[number], unknown>> = {};
  const names: Record<(typeof SINGLE_FILE_COMPONENTS)[number], string> = {
    unet: 'unet/config.json',
    vae: 'vae/config.json',
    textEncoder: 'text_encoder/config.json',
    scheduler: 'scheduler/scheduler_config.json',
  };
  if (isModelFiles(c) || typeof c === 'string' || c instanceof URL) {
    const files = isModelFiles(c) ? c : await urlModelFiles(c, { ...net, files: Object.values(names) });
    const all = new Set(files.list());
    for (const k of textToImage ? SINGLE_FILE_COMPONENTS : (['vae'] as const)) {
      const p = names[k];
      const optional = k === 'scheduler';
      if (!all.has(p)) {
        if (optional) continue;
        throw new ConfigError(`${files.name}${files.name.endsWith('/') ? '' : '/'}${p}`, `missing: a singleFileConfig folder needs ${textToImage ? 'unet/, vae/ and text_encoder/ config.json files' : 'vae/config.json'}`);
      }
      try {
        json[k] = await readJson(await files.open(p, net.signal), undefined, net.signal);
      } catch (e) {
        // A base URL is asked for each file: a server without the scheduler's file keeps the SD-1.5 schedule.
        if (optional && e instanceof IOError) continue;
        throw e;
      }
    }
  } else if (typeof c === 'object' && c !== null && !isByteSource(c) && !(typeof Blob !== 'undefined' && c instanceof Blob)) {
    const extra = Object.keys(c).filter((k) => !(SINGLE_FILE_COMPONENTS as readonly string[]).includes(k));
    if (extra.length) throw new ArgumentError(where, `unknown component(s) ${extra.map((k) => `'${k}'`).join(', ')}; expected unet, vae, textEncoder, scheduler`);
    for (const k of SINGLE_FILE_COMPONENTS) {
      const v = (c as SingleFileComponentConfigs)[k];
      if (v === undefined) continue;
      if (isByteSource(v)) json[k] = await readJson(v, undefined, net.signal);
      else if (typeof v === 'string' || v instanceof URL) json[k] = await readJson(await cachedUrlSource(absoluteUrl(String(v)), net), undefined, net.signal);
      else if (typeof v === 'object' && v !== null && !Array.isArray(v)) json[k] = v;
      else throw new ArgumentError(where, `${k} must be a config JSON object, or a URL or ByteSource of one`);
    }
  } else {
    throw new ArgumentError(where, 'expected a diffusers folder (ModelFiles or base URL) or { unet?, vae?, textEncoder?, scheduler? } configs');
  }
  return {
    unet: json.unet === undefined ? undefined : UNet2DConditionConfig.fromDiffusers(json.unet, names.unet),
    vae: json.vae === undefined ? undefined : parseAutoencoderKLConfig(json.vae, names.vae),
    textEncoder: json.textEncoder === undefined ? undefined : CLIPTextConfig.fromTransformers(json.textEncoder, names.textEncoder),
    scheduler:
      json.scheduler === undefined
        ? undefined
        : checkedSchedulerConfig(schedulerConfigFromDiffusers(json.scheduler as Record<string, unknown>, names.scheduler), names.scheduler),
  };
}

/**
 * The first tensor of each model against its config, so a checkpoint of another size fails before any upload
 * with a ConfigError that says what to pass (the loaders would only name the first mismatching weight).
 */
function checkSingleFileShapes(
  file: string,
  t: TensorSource,
  c: { unet: UNet2DConditionConfig; textEncoder: CLIPTextConfig; vae: AutoencoderKLConfigJson },
  given: ParsedSingleFileConfigs,
  textToImage: boolean,
): void {
  const all: [keyof ParsedSingleFileConfigs, string, number[]][] = [
    ['unet', 'model.diffusion_model.input_blocks.0.0.weight', [c.unet.blockOutChannels[0]!, c.unet.inChannels, c.unet.convInKernel, c.unet.convInKernel]],
    ['unet', 'model.diffusion_model.out.2.weight', [c.unet.outChannels, c.unet.blockOutChannels[0]!, c.unet.convOutKernel, c.unet.convOutKernel]],
    ['textEncoder', 'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight', [c.textEncoder.vocabSize, c.textEncoder.hiddenSize]],
    ['vae', 'first_stage_model.decoder.conv_in.weight', [c.vae.block_out_channels.at(-1)!, c.vae.latent_channels, 3, 3]],
    ['vae', 'first_stage_model.encoder.conv_in.weight', [c.vae.block_out_channels[0]!, c.vae.in_channels, 3, 3]],
  ];
  // The upscaler loads only the VAE: the other models' presets need not fit.
  const anchors = textToImage ? all : all.filter(([component]) => component === 'vae');
  for (const [component, key, want] of anchors) {
    if (!t.keys().includes(key)) continue; // the model's own load names a missing weight
    const got = t.info(key).shape;
    if (got.join() === want.join()) continue;
    const what = given[component]
      ? `the given ${component} config expects [${want.join(', ')}]: that config does not describe this checkpoint`
      : `the SD-1.5 ${component} preset expects [${want.join(', ')}]: this checkpoint is not SD-1.5-sized; pass singleFileConfig (a diffusers folder of its architecture, or { unet, vae, textEncoder } configs)`;
    throw new ConfigError(file, `${key} is [${got.join(', ')}], ${what}`);
  }
}

async function planHubFolder(files: ModelFiles, o: LoadModelSetOptions, progress: ProgressMeter): Promise<Plan> {
  const all = new Set(files.list());
  const need = (p: string): string => {
    if (!all.has(p)) throw new ConfigError(`${files.name}${files.name.endsWith('/') ? '' : '/'}${p}`, `missing: a diffusers folder needs model_index.json, text_encoder/, unet/ and vae/ with config.json and weights (found: ${[...all].slice(0, 12).join(', ') || 'nothing'})`);
    return p;
  };
  const json = async (p: string): Promise<unknown> => readJson(await files.open(p, o.signal), undefined, o.signal);
  /** The component's weights: the fp16 variant when asked and present, else the plain file, else the only safetensors. */
  const weightsOf = (dir: string, stem: string): string => {
    const order = o.variant === 'fp16' ? [`${dir}/${stem}.fp16.safetensors`, `${dir}/${stem}.safetensors`] : [`${dir}/${stem}.safetensors`, `${dir}/${stem}.fp16.safetensors`];
    const hit = order.find((p) => all.has(p)) ?? [...all].find((p) => p.startsWith(dir + '/') && p.endsWith('.safetensors') && !p.slice(dir.length + 1).includes('/'));
    if (!hit) throw new ConfigError(`${files.name} ${dir}/`, `no ${stem}.safetensors (only safetensors weights are read from folders; convert .bin files first)`);
    return hit;
  };
  const textToImage = o.components !== 'upscale';
  if (textToImage) {
    const index = await json(need('model_index.json'));
    if (typeof index !== 'object' || index === null || Array.isArray(index)) throw new ConfigError(`${files.name} model_index.json`, 'expected a JSON object');
  }
  const clipConfig = textToImage ? CLIPTextConfig.fromTransformers(await json(need('text_encoder/config.json')), 'text_encoder/config.json') : undefined;
  const unetConfig = textToImage ? UNet2DConditionConfig.fromDiffusers(await json(need('unet/config.json')), 'unet/config.json') : undefined;
  const vaeConfig = await json(need('vae/config.json'));
  const schedulerConfig = all.has('scheduler/scheduler_config.json')
    ? checkedSchedulerConfig(schedulerConfigFromDiffusers((await json('scheduler/scheduler_config.json')) as Record<string, unknown>, 'scheduler/scheduler_config.json'), 'scheduler/scheduler_config.json')
    : SD15_SCHEDULER_CONFIG;
  let tokenizer: CLIPTokenizer | undefined;
  if (!textToImage) {
    // the upscaler needs no tokenizer
  } else if (all.has('tokenizer/vocab.json') && all.has('tokenizer/merges.txt')) {
    const text = async (p: string) => new TextDecoder().decode(await readAll(await files.open(p, o.signal), o.signal));
    tokenizer = CLIPTokenizer.fromVocabMerges(await text('tokenizer/vocab.json'), await text('tokenizer/merges.txt'));
  } else if (all.has('tokenizer/bpe_simple_vocab_16e6.txt.gz')) {
    tokenizer = await CLIPTokenizer.fromBpeGz(await readAll(await files.open('tokenizer/bpe_simple_vocab_16e6.txt.gz', o.signal), o.signal));
  }
  const paths = [weightsOf('vae', 'diffusion_pytorch_model'), ...(textToImage ? [weightsOf('text_encoder', 'model'), weightsOf('unet', 'diffusion_pytorch_model')] : [])];
  const opened = await Promise.all(paths.map(async (p) => SafetensorsFile.open(progress.track(await files.open(p, o.signal)), o.signal)));
  let folderCfm: CfmStageInput | undefined;
  const cfmWeights = [...all].filter((p) => /^cfm\/[^/]+\.(safetensors|ckpt)$/.test(p)).sort();
  if (o.cfm === undefined && cfmWeights.length) {
    folderCfm = {
      weights: await files.open(cfmWeights.find((p) => p.endsWith('.safetensors')) ?? cfmWeights[0]!, o.signal),
      config: all.has('cfm/config.json') ? await json('cfm/config.json') : undefined,
    };
  }
  return { vae: opened[0]!, textEncoder: opened[1], unet: opened[2], clipConfig, unetConfig, vaeConfig, schedulerConfig, tokenizer, folderCfm };
}

/** A scheduler config the schedules cannot use fails the load (ConfigError), not the first generation. */
function checkedSchedulerConfig(c: SchedulerConfig, file: string): SchedulerConfig {
  try {
    validateConfig(c);
  } catch (e) {
    if (e instanceof ArgumentError) throw new ConfigError(file, e.message);
    throw e;
  }
  return c;
}

async function readAll(src: ByteSource, signal?: AbortSignal): Promise<Uint8Array> {
  return src.read(0, src.size, signal);
}

async function loadTokenizer(t: LoadModelSetOptions['tokenizer'], net: Net): Promise<CLIPTokenizer> {
  if (t instanceof CLIPTokenizer) return t;
  let src: ByteSource;
  if (isByteSource(t)) src = t;
  else {
    const url = t === undefined ? bundledTokenizerUrl() : new URL(String(t), typeof location !== 'undefined' ? location.href : undefined);
    if (url.protocol === 'file:') {
      throw new ArgumentError('loadModelSet', `the model has no tokenizer/ and ${url.href} cannot be fetched here; pass options.tokenizer (in Node: loadModelFromPath or bundledTokenizer() from fmboost-webgpu/node)`);
    }
    src = await cachedUrlSource(url.href, net);
  }
  return CLIPTokenizer.fromBpeGz(await readAll(src, net.signal));
}

interface PreparedCfm {
  tensors: TensorSource;
  config: unknown;
  factor: 2 | 4;
  noisingStep: number;
  solver: OdeMethod;
  steps: number;
  ema?: boolean;
}

/** Opens a CFM stage's weights and reads its config (no upload yet). */
async function prepareCfmStage(s: CfmStageInput, net: Net, progress: ProgressMeter): Promise<PreparedCfm> {
  const where = 'CFM stage';
  if (typeof s !== 'object' || s === null || !s.weights) throw new ArgumentError(where, 'needs { weights, config? }');
  let src: ByteSource;
  if (isByteSource(s.weights)) src = s.weights;
  else if (typeof s.weights === 'string' || s.weights instanceof URL) src = await cachedUrlSource(absoluteUrl(String(s.weights)), net);
  else if (typeof Blob !== 'undefined' && s.weights instanceof Blob) src = blobSource(s.weights);
  else throw new ArgumentError(where, 'weights must be a URL, a Blob/File or a ByteSource');
  let config = s.config;
  if (isByteSource(config)) config = await readJson(config, undefined, net.signal);
  else if (typeof config === 'string' || config instanceof URL) config = await readJson(await cachedUrlSource(absoluteUrl(String(config)), net), undefined, net.signal);
  const meta = (typeof config === 'object' && config !== null ? config : {}) as { factor?: unknown; noising_step?: unknown; solver?: unknown; num_steps?: unknown };
  const factor = s.factor ?? meta.factor ?? 2;
  if (factor !== 2 && factor !== 4) throw new ArgumentError(where, `factor must be 2 or 4, got ${String(factor)}`);
  const noisingStep = s.noisingStep ?? meta.noising_step ?? DEFAULT_NOISING_STEP;
  if (typeof noisingStep !== 'number' || !Number.isInteger(noisingStep) || noisingStep < 0 || noisingStep > 999) {
    throw new ArgumentError(where, `noisingStep must be an integer in [0, 999], got ${String(noisingStep)}`);
  }
  const solver = s.solver ?? meta.solver ?? 'euler';
  if (solver !== 'euler' && solver !== 'midpoint' && solver !== 'rk4') throw new ArgumentError(where, `solver must be 'euler', 'midpoint' or 'rk4', got ${String(solver)}`);
  const steps = s.steps ?? meta.num_steps ?? DEFAULT_CFM_STEPS;
  if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 2 || steps > 1000) throw new ArgumentError(where, `steps (ODE grid points) must be an integer in [2, 1000], got ${String(steps)}`);
  const tensors = await openTensors(progress.track(src), net.signal);
  return { tensors, config, factor, noisingStep, solver, steps, ema: s.ema };
}

/** Loads one CFM stage (safetensors + config, or a training .ckpt whose EMA weights are preferred). */
export async function loadCfmStage(rt: Runtime, s: CfmStageInput, o: Pick<LoadModelSetOptions, 'dtype' | 'signal' | 'fetch' | 'headers' | 'cache' | 'onProgress'> = {}): Promise<LoadedCfmStage> {
  const p = await prepareCfmStage(s, { fetch: o.fetch, headers: o.headers, cache: o.cache, signal: o.signal }, new ProgressMeter(o.onProgress));
  const cfm = await CfmUNet.load(rt, { config: p.config, weights: p.tensors, ema: p.ema, dtype: o.dtype, signal: o.signal });
  return { cfm, factor: p.factor, noisingStep: p.noisingStep, solver: p.solver, steps: p.steps };
}
