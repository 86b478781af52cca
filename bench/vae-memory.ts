/**
 * Peak GPU memory of the SD VAE (AutoencoderKLConfig.sd15, random weights N(0, 1/fan_in)) decoding and
 * encoding at 512² (and 1024², and 2048² with --big). Weights go through the normal loader from a
 * TensorSource that generates them on read, so no file is needed.
 *
 *   node scripts/build.mjs && node dist/bench/vae-memory.js [--sizes 512,1024] [--big] [--budget-mib 1536]
 *     [--dtype f32|f16] [--no-encode] [--tile N] [--plan-only]
 *
 * Prints per run: mode (untiled/exact/streaming), exact statistics or not, tile counts, the largest single
 * buffer, rt.memory() peak (allocated incl. pool) and peak live bytes, over the weights, and wall time.
 * --plan-only prints the tiling decision and estimate for every size without running (SwiftShader needs
 * hours for a 2048² decode).
 */
import { createNodeRuntime } from '../src/node/gpu.js';
import type { HostTensor, TensorSource } from '../src/io/safetensors.js';
import { AutoencoderKL, type TilingReport } from '../src/models/vae/model.js';
import { AutoencoderKLConfig } from '../src/models/vae/config.js';
import { fmtBytes } from '../src/runtime/errors.js';

/** The 248 tensors of the SD VAE (diffusers names) with their shapes, derived from the config. */
function sdVaeShapes(): Map<string, number[]> {
  const c = AutoencoderKLConfig.sd15;
  const m = new Map<string, number[]>();
  const conv = (k: string, o: number, i: number, ks: number) => {
    m.set(`${k}.weight`, [o, i, ks, ks]);
    m.set(`${k}.bias`, [o]);
  };
  const norm = (k: string, ch: number) => {
    m.set(`${k}.weight`, [ch]);
    m.set(`${k}.bias`, [ch]);
  };
  const resnet = (k: string, i: number, o: number) => {
    norm(`${k}.norm1`, i);
    conv(`${k}.conv1`, o, i, 3);
    norm(`${k}.norm2`, o);
    conv(`${k}.conv2`, o, o, 3);
    if (i !== o) conv(`${k}.conv_shortcut`, o, i, 1);
  };
  const mid = (k: string, ch: number) => {
    resnet(`${k}.resnets.0`, ch, ch);
    resnet(`${k}.resnets.1`, ch, ch);
    norm(`${k}.attentions.0.group_norm`, ch);
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) {
      m.set(`${k}.attentions.0.${p}.weight`, [ch, ch]);
      m.set(`${k}.attentions.0.${p}.bias`, [ch]);
    }
  };
  const ch = c.block_out_channels;
  const top = ch[ch.length - 1]!;
  conv('encoder.conv_in', ch[0]!, c.in_channels, 3);
  ch.forEach((o, i) => {
    const inC = i === 0 ? ch[0]! : ch[i - 1]!;
    for (let j = 0; j < c.layers_per_block; j++) resnet(`encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? inC : o, o);
    if (i < ch.length - 1) conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, o, o, 3);
  });
  mid('encoder.mid_block', top);
  norm('encoder.conv_norm_out', top);
  conv('encoder.conv_out', 2 * c.latent_channels, top, 3);
  conv('quant_conv', 2 * c.latent_channels, 2 * c.latent_channels, 1);
  conv('post_quant_conv', c.latent_channels, c.latent_channels, 1);
  const rev = [...ch].reverse();
  conv('decoder.conv_in', rev[0]!, c.latent_channels, 3);
  mid('decoder.mid_block', rev[0]!);
  rev.forEach((o, i) => {
    const inC = i === 0 ? rev[0]! : rev[i - 1]!;
    for (let j = 0; j < c.layers_per_block + 1; j++) resnet(`decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? inC : o, o);
    if (i < rev.length - 1) conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, o, o, 3);
  });
  norm('decoder.conv_norm_out', rev[rev.length - 1]!);
  conv('decoder.conv_out', c.out_channels, rev[rev.length - 1]!, 3);
  return m;
}

/** Deterministic weights on read: kernels N(0, 1/fan_in), norm gains 1, biases 0 (mulberry32 + Box–Muller). */
class RandomVaeSource implements TensorSource {
  readonly name = 'random-sd-vae';
  constructor(private readonly shapes: Map<string, number[]>) {}
  keys(): string[] {
    return [...this.shapes.keys()];
  }
  info(key: string): { dtype: string; shape: number[] } {
    return { dtype: 'F32', shape: this.shapes.get(key)! };
  }
  async read(key: string): Promise<HostTensor> {
    const shape = this.shapes.get(key)!;
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 1) {
      if (/norm/.test(key) && key.endsWith('.weight')) data.fill(1);
    } else {
      const std = 1 / Math.sqrt(n / shape[0]!);
      let s = hash(key);
      const u = () => ((s = (s + 0x6d2b79f5) >>> 0), mix(s));
      for (let i = 0; i < n; i += 2) {
        const r = Math.sqrt(-2 * Math.log(u() + 1e-12)) * std;
        const t = 2 * Math.PI * u();
        data[i] = r * Math.cos(t);
        if (i + 1 < n) data[i + 1] = r * Math.sin(t);
      }
    }
    return { dtype: 'f32', shape, data };
  }
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}
function mix(a: number): number {
  let t = Math.imul(a ^ (a >>> 15), a | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const big = process.argv.includes('--big');
  const sizes = (arg('--sizes') ?? (big ? '512,1024,2048' : '512')).split(',').map(Number);
  const budget = Number(arg('--budget-mib') ?? 1536) * 2 ** 20;
  const dtype = (arg('--dtype') ?? 'f32') as 'f32' | 'f16';
  const tile = arg('--tile') ? Number(arg('--tile')) : undefined;
  const rt = await createNodeRuntime({ memoryBudgetBytes: budget, log: () => {} });
  console.log(`adapter: ${rt.adapterName}; binding limit ${fmtBytes(rt.allocator.maxBufferBytes)}; budget ${fmtBytes(budget)}; weights ${dtype}`);
  const t0 = performance.now();
  const vae = await AutoencoderKL.load(rt, { config: AutoencoderKLConfig.sd15, weights: new RandomVaeSource(sdVaeShapes()), dtype });
  console.log(`loaded 248 tensors (${fmtBytes(vae.weightBytes)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tiling = tile ? { tileSize: tile } : 'auto';
  const line = (what: string, px: number, r: TilingReport, s: number, base: number) => {
    const m = rt.memory();
    console.log(
      `${what} ${px}²: mode ${r.mode}${r.exact ? '' : ' (estimated GroupNorm statistics)'}; tile ${r.tileSize} latent px, ${r.tiles} tiles` +
        (r.streamTiles ? `, ${r.streamTiles} output tiles, halo ${r.halo}, proxy 1/${r.proxyFactor}` : '') +
        `; largest buffer ${fmtBytes(r.maxTileBytes)}; peak ${fmtBytes(m.peakBytes)} (live ${fmtBytes(m.peakLiveBytes)}; ${fmtBytes(m.peakBytes - base)} over the weights); ` +
        `estimate ${fmtBytes(r.estimatedBytes)}; ${s.toFixed(1)} s`,
    );
  };
  if (process.argv.includes('--plan-only')) {
    for (const px of sizes) {
      for (const what of ['decode', 'encode'] as const) {
        try {
          const p = vae.planTiling(rt, what, 1, px / 8, px / 8, tiling);
          console.log(`${what} ${px}² plan: ${JSON.stringify(p)} (estimate ${fmtBytes(p.estimatedBytes)} + weights ${fmtBytes(vae.weightBytes)})`);
        } catch (e) {
          console.log(`${what} ${px}² plan: ${(e as Error).name}: ${(e as Error).message}`);
        }
      }
    }
    vae.dispose();
    return;
  }
  for (const px of sizes) {
    const h = px / 8;
    for (const what of process.argv.includes('--no-encode') ? ['decode'] : ['decode', 'encode']) {
      rt.allocator.trim();
      rt.allocator.resetPeak();
      const base = rt.memory().liveBytes;
      const t = performance.now();
      try {
        await rt.scopeAsync(async () => {
          if (what === 'decode') {
            const z = rt.upload(new Float32Array(4 * h * h).map((_, i) => Math.sin(i * 0.37) * 1.5), [1, 4, h, h]);
            const { image, report } = await vae.decodeWithReport(z, { tiling });
            await rt.read(image);
            line('decode', px, report, (performance.now() - t) / 1000, base);
          } else {
            const x = rt.upload(new Float32Array(3 * px * px).map((_, i) => Math.sin(i * 0.011)), [1, 3, px, px]);
            const { mean, report } = await vae.encodeWithReport(x, { tiling });
            await rt.read(mean);
            line('encode', px, report, (performance.now() - t) / 1000, base);
          }
        });
      } catch (e) {
        console.log(`${what} ${px}²: ${(e as Error).name}: ${(e as Error).message} (${((performance.now() - t) / 1000).toFixed(1)} s)`);
      }
    }
  }
  vae.dispose();
}

await main();
