/**
 * AutoencoderKL (the SD VAE, f = 2^(levels−1), 4 latent channels) with seamless tiled decoding and encoding.
 * Reference: https://github.com/huggingface/diffusers/blob/main/src/diffusers/models/autoencoders/autoencoder_kl.py
 *
 * Tiling (REFERENCE.md §6.6):
 * - exact: the layer-synchronous schedule of tiled.ts; equals the untiled network to float rounding. Peak
 *   memory ≈ two copies of the largest activation (held as tiles, none above the buffer cap).
 * - streaming decode (when exact does not fit the budget): post_quant_conv, conv_in and the mid block run
 *   exactly over the whole latent; the up path then runs per output tile on the tile plus a halo of the up
 *   path's receptive field, with GroupNorm statistics recorded on a cheaper pass over a downsampled copy of
 *   the mid-block output. Approximate (the statistics are estimates); reported as `exact: false`. With
 *   `statistics: 'passes'` the statistics are exact instead, from repeated passes as in streaming encode.
 * - streaming encode (when exact does not fit the budget): the first down-path stages (conv_in + down block 0,
 *   down block 1, …) run one stage at a time, per output tile on the tile plus a halo of the stage's
 *   receptive field; each stage's output is kept whole (tiled) and is the next stage's input, and the
 *   remaining stages and the mid block run exactly. A stage with k GroupNorms is passed over k + 1 times:
 *   pass p recomputes the tiles up to its p-th GroupNorm and accumulates that norm's moments over the tiles'
 *   cores (no halo), so every GroupNorm uses whole-image statistics and the result equals the untiled encoder
 *   to float rounding (`exact: true`); the last pass writes the stage's output.
 */
import { loadWeights, type WeightScope } from '../../io/weights.js';
import type { TensorSource } from '../../io/safetensors.js';
import { interpolateBilinear } from '../../ops/resize.js';
import { ArgumentError, OutOfMemoryError, ShapeError, fmtBytes, throwIfAborted } from '../../runtime/errors.js';
import type { Runtime } from '../../runtime/runtime.js';
import type { Tensor } from '../../runtime/tensor.js';
import { Conv2d } from '../../nn/layers.js';
import { vaeKeyRenamer } from '../keys.js';
import { Decoder, Encoder } from './blocks.js';
import { parseAutoencoderKLConfig, type AutoencoderKLConfig } from './config.js';
import { StatsPassEnd, TileExec, TiledAct, copyRect, splitLength } from './tiled.js';
import { groupNormStatsFromMoments } from '../../ops/group-norm.js';

/** Largest tile buffer chosen automatically: WebGPU's default binding limit, so tiles bind on every device. */
export const DEFAULT_MAX_TILE_BYTES = 128 * 2 ** 20;

export interface TilingOptions {
  /**
   * 'auto' (default): untiled when everything fits one buffer, else exact tiling when it fits the memory budget,
   * else streaming. 'exact': only the layer-synchronous schedule (OutOfMemoryError naming the bytes it needs).
   * 'streaming' forces streaming (exact for encode; for decode see `statistics`).
   */
  mode?: 'auto' | 'exact' | 'streaming';
  /** Tile edge in latent pixels (image pixels / downsampling factor). Default: the largest within the buffer cap. */
  tileSize?: number;
  /**
   * Streaming decode only (streaming encode is always exact). 'approximate' (default): GroupNorm statistics of the up path from a pass over a
   * downsampled mid-block output. 'exact': from a full exact pass first (as much memory as exact mode; for
   * verifying the streaming halo). 'passes': exact whole-image statistics in streaming memory, from one pass
   * over the output tiles per up-path GroupNorm (as streaming encode does; 26 passes for the SD decoder, each
   * recomputing the up path to that norm: several times the compute of one decode).
   */
  statistics?: 'approximate' | 'exact' | 'passes';
  /**
   * Streaming only: output tile edge in latent pixels (encode: of every streamed stage). Default: the largest
   * whose working set fits the budget.
   */
  streamTileSize?: number;
  /** Cap on any one tile buffer (default min(device binding limit, 128 MiB)). */
  maxBufferBytes?: number;
}

export interface VaeRunOptions {
  /** 'auto' (default), 'off' (one tile: the plain network), or tiling options. */
  tiling?: 'auto' | 'off' | TilingOptions;
  signal?: AbortSignal;
}

/** How a decode/encode ran. */
export interface TilingReport {
  mode: 'untiled' | 'exact' | 'streaming';
  /** False when GroupNorm statistics were estimated (streaming with approximate statistics). */
  exact: boolean;
  /** Tile edge in latent pixels, and the tile grid at latent resolution. */
  tileSize: number;
  tiles: number;
  /**
   * Streaming: output tiles (encode: summed over the streamed stages), their halo in latent pixels (encode: the
   * largest), and the proxy's downsampling factor (decode).
   */
  streamTiles?: number;
  halo?: number;
  proxyFactor?: number;
  /** Streaming encode: down-path stages streamed, and passes over their tiles (GroupNorms + 1 per stage). */
  streamedStages?: number;
  passes?: number;
  /** Largest single tile/scratch buffer the schedule allocated. */
  maxTileBytes: number;
  /** The schedule's own estimate of its peak (activations only). */
  estimatedBytes: number;
}

export interface AutoencoderKLLoadOptions {
  /** A parsed diffusers config.json, or a preset such as `AutoencoderKLConfig.sd15`. */
  config: unknown;
  /** Weights in diffusers, old-diffusers or LDM naming (bare or inside an SD single-file checkpoint). */
  weights: TensorSource | TensorSource[];
  /** GPU weight storage: 'auto' keeps the file's dtype (F16 stays f16), or force 'f32'/'f16'. */
  dtype?: 'auto' | 'f32' | 'f16';
  /** Load only one half (e.g. the decoder for text-to-image). Default 'all'. */
  parts?: 'all' | 'encoder' | 'decoder';
  signal?: AbortSignal;
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/** One activation shape of a network half: C channels at `scale` pixels per latent pixel. */
interface Site {
  C: number;
  scale: number;
}

/** The SD VAE. Built from a WeightScope with diffusers key names; see `AutoencoderKL.load`. */
export class AutoencoderKL {
  readonly encoder: Encoder | undefined;
  readonly decoder: Decoder | undefined;
  readonly quantConv: Conv2d | undefined;
  readonly postQuantConv: Conv2d | undefined;
  /** Image pixels per latent pixel (8 for SD). */
  readonly downsampleFactor: number;
  readonly latentChannels: number;

  constructor(
    readonly config: AutoencoderKLConfig,
    private readonly weights: WeightScope,
    parts: 'all' | 'encoder' | 'decoder' = 'all',
  ) {
    const c = config;
    const L = c.latent_channels;
    this.downsampleFactor = 2 ** (c.block_out_channels.length - 1);
    this.latentChannels = L;
    if (parts !== 'decoder') {
      this.encoder = new Encoder(weights.pp('encoder'), c);
      this.quantConv = c.use_quant_conv !== false ? new Conv2d(weights.pp('quant_conv'), 2 * L, 2 * L, { kernel: 1 }) : undefined;
    }
    if (parts !== 'encoder') {
      this.postQuantConv = c.use_post_quant_conv !== false ? new Conv2d(weights.pp('post_quant_conv'), L, L, { kernel: 1 }) : undefined;
      this.decoder = new Decoder(weights.pp('decoder'), c);
    }
  }

  /** Loads config + weights (any key dialect, renamed through models/keys.ts); unused weights are a WeightError. */
  static async load(rt: Runtime, o: AutoencoderKLLoadOptions): Promise<AutoencoderKL> {
    const config = parseAutoencoderKLConfig(o.config);
    const parts = o.parts ?? 'all';
    if (parts !== 'all' && parts !== 'encoder' && parts !== 'decoder') throw new ArgumentError('AutoencoderKL.load', `parts must be 'all', 'encoder' or 'decoder', got '${String(parts)}'`);
    const sources = Array.isArray(o.weights) ? o.weights : [o.weights];
    const rename = vaeKeyRenamer(sources.flatMap((s) => s.keys()));
    const wanted = (k: string) =>
      parts === 'all' || (parts === 'encoder' ? k.startsWith('encoder.') || k.startsWith('quant_conv.') : k.startsWith('decoder.') || k.startsWith('post_quant_conv.'));
    const w = await loadWeights(rt, sources, { rename, dtype: o.dtype, filter: wanted, signal: o.signal, onProgress: o.onProgress });
    try {
      const model = new AutoencoderKL(config, w, parts);
      w.assertAllUsed('AutoencoderKL');
      return model;
    } catch (e) {
      w.dispose();
      throw e;
    }
  }

  /** Latent scale factor from the config (0.18215 for SD-1.x): scaled = (z − shift) · scalingFactor. */
  get scalingFactor(): number {
    return this.config.scaling_factor;
  }
  get shiftFactor(): number {
    return this.config.shift_factor ?? 0;
  }

  /** GPU bytes of the weights. */
  get weightBytes(): number {
    return this.weights.bytes;
  }

  dispose(): void {
    this.weights.dispose();
  }

  // ------------------------------------------------------------------------------------------- decode

  /** z [N, latent, h, w] (UNscaled: z_scaled / scalingFactor + shift) → image [N, out, f·h, f·w], not clamped. */
  async decode(z: Tensor, o: VaeRunOptions = {}): Promise<Tensor> {
    return (await this.decodeWithReport(z, o)).image;
  }

  /** decode(), plus how it was tiled. */
  async decodeWithReport(z: Tensor, o: VaeRunOptions = {}): Promise<{ image: Tensor; report: TilingReport }> {
    const dec = this.decoder;
    if (!dec) throw new ArgumentError('AutoencoderKL.decode', 'the decoder was not loaded (parts: encoder)');
    const op = 'AutoencoderKL.decode';
    if (typeof z !== 'object' || z === null || !Array.isArray(z.shape)) throw new ShapeError(op, `z must be a [N, ${this.latentChannels}, h, w] tensor, got ${z === null ? 'null' : typeof z}`);
    if (z.shape.length !== 4) throw new ShapeError(op, `z must be [N, ${this.latentChannels}, h, w], got [${z.shape}]`);
    const [N, C, h, w] = z.shape as [number, number, number, number];
    if (C !== this.latentChannels) throw new ShapeError(op, `z has ${C} channels, the VAE's latent has ${this.latentChannels} (z [${z.shape}])`);
    if (N < 1 || h < 1 || w < 1) throw new ShapeError(op, `z [${z.shape}] is empty`);
    if (z.dtype !== 'f32') throw new ShapeError(op, `z must be f32, got ${z.dtype}`);
    const rt = z.rt;
    return this.withTileRetry(rt, 'decode', N, h, w, o, (plan, tiling) => this.decodePlanned(dec, z, plan, tiling, o.signal));
  }

  private decodePlanned(dec: Decoder, z: Tensor, plan: TilingPlan, tiling: VaeRunOptions['tiling'], signal: AbortSignal | undefined): Promise<{ image: Tensor; report: TilingReport }> {
    const rt = z.rt;
    return rt.scopeAsync(async () => {
      const ex = new TileExec(rt, {}, signal);
      let x = this.split(ex, z, plan.T);
      if (this.postQuantConv) x = await ex.conv(this.postQuantConv, x, { consume: true });
      x = await dec.head(ex, x); // [N, C_top, h, w], exact
      let y: TiledAct;
      const report: TilingReport = { mode: plan.mode, exact: true, tileSize: plan.T, tiles: x.count, maxTileBytes: 0, estimatedBytes: plan.estimatedBytes };
      if (plan.mode !== 'streaming') {
        y = await dec.upPath(ex, x);
      } else {
        const s = await this.decodeStreaming(ex, dec, x, plan, tiling);
        y = s.y;
        Object.assign(report, s.report);
      }
      const image = this.assemble(ex, y);
      report.maxTileBytes = ex.maxTileBytes;
      return { image, report };
    });
  }

  /**
   * The up path per output tile. Each output tile (T latent px) is decoded from the mid-block output over the
   * tile plus `halo` latent px on every side (the up path's receptive field), as a sub-image tiled layer by
   * layer; its core is pasted into the image. GroupNorm statistics come from `record` (see TilingOptions).
   */
  private async decodeStreaming(
    ex: TileExec,
    dec: Decoder,
    mid: TiledAct,
    plan: TilingPlan,
    tiling: VaeRunOptions['tiling'],
  ): Promise<{ y: TiledAct; report: Partial<TilingReport> }> {
    const rt = ex.rt;
    const o = typeof tiling === 'object' ? tiling : {};
    const { N, H: h, W: w } = mid;
    const f = this.downsampleFactor;
    const record = new Map<string, Tensor>();
    const halo = this.upPathHalo();
    let proxyFactor = 1;
    const recEx = new TileExec(rt, { record }, ex.signal);
    if (o.statistics === 'exact') {
      const copy = ex.regrid(mid, { y0: 0, y1: h, x0: 0, x1: w }, mid.ys, mid.xs);
      (await dec.upPath(recEx, copy)).dispose();
    } else if (o.statistics !== 'passes') {
      proxyFactor = plan.proxyFactor;
      const tiles: Tensor[] = [];
      const ys = [0];
      const xs = [0];
      for (let i = 0; i < mid.rows; i++) {
        for (let j = 0; j < mid.cols; j++) {
          const t = mid.tile(i, j);
          const ph = Math.max(1, Math.round(t.shape[2]! / proxyFactor));
          const pw = Math.max(1, Math.round(t.shape[3]! / proxyFactor));
          if (j === 0) ys.push(ys[i]! + ph);
          if (i === 0) xs.push(xs[j]! + pw);
          tiles.push(interpolateBilinear(rt, t, [ys[i + 1]! - ys[i]!, xs[j + 1]! - xs[j]!])); // box-like average
        }
      }
      (await dec.upPath(recEx, new TiledAct(N, mid.C, ys, xs, tiles))).dispose();
    }
    ex.maxTileBytes = Math.max(ex.maxTileBytes, recEx.maxTileBytes);
    const outC = this.config.out_channels;
    const image = rt.empty([N, outC, f * h, f * w], 'f32', 'vae.image');
    const T = plan.streamT;
    const oys = splitLength(h, T);
    const oxs = splitLength(w, T);
    // 'passes': as many passes as the up path has GroupNorms whose statistics are not in `record` yet, plus
    // the one that writes the image (see streaming encode); otherwise that one pass.
    let passes = 0;
    let maxTileBytes = 0;
    try {
      for (;;) {
        const moments = new Map<string, Tensor[]>(); // kept outside the tiles' scopes until merged
        let ended: StatsPassEnd | undefined;
        try {
          for (let i = 0; i + 1 < oys.length; i++) {
            for (let j = 0; j + 1 < oxs.length; j++) {
              throwIfAborted(ex.signal, 'AutoencoderKL.decode');
              const core = { y0: oys[i]!, y1: oys[i + 1]!, x0: oxs[j]!, x1: oxs[j + 1]! };
              const r = { y0: Math.max(0, core.y0 - halo), y1: Math.min(h, core.y1 + halo), x0: Math.max(0, core.x0 - halo), x1: Math.min(w, core.x1 + halo) };
              try {
                await rt.scopeAsync(async () => {
                  const sub = ex.regrid(mid, r, splitLength(r.y1 - r.y0, plan.T), splitLength(r.x1 - r.x0, plan.T));
                  const tileEx = new TileExec(rt, o.statistics === 'passes' ? { replay: record, collect: { window: core, baseH: sub.H, moments } } : { replay: record }, ex.signal);
                  let y: TiledAct;
                  try {
                    y = await dec.upPath(tileEx, sub); // image resolution, origin f·r
                  } finally {
                    maxTileBytes = Math.max(maxTileBytes, tileEx.maxTileBytes);
                  }
                  if (ended) throw new Error('AutoencoderKL.decode: output tiles disagree on the pass (internal error)');
                  this.paste(ex, y, image, { y0: f * core.y0, y1: f * core.y1, x0: f * core.x0, x1: f * core.x1 });
                  y.dispose();
                });
              } catch (e) {
                if (!(e instanceof StatsPassEnd)) throw e;
                ended = e;
              }
              await rt.sync(); // bounds the recorded work and lets pooled buffers be reused
            }
          }
          passes++;
          if (ended) record.set(ended.key, rt.keep(groupNormStatsFromMoments(rt, moments.get(ended.key)!, ended.eps)));
        } finally {
          for (const list of moments.values()) for (const m of list) m.dispose();
        }
        if (!ended) break;
      }
    } finally {
      for (const t of record.values()) t.dispose();
    }
    ex.maxTileBytes = Math.max(ex.maxTileBytes, maxTileBytes);
    mid.dispose();
    const y = new TiledAct(N, outC, [0, f * h], [0, f * w], [image]);
    const exact = o.statistics === 'exact' || o.statistics === 'passes';
    return {
      y,
      report: { exact, streamTiles: (oys.length - 1) * (oxs.length - 1), halo, proxyFactor, ...(o.statistics === 'passes' ? { passes } : {}) },
    };
  }

  /** Latent pixels the up path (up blocks + conv_out) sees beyond a tile: Σ conv reach / scale, rounded up. */
  upPathHalo(): number {
    const c = this.config;
    const n = c.block_out_channels.length;
    let rf = 0;
    for (let i = 0; i < n; i++) {
      rf += (2 * (c.layers_per_block + 1)) / 2 ** i; // two 3×3 convs per resnet
      if (i < n - 1) rf += 1 / 2 ** (i + 1); // upsample conv at the next resolution
    }
    rf += 1 / 2 ** (n - 1); // conv_out
    return Math.ceil(rf);
  }

  // ------------------------------------------------------------------------------------------- encode

  /**
   * image [N, in, H, W] in [−1, 1], H and W multiples of the downsampling factor → the posterior
   * { mean, logvar } [N, latent, H/f, W/f]; logvar clamped to [−30, 20]. mean is the mode (unscaled latent).
   */
  async encode(image: Tensor, o: VaeRunOptions = {}): Promise<{ mean: Tensor; logvar: Tensor }> {
    const r = await this.encodeWithReport(image, o);
    return { mean: r.mean, logvar: r.logvar };
  }

  async encodeWithReport(image: Tensor, o: VaeRunOptions = {}): Promise<{ mean: Tensor; logvar: Tensor; report: TilingReport }> {
    const enc = this.encoder;
    const op = 'AutoencoderKL.encode';
    if (!enc) throw new ArgumentError(op, 'the encoder was not loaded (parts: decoder)');
    const inC = this.config.in_channels;
    const f = this.downsampleFactor;
    if (typeof image !== 'object' || image === null || !Array.isArray(image.shape)) throw new ShapeError(op, `image must be a [N, ${inC}, H, W] tensor, got ${image === null ? 'null' : typeof image}`);
    if (image.shape.length !== 4) throw new ShapeError(op, `image must be [N, ${inC}, H, W], got [${image.shape}]`);
    const [N, C, H, W] = image.shape as [number, number, number, number];
    if (C !== inC) throw new ShapeError(op, `image has ${C} channels, the encoder takes ${inC} (image [${image.shape}])`);
    if (N < 1 || H < 1 || W < 1) throw new ShapeError(op, `image [${image.shape}] is empty`);
    if (H % f || W % f) throw new ShapeError(op, `image size ${H}×${W} is not a multiple of the downsampling factor ${f}`);
    if (image.dtype !== 'f32') throw new ShapeError(op, `image must be f32, got ${image.dtype}`);
    const rt = image.rt;
    const h = H / f;
    const w = W / f;
    return this.withTileRetry(rt, 'encode', N, h, w, o, (plan) => this.encodePlanned(enc, image, plan, o.signal));
  }

  private encodePlanned(enc: Encoder, image: Tensor, plan: TilingPlan, signal: AbortSignal | undefined): Promise<{ mean: Tensor; logvar: Tensor; report: TilingReport }> {
    const rt = image.rt;
    const f = this.downsampleFactor;
    const [N, , H, W] = image.shape as [number, number, number, number];
    const h = H / f;
    const w = W / f;
    return rt.scopeAsync(async () => {
      const ex = new TileExec(rt, {}, signal);
      const report: TilingReport = { mode: plan.mode, exact: true, tileSize: plan.T, tiles: 0, maxTileBytes: 0, estimatedBytes: plan.estimatedBytes };
      let x: TiledAct;
      let from = 0;
      if (plan.encodeStages) {
        const s = await this.encodeStreaming(ex, enc, image, plan.encodeStages);
        x = s.x;
        from = plan.encodeStages.length;
        Object.assign(report, s.report);
      } else {
        x = this.split(ex, image, plan.T, f);
      }
      report.tiles = x.count;
      x = await enc.downPath(ex, x, from); // [N, C_top, h, w]
      x = await enc.head(ex, x); // [N, 2·latent, h, w]
      if (this.quantConv) x = await ex.conv(this.quantConv, x, { consume: true });
      const L = this.latentChannels;
      const mean = rt.empty([N, L, h, w], 'f32', 'vae.posterior.mean');
      const logvar = rt.empty([N, L, h, w], 'f32', 'vae.posterior.logvar');
      for (let i = 0; i < x.rows; i++) {
        for (let j = 0; j < x.cols; j++) {
          const t = x.tile(i, j);
          const at = { rows: t.shape[2]!, cols: t.shape[3]!, sy: 0, sx: 0, dy: x.ys[i]!, dx: x.xs[j]!, channels: L };
          copyRect(rt, t, mean, at);
          copyRect(rt, t, logvar, { ...at, srcC0: L, clamp: [-30, 20] });
        }
      }
      x.dispose();
      report.maxTileBytes = Math.max(report.maxTileBytes, ex.maxTileBytes);
      return { mean, logvar, report };
    });
  }

  /**
   * Streams the first `stages.length` down-path stages (see the header): for each, passes over its output
   * tiles until every GroupNorm's whole-image statistics are known, then a last pass writes the stage output,
   * kept as tiles of `outT` latent px. Returns the last stage's output (the input of the exact rest).
   */
  private async encodeStreaming(ex: TileExec, enc: Encoder, image: Tensor, stages: readonly EncodeStagePlan[]): Promise<{ x: TiledAct; report: Partial<TilingReport> }> {
    const rt = ex.rt;
    const f = this.downsampleFactor;
    const ch = this.config.block_out_channels;
    const [N, inC, H, W] = image.shape as [number, number, number, number];
    const h = H / f;
    const w = W / f;
    let cur = new TiledAct(N, inC, [0, H], [0, W], [image], 0, 0, true); // borrowed
    let passes = 0;
    let streamTiles = 0;
    let maxTileBytes = 0;
    try {
      for (let i = 0; i < stages.length; i++) {
        const { S, T, halo, outT } = stages[i]!;
        const scaleIn = f / 2 ** i; // stage input pixels per latent pixel
        const scaleOut = i < ch.length - 1 ? scaleIn / 2 : scaleIn;
        const oys = splitLength(h, S);
        const oxs = splitLength(w, S);
        const replay = new Map<string, Tensor>();
        let out: TiledAct | undefined;
        try {
          for (;;) {
            const moments = new Map<string, Tensor[]>(); // kept outside the tiles' scopes until merged
            let ended: StatsPassEnd | undefined;
            let completed = 0;
            try {
              for (let a = 0; a + 1 < oys.length; a++) {
                for (let b = 0; b + 1 < oxs.length; b++) {
                  throwIfAborted(ex.signal, 'AutoencoderKL.encode');
                  const core = { y0: oys[a]!, y1: oys[a + 1]!, x0: oxs[b]!, x1: oxs[b + 1]! }; // latent px
                  const r = { y0: Math.max(0, core.y0 - halo), y1: Math.min(h, core.y1 + halo), x0: Math.max(0, core.x0 - halo), x1: Math.min(w, core.x1 + halo) };
                  const at = (q: typeof r, k: number) => ({ y0: k * q.y0, y1: k * q.y1, x0: k * q.x0, x1: k * q.x1 });
                  try {
                    await rt.scopeAsync(async () => {
                      const sub = ex.regrid(cur, at(r, scaleIn), splitLength(r.y1 - r.y0, T, scaleIn), splitLength(r.x1 - r.x0, T, scaleIn));
                      const stageEx = new TileExec(rt, { replay, collect: { window: at(core, scaleIn), baseH: sub.H, moments } }, ex.signal);
                      let y: TiledAct;
                      try {
                        y = await enc.stage(stageEx, sub, i);
                      } finally {
                        maxTileBytes = Math.max(maxTileBytes, stageEx.maxTileBytes);
                      }
                      out ??= this.emptyTiles(ex, N, ch[i]!, splitLength(h, outT, scaleOut), splitLength(w, outT, scaleOut));
                      this.pasteTiles(ex, y, out, at(core, scaleOut));
                      y.dispose();
                    });
                    completed++;
                  } catch (e) {
                    if (!(e instanceof StatsPassEnd)) throw e;
                    ended = e;
                  }
                  if (ended && completed > 0) throw new Error(`AutoencoderKL.encode: stage ${i} tiles disagree on the pass (internal error)`);
                  await rt.sync(); // bounds the recorded work
                }
              }
              passes++;
              if (ended) replay.set(ended.key, rt.keep(groupNormStatsFromMoments(rt, moments.get(ended.key)!, ended.eps)));
            } finally {
              for (const list of moments.values()) for (const m of list) m.dispose();
            }
            if (!ended) break;
          }
        } catch (e) {
          out?.dispose();
          throw e;
        } finally {
          for (const t of replay.values()) t.dispose();
        }
        cur.dispose();
        cur = out!;
        streamTiles += (oys.length - 1) * (oxs.length - 1);
      }
    } catch (e) {
      cur.dispose();
      throw e;
    }
    ex.maxTileBytes = Math.max(ex.maxTileBytes, maxTileBytes);
    for (let i = 0; i < cur.rows; i++) for (let j = 0; j < cur.cols; j++) rt.adopt(cur.tile(i, j)); // back into the caller's scope
    const halo = Math.max(...stages.map((s) => s.halo));
    return { x: cur, report: { streamTiles, halo, streamedStages: stages.length, passes } };
  }

  /** Uninitialised tiles [N, C, ·, ·] on the grid (ys, xs), outside any scope (the caller disposes them). */
  private emptyTiles(ex: TileExec, N: number, C: number, ys: number[], xs: number[]): TiledAct {
    const rt = ex.rt;
    const tiles: Tensor[] = [];
    try {
      for (let i = 0; i + 1 < ys.length; i++) {
        for (let j = 0; j + 1 < xs.length; j++) {
          const t = rt.keep(rt.empty([N, C, ys[i + 1]! - ys[i]!, xs[j + 1]! - xs[j]!], 'f32', 'vae.stage'));
          tiles.push(t);
          ex.note(t);
        }
      }
    } catch (e) {
      for (const t of tiles) t.dispose();
      throw e;
    }
    return new TiledAct(N, C, ys, xs, tiles);
  }

  // ------------------------------------------------------------------------------------------- planning

  /** Activation shapes of each half, in latent-pixel units. */
  private sites(which: 'decode' | 'encode'): Site[] {
    const c = this.config;
    const ch = c.block_out_channels;
    const n = ch.length;
    const out: Site[] = [];
    if (which === 'decode') {
      const rev = [...ch].reverse();
      out.push({ C: c.latent_channels, scale: 1 }, { C: rev[0]!, scale: 1 });
      rev.forEach((co, i) => {
        out.push({ C: i === 0 ? rev[0]! : rev[i - 1]!, scale: 2 ** i }, { C: co, scale: 2 ** i });
        if (i < n - 1) out.push({ C: co, scale: 2 ** (i + 1) });
      });
      out.push({ C: c.out_channels, scale: 2 ** (n - 1) });
    } else {
      for (let i = 0; i < n; i++) out.push(...this.stageSites(i));
      out.push({ C: 2 * c.latent_channels, scale: 1 });
    }
    return out;
  }

  /** Activation shapes of encoder stage i (conv_in +) down block i, in latent-pixel units. */
  private stageSites(i: number): Site[] {
    const c = this.config;
    const ch = c.block_out_channels;
    const scale = 2 ** (ch.length - 1 - i);
    const out: Site[] = i === 0 ? [{ C: c.in_channels, scale }, { C: ch[0]!, scale }] : [];
    out.push({ C: i === 0 ? ch[0]! : ch[i - 1]!, scale }, { C: ch[i]!, scale });
    if (i < ch.length - 1) out.push({ C: ch[i]!, scale: scale / 2 });
    return out;
  }

  /** footprintOf() of a whole half (the mid block at latent resolution included). */
  private footprint(which: 'decode' | 'encode', N: number, h: number, w: number, T: number): { tile: number; peak: number } {
    const top = this.config.block_out_channels[this.config.block_out_channels.length - 1]!;
    return footprintOf(this.sites(which), N, h, w, T, top);
  }

  /**
   * Plans the tiling and runs `attempt`. Out of memory while running (a buffer the GPU could not allocate, or an
   * estimate that was low): everything the attempt made is freed; retry with half the tile edge(s) while a smaller
   * tile exists. Exact tiling gives the same result at any tile size; planTiling throws when nothing smaller fits.
   */
  private async withTileRetry<T>(
    rt: Runtime,
    which: 'decode' | 'encode',
    N: number,
    h: number,
    w: number,
    o: VaeRunOptions,
    attempt: (plan: TilingPlan, tiling: VaeRunOptions['tiling']) => Promise<T>,
  ): Promise<T> {
    const op = `AutoencoderKL.${which}`;
    let tiling = o.tiling;
    let plan = this.planTiling(rt, which, N, h, w, tiling);
    throwIfAborted(o.signal, op);
    for (;;) {
      try {
        return await attempt(plan, tiling);
      } catch (e) {
        if (!(e instanceof OutOfMemoryError) || tiling === 'off' || (plan.T <= 1 && plan.streamT <= 1)) throw e;
        const base: TilingOptions = typeof tiling === 'object' ? tiling : {};
        tiling = {
          ...base,
          tileSize: Math.max(1, Math.floor(plan.T / 2)),
          ...(plan.mode === 'streaming' ? { mode: 'streaming' as const, streamTileSize: Math.max(1, Math.floor(plan.streamT / 2)) } : {}),
        };
        plan = this.planTiling(rt, which, N, h, w, tiling);
        throwIfAborted(o.signal, op);
      }
    }
  }

  /**
   * How decode/encode would tile an input of N × h × w latent pixels under the runtime's current budget and
   * limits, and the activation bytes it expects to need; throws the errors the call would throw.
   */
  planTiling(rt: Runtime, which: 'decode' | 'encode', N: number, h: number, w: number, tiling: VaeRunOptions['tiling'] = 'auto'): TilingPlan {
    const where = `AutoencoderKL.${which}`;
    if (tiling !== 'auto' && tiling !== 'off' && (typeof tiling !== 'object' || tiling === null)) {
      throw new ArgumentError(where, `tiling must be 'auto', 'off' or an options object, got ${JSON.stringify(tiling)}`);
    }
    if (tiling === 'off') {
      return { mode: 'untiled', T: Math.max(h, w), streamT: 0, proxyFactor: 1, estimatedBytes: this.footprint(which, N, h, w, Math.max(h, w)).peak };
    }
    const o: TilingOptions = tiling === 'auto' ? {} : tiling;
    const mode = o.mode ?? 'auto';
    if (mode !== 'auto' && mode !== 'exact' && mode !== 'streaming') throw new ArgumentError(where, `tiling.mode must be 'auto', 'exact' or 'streaming', got '${String(mode)}'`);
    if (o.statistics !== undefined && o.statistics !== 'approximate' && o.statistics !== 'exact' && o.statistics !== 'passes') {
      throw new ArgumentError(where, `tiling.statistics must be 'approximate', 'exact' or 'passes', got '${String(o.statistics)}'`);
    }
    if (o.tileSize !== undefined && !(Number.isInteger(o.tileSize) && o.tileSize >= 1)) {
      throw new ArgumentError(where, `tiling.tileSize must be a positive integer (latent pixels), got ${o.tileSize}`);
    }
    if (o.streamTileSize !== undefined && !(Number.isInteger(o.streamTileSize) && o.streamTileSize >= 1)) {
      throw new ArgumentError(where, `tiling.streamTileSize must be a positive integer (latent pixels), got ${o.streamTileSize}`);
    }
    if (o.maxBufferBytes !== undefined && !(o.maxBufferBytes > 0)) throw new ArgumentError(where, `tiling.maxBufferBytes must be > 0, got ${o.maxBufferBytes}`);
    const cap = Math.min(rt.allocator.maxBufferBytes, o.maxBufferBytes ?? DEFAULT_MAX_TILE_BYTES);
    const largestT = (H: number, W: number): number => largestTileFor(this.sites(which), N, H, W, cap);
    const T = o.tileSize ?? largestT(h, w);
    if (T === 0) throw new OutOfMemoryError(this.footprint(which, N, h, w, 1).tile, cap, `${where}: even a 1-pixel tile exceeds the ${fmtBytes(cap)} buffer cap (batch ${N})`);
    const available = rt.allocator.budgetBytes - rt.memory().liveBytes;
    const peak = this.footprint(which, N, h, w, T).peak;
    const tiled = T < Math.max(h, w) ? 'exact' : 'untiled';
    if (mode !== 'streaming' && (peak <= available || mode === 'exact')) {
      if (peak > available) {
        throw new OutOfMemoryError(peak, available, `${where} of a ${h}×${w} latent (batch ${N}) needs about ${fmtBytes(peak)} of activations with exact tiling, over the ${fmtBytes(rt.allocator.budgetBytes)} budget`);
      }
      return { mode: tiled, T, streamT: 0, proxyFactor: 1, estimatedBytes: peak };
    }
    if (which === 'encode') return this.planEncodeStreaming(N, h, w, o, cap, available, rt.allocator.budgetBytes);
    // Streaming: the mid-block output and the image stay resident; the up path runs one output tile at a time.
    const f = this.downsampleFactor;
    const top = this.config.block_out_channels[this.config.block_out_channels.length - 1]!;
    const midBytes = N * top * h * w * 4;
    const resident = midBytes + N * this.config.out_channels * h * w * f * f * 4;
    const headPeak = 4 * midBytes + 4 * this.footprint(which, N, h, w, T).tile;
    const halo = this.upPathHalo();
    const subPlan = (sh: number, sw: number): { t: number; peak: number } => {
      const t = o.tileSize ?? largestT(sh, sw);
      return { t, peak: t === 0 ? Infinity : this.footprint(which, N, sh, sw, t).peak };
    };
    let streamT = 0;
    for (let S = o.streamTileSize ?? Math.max(h, w); S >= 1; S = S > 8 ? S - Math.max(1, Math.floor(S / 8)) : S - 1) {
      if (resident + subPlan(Math.min(h, S + 2 * halo), Math.min(w, S + 2 * halo)).peak <= available) {
        streamT = S;
        break;
      }
    }
    if (streamT === 0 || headPeak > available) {
      const need = Math.max(headPeak, resident + subPlan(Math.min(h, 1 + 2 * halo), Math.min(w, 1 + 2 * halo)).peak);
      throw new OutOfMemoryError(need, available, `${where} of a ${h}×${w} latent (batch ${N}) does not fit the ${fmtBytes(rt.allocator.budgetBytes)} budget even when streaming`);
    }
    // Proxy for the statistics: the smallest downsampling whose exact pass fits next to the resident tensors.
    let proxyFactor = 2;
    while (proxyFactor < Math.max(h, w) && resident + subPlan(Math.ceil(h / proxyFactor), Math.ceil(w / proxyFactor)).peak > available) proxyFactor *= 2;
    const sh = Math.min(h, streamT + 2 * halo);
    const sw = Math.min(w, streamT + 2 * halo);
    const { t: subT, peak: subPeak } = subPlan(sh, sw);
    return { mode: 'streaming', T: subT, streamT, proxyFactor, estimatedBytes: Math.max(headPeak, resident + subPeak) };
  }

  /**
   * Streaming encode: stream the fewest leading stages after which the rest (remaining stages and the mid
   * block, layer-synchronous) fits; each streamed stage gets the largest output tile whose working set (its
   * input and output kept whole, plus one tile's sub-image run layer-synchronously) fits.
   */
  private planEncodeStreaming(N: number, h: number, w: number, o: TilingOptions, cap: number, available: number, budget: number): TilingPlan {
    const where = 'AutoencoderKL.encode';
    const c = this.config;
    const ch = c.block_out_channels;
    const n = ch.length;
    const f = this.downsampleFactor;
    const top = ch[n - 1]!;
    const restSites = (s: number): Site[] => [...Array.from({ length: n - s }, (_, k) => this.stageSites(s + k)).flat(), { C: top, scale: 1 }, { C: 2 * c.latent_channels, scale: 1 }];
    const fail = (need: number, why: string) =>
      new OutOfMemoryError(need, available, `${where} of a ${h}×${w} latent (batch ${N}) does not fit the ${fmtBytes(budget)} budget even when streaming: ${why}`);
    let streamed = 0;
    let T = 0;
    let restPeak = Infinity;
    for (let s = 1; s <= n; s++) {
      T = o.tileSize ?? largestTileFor(restSites(s), N, h, w, cap);
      restPeak = T === 0 ? Infinity : footprintOf(restSites(s), N, h, w, T, top).peak;
      if (restPeak <= available) {
        streamed = s;
        break;
      }
    }
    if (streamed === 0) throw fail(restPeak, `the mid block at latent resolution needs about ${fmtBytes(restPeak)}`);
    const stages: EncodeStagePlan[] = [];
    let estimate = restPeak;
    for (let i = 0; i < streamed; i++) {
      const sites = this.stageSites(i);
      const scaleIn = f / 2 ** i;
      const scaleOut = i < n - 1 ? scaleIn / 2 : scaleIn;
      const inBytes = i === 0 ? 0 : N * ch[i - 1]! * h * w * scaleIn * scaleIn * 4; // the image is the caller's (already live)
      const outBytes = N * ch[i]! * h * w * scaleOut * scaleOut * 4;
      // Reach of the stage in its input pixels: conv_in, two 3×3 convs per resnet, the stride-2 conv (2 px).
      const reach = (i === 0 ? 1 : 0) + 2 * c.layers_per_block + (i < n - 1 ? 2 : 0);
      const halo = Math.ceil(reach / scaleIn);
      const outSite = [{ C: ch[i]!, scale: scaleOut }];
      const outT = i + 1 === streamed ? T : o.tileSize ?? largestTileFor(outSite, N, h, w, cap);
      let plan: EncodeStagePlan | undefined;
      let peak = Infinity;
      for (let S = o.streamTileSize ?? Math.max(h, w); S >= 1; S = S > 8 ? S - Math.max(1, Math.floor(S / 8)) : S - 1) {
        const sh = Math.min(h, S + 2 * halo);
        const sw = Math.min(w, S + 2 * halo);
        const t = o.tileSize ?? largestTileFor(sites, N, sh, sw, cap);
        if (t === 0 || outT === 0) continue;
        // Moments kept between passes: one [N, G, 3] (≥ 256 B) per sub-tile per output tile, twice while merged.
        const pieces = Math.ceil(h / S) * Math.ceil(w / S) * (Math.ceil(sh / t) + 1) * (Math.ceil(sw / t) + 1);
        const momentBytes = 2 * pieces * Math.max(256, Math.ceil((N * c.norm_num_groups * 12) / 256) * 256);
        peak = inBytes + outBytes + footprintOf(sites, N, sh, sw, t).peak + momentBytes;
        if (peak <= available) {
          plan = { S, T: t, halo, outT };
          break;
        }
      }
      if (!plan) throw fail(peak, `stage ${i} keeps ${fmtBytes(inBytes + outBytes)} of input and output`);
      stages.push(plan);
      estimate = Math.max(estimate, peak);
    }
    return { mode: 'streaming', T, streamT: Math.min(...stages.map((s) => s.S)), proxyFactor: 1, estimatedBytes: estimate, encodeStages: stages };
  }

  /** `x` as a TiledAct of tiles ≤ T latent px (`unit` image px per latent px); the caller's tensor is borrowed. */
  private split(ex: TileExec, x: Tensor, T: number, unit = 1): TiledAct {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const whole = new TiledAct(N, C, [0, H], [0, W], [x], 0, 0, true);
    if (T * unit >= H && T * unit >= W) return whole;
    return ex.regrid(whole, { y0: 0, y1: H, x0: 0, x1: W }, splitLength(H / unit, T, unit), splitLength(W / unit, T, unit));
  }

  /** The tiles of y as one tensor (y is consumed). */
  private assemble(ex: TileExec, y: TiledAct): Tensor {
    if (y.count === 1) {
      const t = y.tile(0, 0);
      return t;
    }
    const out = ex.rt.empty([y.N, y.C, y.H, y.W], 'f32', 'vae.image');
    this.paste(ex, y, out, { y0: y.oy, y1: y.oy + y.H, x0: y.ox, x1: y.ox + y.W });
    y.dispose();
    return out;
  }

  /** Copies the part of y (placed at its origin) inside `r` (image coordinates) into `dst` at the same place. */
  private paste(ex: TileExec, y: TiledAct, dst: Tensor, r: { y0: number; y1: number; x0: number; x1: number }): void {
    for (let i = 0; i < y.rows; i++) {
      for (let j = 0; j < y.cols; j++) {
        const ty0 = y.oy + y.ys[i]!;
        const tx0 = y.ox + y.xs[j]!;
        const y0 = Math.max(r.y0, ty0);
        const y1 = Math.min(r.y1, y.oy + y.ys[i + 1]!);
        const x0 = Math.max(r.x0, tx0);
        const x1 = Math.min(r.x1, y.ox + y.xs[j + 1]!);
        if (y1 <= y0 || x1 <= x0) continue;
        copyRect(ex.rt, y.tile(i, j), dst, { rows: y1 - y0, cols: x1 - x0, sy: y0 - ty0, sx: x0 - tx0, dy: y0, dx: x0 });
      }
    }
  }

  /** Copies the part of y (placed at its origin) inside `r` into the tiles of `dst` (same resolution, origin 0). */
  private pasteTiles(ex: TileExec, y: TiledAct, dst: TiledAct, r: { y0: number; y1: number; x0: number; x1: number }): void {
    for (let a = 0; a < y.rows; a++) {
      for (let b = 0; b < y.cols; b++) {
        const ty0 = y.oy + y.ys[a]!;
        const tx0 = y.ox + y.xs[b]!;
        for (let i = 0; i < dst.rows; i++) {
          for (let j = 0; j < dst.cols; j++) {
            const y0 = Math.max(r.y0, ty0, dst.ys[i]!);
            const y1 = Math.min(r.y1, y.oy + y.ys[a + 1]!, dst.ys[i + 1]!);
            const x0 = Math.max(r.x0, tx0, dst.xs[j]!);
            const x1 = Math.min(r.x1, y.ox + y.xs[b + 1]!, dst.xs[j + 1]!);
            if (y1 <= y0 || x1 <= x0) continue;
            copyRect(ex.rt, y.tile(a, b), dst.tile(i, j), { rows: y1 - y0, cols: x1 - x0, sy: y0 - ty0, sx: x0 - tx0, dy: y0 - dst.ys[i]!, dx: x0 - dst.xs[j]! });
          }
        }
      }
    }
  }
}

/**
 * Largest tile buffer (with a one-pixel halo) for latent tile edge T over `sites`, and the peak estimate of a
 * layer-synchronous run over an h × w latent: two activations (a layer's input and output) plus a few tiles
 * in flight; with `midC` channels of mid block at latent resolution, which also holds K and V.
 */
function footprintOf(sites: readonly Site[], N: number, h: number, w: number, T: number, midC = 0): { tile: number; peak: number } {
  let tile = 0;
  let full = 0;
  for (const { C, scale } of sites) {
    tile = Math.max(tile, N * C * (Math.min(T, h) * scale + 2) * (Math.min(T, w) * scale + 2) * 4);
    full = Math.max(full, N * C * h * w * scale * scale * 4);
  }
  const mid = N * midC * h * w * 4;
  return { tile, peak: Math.max(2 * full, 4 * mid) + 4 * tile };
}

/** Largest T ≤ max(h, w) whose footprintOf(sites).tile fits `cap` (0 when even T = 1 does not). */
function largestTileFor(sites: readonly Site[], N: number, h: number, w: number, cap: number): number {
  let lo = 1;
  let hi = Math.max(h, w);
  if (footprintOf(sites, N, h, w, lo).tile > cap) return 0;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (footprintOf(sites, N, h, w, mid).tile <= cap) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** One streamed encoder stage (latent pixels): output tile edge S, sub-image tile edge T, halo, output kept as tiles of outT. */
export interface EncodeStagePlan {
  S: number;
  T: number;
  halo: number;
  outT: number;
}

/** A tiling decision (see `AutoencoderKL.planTiling`). */
export interface TilingPlan {
  mode: 'untiled' | 'exact' | 'streaming';
  /** Tile edge (latent px) of the layer-synchronous schedule (of each sub-image when streaming). */
  T: number;
  /** Streaming: output tile edge (latent px). */
  streamT: number;
  proxyFactor: number;
  estimatedBytes: number;
  /** Streaming encode: the stages streamed before the exact rest (which runs at tile edge T). */
  encodeStages?: EncodeStagePlan[];
}
