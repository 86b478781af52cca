/**
 * Layer-synchronous tiled execution for the VAE (REFERENCE.md §6.6(c)). An activation is a `TiledAct`: a grid
 * of tiles, each its own buffer. A 3×3 convolution gathers its tile plus a one-pixel halo from the
 * neighbouring tiles into a scratch buffer (zero padding only where the tile meets the image border), then
 * runs the ordinary conv2d on it; GroupNorm statistics are merged from per-tile moments, so every tile is
 * normalised with the statistics of the whole image. The result equals the untiled network up to float
 * rounding. One tile is the untiled network.
 */
import tileCopyWgsl from '../../../shaders/vae-tile-copy.wgsl';
import type { Conv2d, GroupNorm, Linear } from '../../nn/layers.js';
import { multiHeadAttention } from '../../ops/attention.js';
import { conv2d } from '../../ops/conv2d.js';
import { add } from '../../ops/elementwise.js';
import { groupNorm, groupNormMoments, groupNormStatsFromMoments } from '../../ops/group-norm.js';
import { transpose } from '../../ops/transpose.js';
import { throwIfAborted } from '../../runtime/errors.js';
import type { Runtime } from '../../runtime/runtime.js';
import type { Tensor } from '../../runtime/tensor.js';

const WG_SIZE = 256;

/** A GroupNorm layer with the checkpoint key it was loaded from (names its statistics for record/replay). */
export interface NamedNorm {
  readonly layer: GroupNorm;
  readonly key: string;
}

/**
 * An activation [N, C, H, W] held as tiles: tile (i, j) covers rows [ys[i], ys[i+1]) and columns
 * [xs[j], xs[j+1]). (oy, ox) is where this activation's (0, 0) lies in the full image at its resolution
 * (non-zero for the sub-images of streaming decoding). Borrowed tiles (the caller's input) are never disposed.
 */
export class TiledAct {
  private readonly tiles: (Tensor | null)[];
  constructor(
    readonly N: number,
    readonly C: number,
    readonly ys: readonly number[],
    readonly xs: readonly number[],
    tiles: Tensor[],
    readonly oy = 0,
    readonly ox = 0,
    private readonly borrowed = false,
  ) {
    this.tiles = tiles;
  }

  get H(): number {
    return this.ys[this.ys.length - 1]!;
  }
  get W(): number {
    return this.xs[this.xs.length - 1]!;
  }
  get rows(): number {
    return this.ys.length - 1;
  }
  get cols(): number {
    return this.xs.length - 1;
  }
  get count(): number {
    return this.rows * this.cols;
  }
  /** f32 bytes of the whole activation. */
  get bytes(): number {
    return this.N * this.C * this.H * this.W * 4;
  }

  tile(i: number, j: number): Tensor {
    const t = this.tiles[i * this.cols + j];
    if (!t) throw new Error(`TiledAct: tile (${i}, ${j}) was already released`);
    return t;
  }

  release(i: number, j: number): void {
    const k = i * this.cols + j;
    if (!this.borrowed) this.tiles[k]?.dispose();
    this.tiles[k] = null;
  }

  dispose(): void {
    for (let i = 0; i < this.rows; i++) for (let j = 0; j < this.cols; j++) this.release(i, j);
  }
}

/**
 * Boundaries of ceil(L / T) tiles of near-equal size (≤ T, differing by at most one), times `unit`
 * (the encoder's tiles must start at multiples of its downsampling factor).
 */
export function splitLength(L: number, T: number, unit = 1): number[] {
  const n = Math.ceil(L / T);
  return Array.from({ length: n + 1 }, (_, i) => Math.floor((i * L) / n) * unit);
}

/** Where GroupNorm statistics come from: merged per-tile moments (exact), or replayed from an earlier pass. */
export interface StatsStore {
  /** Statistics computed here are stored under their layer's key (kept alive; the owner disposes them). */
  record?: Map<string, Tensor>;
  /** Statistics looked up by layer key instead of being computed. */
  replay?: Map<string, Tensor>;
  /**
   * Streaming encode: at the first GroupNorm not in `replay`, the moments of the activation over `window`
   * are appended to `moments` under the layer's key (kept alive; the owner disposes them) and the pass ends
   * with a `StatsPassEnd`.
   */
  collect?: StatsCollect;
}

/**
 * The part of a sub-image whose moments a collecting pass contributes: `window` in the coordinates of the
 * full image at the resolution where the sub-image was cut (its core, without halo), and the height of the
 * sub-image there, from which an activation's resolution relative to it follows (H / baseH).
 */
export interface StatsCollect {
  window: Rect;
  baseH: number;
  moments: Map<string, Tensor[]>;
}

/** Ends a collecting pass at the GroupNorm `key` (the first whose statistics are not known yet). */
export class StatsPassEnd extends Error {
  constructor(
    readonly key: string,
    /** The layer's GroupNorm eps, for turning the collected moments into statistics. */
    readonly eps: number,
  ) {
    super(`statistics pass ended at ${key}`);
    this.name = 'StatsPassEnd';
  }
}

/** A rectangle [y0, y1) × [x0, x1). */
export interface Rect {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
}

export interface ConvStep {
  /** GroupNorm (+ SiLU) applied to the conv's input, with whole-image statistics. */
  norm?: NamedNorm;
  /** 'up': nearest ×2 before the conv; 'down': zero pad (0, 1, 0, 1), stride 2 (the VAE encoder's Downsample2D). */
  resample?: 'up' | 'down';
  /** Added to the output; tile grid equal to the output's. Released tile by tile once used. */
  residual?: TiledAct;
  /** 1×1 conv applied to the residual's tiles first (ResNet conv_shortcut). */
  shortcut?: Conv2d;
  /** Release the input's tiles as soon as no later output tile reads them. */
  consume?: boolean;
}

/** Executes the layers of the VAE over TiledActs. */
export class TileExec {
  /** Scratch and tiles allocated by the gathers, for the report: the largest single buffer seen. */
  maxTileBytes = 0;

  constructor(
    readonly rt: Runtime,
    readonly stats: StatsStore = {},
    readonly signal?: AbortSignal,
  ) {}

  /** Whole-image GroupNorm statistics [N, G, 2] of `x`, or undefined when the single tile computes its own. */
  groupStats(norm: NamedNorm, x: TiledAct): { stats: Tensor | undefined; owned: boolean } {
    const replayed = this.stats.replay?.get(norm.key);
    if (replayed) return { stats: replayed, owned: false };
    const rt = this.rt;
    const G = norm.layer.groups;
    const collect = this.stats.collect;
    if (collect) {
      // Moments of the part of x inside the window (at x's resolution), tile by tile.
      const s = x.H / collect.baseH;
      const win = { y0: collect.window.y0 * s - x.oy, y1: collect.window.y1 * s - x.oy, x0: collect.window.x0 * s - x.ox, x1: collect.window.x1 * s - x.ox };
      if (![win.y0, win.y1, win.x0, win.x1].every(Number.isInteger)) throw new Error(`TileExec: statistics window ${JSON.stringify(win)} is not on pixel boundaries`);
      const list = collect.moments.get(norm.key) ?? [];
      collect.moments.set(norm.key, list);
      for (let i = 0; i < x.rows; i++) {
        for (let j = 0; j < x.cols; j++) {
          const r = { y0: Math.max(win.y0, x.ys[i]!), y1: Math.min(win.y1, x.ys[i + 1]!), x0: Math.max(win.x0, x.xs[j]!), x1: Math.min(win.x1, x.xs[j + 1]!) };
          if (r.y1 <= r.y0 || r.x1 <= r.x0) continue;
          const local = { y0: r.y0 - x.ys[i]!, y1: r.y1 - x.ys[i]!, x0: r.x0 - x.xs[j]!, x1: r.x1 - x.xs[j]! };
          list.push(rt.keep(groupNormMoments(rt, x.tile(i, j), G, local))); // [N, G, 3]
        }
      }
      throw new StatsPassEnd(norm.key, norm.layer.eps);
    }
    if (x.count === 1 && !this.stats.record) return { stats: undefined, owned: false };
    const moments: Tensor[] = [];
    for (let i = 0; i < x.rows; i++) for (let j = 0; j < x.cols; j++) moments.push(groupNormMoments(rt, x.tile(i, j), G)); // [N, G, 3] each
    const stats = groupNormStatsFromMoments(rt, moments, norm.layer.eps); // [N, G, 2]
    for (const m of moments) m.dispose();
    if (this.stats.record) {
      this.stats.record.get(norm.key)?.dispose();
      this.stats.record.set(norm.key, rt.keep(stats));
      return { stats, owned: false };
    }
    return { stats, owned: true };
  }

  /** GroupNorm of one tile with whole-image statistics. */
  normalize(norm: NamedNorm, t: Tensor, stats: Tensor | undefined, silu: boolean): Tensor {
    return norm.layer.forward(this.rt, t, stats ? { silu, stats } : { silu });
  }

  /** A conv layer (1×1 or 3×3 with padding 1, or the encoder's stride-2 downsample) over a tiled activation. */
  async conv(conv: Conv2d, x: TiledAct, o: ConvStep = {}): Promise<TiledAct> {
    const rt = this.rt;
    const k = conv.kernel;
    const up = o.resample === 'up';
    const down = o.resample === 'down';
    const F = up ? 2 : 1;
    if (down && (x.ys.some((v) => v % 2) || x.xs.some((v) => v % 2))) throw new Error('TileExec: downsampling needs even tile boundaries');
    const ys = x.ys.map((v) => (up ? 2 * v : down ? v / 2 : v));
    const xs = x.xs.map((v) => (up ? 2 * v : down ? v / 2 : v));
    const H = F * x.H; // conv input size (after the nearest ×2 for 'up')
    const W = F * x.W;
    const { stats, owned } = o.norm ? this.groupStats(o.norm, x) : { stats: undefined, owned: false };
    // Input region each output tile reads (conv-input coordinates) and its padding.
    const plan = (oy0: number, oy1: number, Lin: number): [number, number, number, number] => {
      if (k === 1) return [oy0, oy1, 0, 0];
      if (down) return [2 * oy0, Math.min(2 * oy1 + 1, Lin), 0, 2 * oy1 + 1 > Lin ? 1 : 0];
      return [Math.max(oy0 - 1, 0), Math.min(oy1 + 1, Lin), oy0 === 0 ? 1 : 0, oy1 === Lin ? 1 : 0];
    };
    const rows = ys.length - 1;
    const cols = xs.length - 1;
    const regions: { r: Rect; pad: [number, number, number, number] }[] = [];
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const [ry0, ry1, pt, pb] = plan(ys[i]!, ys[i + 1]!, H);
        const [rx0, rx1, pl, pr] = plan(xs[j]!, xs[j + 1]!, W);
        regions.push({ r: { y0: ry0, y1: ry1, x0: rx0, x1: rx1 }, pad: [pt, pb, pl, pr] });
      }
    }
    // Last output tile (raster order) that reads each input tile, for early release.
    const lastUse = new Array<number>(x.count).fill(-1);
    regions.forEach(({ r }, t) => {
      for (const [a, b] of sourcesOf(x, r, F)) lastUse[a * x.cols + b] = t;
    });

    const out: Tensor[] = [];
    try {
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          throwIfAborted(this.signal, 'AutoencoderKL');
          const t = i * cols + j;
          const { r, pad } = regions[t]!;
          let input: Tensor;
          let temp = false;
          const own = x.count === 1 || k === 1 ? tileIfExact(x, r, F, i, j) : undefined;
          if (up && x.count === 1 && k === 3) {
            input = x.tile(0, 0); // fused nearest ×2 below
          } else if (own) {
            input = own;
          } else {
            input = this.gather(x, r, F);
            temp = true;
          }
          if (o.norm) {
            const n = this.normalize(o.norm, input, stats, true);
            if (temp) input.dispose();
            input = n;
            temp = true;
          }
          let residual: Tensor | undefined;
          if (o.residual) {
            const res = o.residual.tile(i, j);
            residual = o.shortcut ? conv2d(rt, res, o.shortcut.weight, o.shortcut.bias, { padding: 0 }) : res;
          }
          const y =
            up && x.count === 1 && k === 3
              ? conv2d(rt, input, conv.weight, conv.bias, { padding: 1, upsample2x: true, residual }) // [N, C, 2H, 2W]
              : conv2d(rt, input, conv.weight, conv.bias, { stride: down ? 2 : 1, padding: pad, residual });
          if (temp) input.dispose();
          if (o.shortcut && residual) residual.dispose();
          if (o.residual) o.residual.release(i, j);
          this.note(y);
          out.push(y);
          if (o.consume) {
            for (let a = 0; a < x.rows; a++) for (let b = 0; b < x.cols; b++) if (lastUse[a * x.cols + b] === t) x.release(a, b);
          }
        }
        await this.yieldRow();
      }
    } catch (e) {
      for (const t of out) t.dispose();
      throw e;
    } finally {
      if (owned) stats?.dispose();
    }
    if (o.consume) x.dispose();
    return new TiledAct(x.N, conv.outChannels, ys, xs, out, F * (down ? x.oy / 2 : x.oy), F * (down ? x.ox / 2 : x.ox));
  }

  /**
   * Single-head self-attention over all pixels of `x` (the VAE mid block; diffusers Attention with
   * GroupNorm, residual inside). Keys and values of every tile are gathered into one [N, L, C] buffer each
   * (token order does not matter to attention), then each tile's queries attend to all of them with the
   * tiled online-softmax kernel: the L×L scores never exist.
   */
  async attention(norm: NamedNorm, toQ: Linear, toK: Linear, toV: Linear, toOut: Linear, x: TiledAct): Promise<TiledAct> {
    const rt = this.rt;
    const { N, C } = x;
    const L = x.H * x.W;
    const { stats, owned } = this.groupStats(norm, x);
    const tokens = (i: number, j: number): Tensor => {
      const t = x.tile(i, j);
      const hw = t.shape[2]! * t.shape[3]!;
      const n = this.normalize(norm, t, stats, false); // [N, C, h, w]
      const flat = n.reshape([N, C, hw]);
      const tok = transpose(rt, flat); // [N, C, hw] -> [N, hw, C]
      flat.dispose();
      n.dispose();
      return tok;
    };
    let K: Tensor;
    let V: Tensor;
    const out: Tensor[] = [];
    try {
      if (x.count === 1) {
        const tok = tokens(0, 0);
        K = toK.forward(rt, tok); // [N, L, C]
        V = toV.forward(rt, tok);
        tok.dispose();
      } else {
        K = rt.empty([N, L, C], 'f32', 'vae.attention.k');
        V = rt.empty([N, L, C], 'f32', 'vae.attention.v');
        let at = 0;
        for (let i = 0; i < x.rows; i++) {
          for (let j = 0; j < x.cols; j++) {
            const tok = tokens(i, j);
            const Lt = tok.shape[1]!;
            for (const [lin, dst] of [[toK, K], [toV, V]] as const) {
              const part = lin.forward(rt, tok); // [N, Lt, C]
              for (let b = 0; b < N; b++) rt.copy(part, b * Lt * C * 4, dst, (b * L + at) * C * 4, Lt * C * 4);
              part.dispose();
            }
            tok.dispose();
            at += Lt;
          }
        }
      }
      this.note(K);
      for (let i = 0; i < x.rows; i++) {
        for (let j = 0; j < x.cols; j++) {
          throwIfAborted(this.signal, 'AutoencoderKL');
          const t = x.tile(i, j);
          const tok = tokens(i, j);
          const q = toQ.forward(rt, tok); // [N, Lt, C]
          tok.dispose();
          const o = multiHeadAttention(rt, q, K, V, 1); // [N, Lt, C]
          q.dispose();
          const p = toOut.forward(rt, o); // [N, Lt, C]
          o.dispose();
          const pc = transpose(rt, p); // [N, Lt, C] -> [N, C, Lt]
          p.dispose();
          const pv = pc.reshape(t.shape);
          pc.dispose();
          out.push(add(rt, t, pv)); // residual
          pv.dispose();
          x.release(i, j);
          await this.yieldRow();
        }
      }
      K.dispose();
      V.dispose();
    } catch (e) {
      for (const t of out) t.dispose();
      throw e;
    } finally {
      if (owned) stats?.dispose();
    }
    x.dispose();
    return new TiledAct(N, C, x.ys, x.xs, out, x.oy, x.ox);
  }

  /**
   * The region `r` of `x` (coordinates of x's resolution times F; F = 2 reads x through nearest ×2) copied
   * into one new tensor [N, C, r.y1 − r.y0, r.x1 − r.x0].
   */
  gather(x: TiledAct, r: Rect, F = 1): Tensor {
    const dst = this.rt.empty([x.N, x.C, r.y1 - r.y0, r.x1 - r.x0], 'f32', 'vae.tile');
    this.note(dst);
    for (const [a, b] of sourcesOf(x, r, F)) {
      const y0 = Math.max(r.y0, F * x.ys[a]!);
      const y1 = Math.min(r.y1, F * x.ys[a + 1]!);
      const x0 = Math.max(r.x0, F * x.xs[b]!);
      const x1 = Math.min(r.x1, F * x.xs[b + 1]!);
      copyRect(this.rt, x.tile(a, b), dst, {
        rows: y1 - y0, cols: x1 - x0, F,
        sy: y0 - F * x.ys[a]!, sx: x0 - F * x.xs[b]!,
        dy: y0 - r.y0, dx: x0 - r.x0,
      });
    }
    return dst;
  }

  /** `x` re-cut along new boundaries over its region `r` (same resolution); x is left as it was. */
  regrid(x: TiledAct, r: Rect, ys: readonly number[], xs: readonly number[]): TiledAct {
    const tiles: Tensor[] = [];
    for (let i = 0; i + 1 < ys.length; i++) {
      for (let j = 0; j + 1 < xs.length; j++) {
        tiles.push(this.gather(x, { y0: r.y0 + ys[i]!, y1: r.y0 + ys[i + 1]!, x0: r.x0 + xs[j]!, x1: r.x0 + xs[j + 1]! }));
      }
    }
    return new TiledAct(x.N, x.C, ys, xs, tiles, x.oy + r.y0, x.ox + r.x0);
  }

  /** Records the size of a buffer for the report. */
  note(t: Tensor): void {
    this.maxTileBytes = Math.max(this.maxTileBytes, t.byteLength);
  }

  /** Lets an AbortSignal be observed between tile rows (a GPU round trip only when there is a signal). */
  async yieldRow(): Promise<void> {
    if (!this.signal) return;
    await this.rt.sync();
    throwIfAborted(this.signal, 'AutoencoderKL');
  }
}

/** Tiles of x whose (×F) extent intersects r, as [row, col]. */
function sourcesOf(x: TiledAct, r: Rect, F: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 0; a < x.rows; a++) {
    if (F * x.ys[a + 1]! <= r.y0 || F * x.ys[a]! >= r.y1) continue;
    for (let b = 0; b < x.cols; b++) {
      if (F * x.xs[b + 1]! <= r.x0 || F * x.xs[b]! >= r.x1) continue;
      out.push([a, b]);
    }
  }
  return out;
}

/** Tile (i, j) itself when it is exactly the region r (no halo needed), else undefined. */
function tileIfExact(x: TiledAct, r: Rect, F: number, i: number, j: number): Tensor | undefined {
  if (F !== 1) return undefined;
  return r.y0 === x.ys[i] && r.y1 === x.ys[i + 1] && r.x0 === x.xs[j] && r.x1 === x.xs[j + 1] ? x.tile(i, j) : undefined;
}

export interface CopyRect {
  rows: number;
  cols: number;
  /** Source corner (in source coordinates ×F). */
  sy: number;
  sx: number;
  dy: number;
  dx: number;
  F?: number;
  /** Channels copied (default: all of src), from srcC0 to dstC0. */
  channels?: number;
  srcC0?: number;
  dstC0?: number;
  /** Clamp values to [lo, hi] (the posterior's logvar). */
  clamp?: [number, number];
}

/** Copies a rectangle between NCHW f32 tensors with the same batch size (shaders/vae-tile-copy.wgsl). */
export function copyRect(rt: Runtime, src: Tensor, dst: Tensor, o: CopyRect): void {
  const [N, srcC, srcH, srcW] = src.shape as [number, number, number, number];
  const [, dstC, dstH, dstW] = dst.shape as [number, number, number, number];
  const C = o.channels ?? srcC;
  const P = N * C;
  if (P * o.rows * o.cols === 0) return;
  const kernel = rt.kernel('vae-tile-copy', tileCopyWgsl, { WG_SIZE });
  rt.dispatch(
    kernel,
    [src, dst],
    {
      P, C, RH: o.rows, RW: o.cols,
      srcC, srcH, srcW, srcC0: o.srcC0 ?? 0, sy: o.sy, sx: o.sx, F: o.F ?? 1,
      dstC, dstH, dstW, dstC0: o.dstC0 ?? 0, dy: o.dy, dx: o.dx,
      clampOn: o.clamp ? 1 : 0, lo: o.clamp?.[0] ?? 0, hi: o.clamp?.[1] ?? 0,
    },
    rt.grid(Math.ceil((P * o.rows * o.cols) / WG_SIZE)),
  );
}
