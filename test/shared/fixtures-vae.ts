/**
 * AutoencoderKL against the vae fixtures (test/fixtures/README.md, vae section): the same weights in diffusers
 * (vae.safetensors), LDM single-file (vae_ldm.safetensors) and float16 (vae_fp16.safetensors, outputs in
 * vae_fp16.io.safetensors) form, plus tiled = untiled. Tolerances: tolerances.json → vae.* (the fp16 file uses
 * the same rows). Runs in Node and the browser.
 */
import { bytesSource } from '../../src/io/byte-source.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { AutoencoderKL } from '../../src/models/vae/model.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { get, type CheckResult, type FixtureCheck, type FixtureFile, type FixtureLoader } from './fixture-check.js';

// tolerances.json → vae.posterior_mean, vae.posterior_logvar, vae.decoded
export const VAE_TOL = {
  posterior_mean: { atol: 2e-5, rtol: 1e-3 },
  posterior_logvar: { atol: 5e-5, rtol: 1e-3 },
  decoded: { atol: 5e-5, rtol: 1e-3 },
};

/** The fixture VAE's config.json (test/fixtures/vae.config.json), inlined so the page needs no JSON fetch. */
export const TINY_VAE_CONFIG = {
  _class_name: 'AutoencoderKL',
  act_fn: 'silu',
  block_out_channels: [16, 32],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'],
  force_upcast: true,
  in_channels: 3,
  latent_channels: 4,
  latents_mean: null,
  latents_std: null,
  layers_per_block: 1,
  mid_block_add_attention: true,
  norm_num_groups: 8,
  out_channels: 3,
  sample_size: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
  use_post_quant_conv: true,
  use_quant_conv: true,
};

/** The loader hands out parsed tensors (in the page, fetched ones); re-serialise them so weights load through the real path. */
export async function fixtureSource(load: FixtureLoader, name: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(bytesSource(toSafetensors(await load(name)), name));
}

/** Rebuilds a safetensors file from parsed fixture tensors (F16 files come back as F16). */
function toSafetensors(f: FixtureFile): Uint8Array {
  const header: Record<string, unknown> = {};
  const parts: Uint8Array[] = [];
  let off = 0;
  for (const [k, t] of f) {
    let bytes: Uint8Array;
    let dtype = 'F32';
    if (t.dtype === 'F16') {
      dtype = 'F16';
      const h = new Uint16Array(t.data.length);
      for (let i = 0; i < h.length; i++) h[i] = toHalf(t.data[i]!);
      bytes = new Uint8Array(h.buffer);
    } else bytes = new Uint8Array(new Float32Array(t.data).buffer);
    header[k] = { dtype, shape: t.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  const text = JSON.stringify(header);
  const json = new TextEncoder().encode(text.padEnd(Math.ceil(text.length / 8) * 8, ' '));
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** float32 → float16 bits; exact for values that came from float16 (the fixture's own weights). */
function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const e = ((u >>> 23) & 0xff) - 127 + 15;
  const m = u & 0x7fffff;
  if (((u >>> 23) & 0xff) === 0 && m === 0) return sign;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) return sign | Math.round((m | 0x800000) / 2 ** (14 - e));
  return sign | (e << 10) | Math.round(m / 2 ** 13);
}

async function loadTiny(rt: Runtime, load: FixtureLoader, file: string): Promise<AutoencoderKL> {
  return AutoencoderKL.load(rt, { config: TINY_VAE_CONFIG, weights: await fixtureSource(load, file) });
}

function fixtureCheck(file: string, io: string, withLogvar: boolean): FixtureCheck {
  return {
    name: `models/vae/${file.replace('.safetensors', '')}`,
    async run(rt: Runtime, load: FixtureLoader): Promise<CheckResult[]> {
      const f = await load(io);
      const vae = await loadTiny(rt, load, file);
      try {
        const image = get(f, 'image');
        const z = get(f, 'z');
        return await rt.scopeAsync(async () => {
          const { mean, logvar } = await vae.encode(rt.upload(image.data, image.shape), { tiling: 'off' });
          const decoded = await vae.decode(rt.upload(z.data, z.shape), { tiling: 'off' });
          const out: CheckResult[] = [
            { actual: await rt.read(mean), expected: get(f, 'posterior_mean').data, ...VAE_TOL.posterior_mean },
            { actual: await rt.read(decoded), expected: get(f, 'decoded').data, ...VAE_TOL.decoded },
          ];
          if (withLogvar) out.push({ actual: await rt.read(logvar), expected: get(f, 'posterior_logvar').data, ...VAE_TOL.posterior_logvar });
          return out;
        });
      } finally {
        vae.dispose();
      }
    },
  };
}

/**
 * Tiled = untiled on a non-square latent (12×20, a size that is not a multiple of the tile 5: 3×4 tiles of 4×5
 * latent px), decode and encode; 1e-4 absolute, no relative slack.
 */
const tiledCheck: FixtureCheck = {
  name: 'models/vae/tiled-equals-untiled',
  async run(rt: Runtime, load: FixtureLoader): Promise<CheckResult[]> {
    const f = await load('vae.io.safetensors');
    const vae = await loadTiny(rt, load, 'vae.safetensors');
    try {
      const z0 = get(f, 'z'); // [1, 4, 16, 16]
      const img0 = get(f, 'image'); // [1, 3, 32, 32]
      const zWide = widen(crop(z0.data, 4, 16, 16, 12, 14, 2), 4, 12, 14, 20); // [1, 4, 12, 20]
      const img = widen(crop(img0.data, 3, 32, 32, 24, 28, 0), 3, 24, 28, 40); // [1, 3, 24, 40]
      const tiling = { mode: 'exact' as const, tileSize: 5 };
      return await rt.scopeAsync(async () => {
        const zt = rt.upload(zWide, [1, 4, 12, 20]);
        const it = rt.upload(img, [1, 3, 24, 40]);
        const ref = await rt.read(await vae.decode(zt, { tiling: 'off' }));
        const tiled = await vae.decodeWithReport(zt, { tiling });
        if (tiled.report.tiles < 9) throw new Error(`decode ran ${tiled.report.tiles} tiles, want ≥ 9`);
        const encRef = await vae.encode(it, { tiling: 'off' });
        const enc = await vae.encodeWithReport(it, { tiling });
        if (enc.report.tiles < 9) throw new Error(`encode ran ${enc.report.tiles} tiles, want ≥ 9`);
        const tol = { atol: 1e-4, rtol: 0 };
        return [
          { actual: await rt.read(tiled.image), expected: ref, ...tol },
          { actual: await rt.read(enc.mean), expected: await rt.read(encRef.mean), ...tol },
          { actual: await rt.read(enc.logvar), expected: await rt.read(encRef.logvar), ...tol },
        ];
      });
    } finally {
      vae.dispose();
    }
  },
};

/** x [1, C, H, W] → [1, C, h, w] from row/col offset `at`. */
export function crop(x: ArrayLike<number>, C: number, H: number, W: number, h: number, w: number, at: number): Float32Array {
  const out = new Float32Array(C * h * w);
  for (let c = 0; c < C; c++) for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) out[(c * h + y) * w + xx] = x[(c * H + y + at) * W + xx + at]!;
  return out;
}

/** Pads columns w..W−1 with a mirrored, sign-flipped copy: keeps the statistics natural, the content new. */
export function widen(x: Float32Array, C: number, h: number, w: number, W: number): Float32Array {
  const out = new Float32Array(C * h * W);
  for (let c = 0; c < C; c++)
    for (let y = 0; y < h; y++)
      for (let xx = 0; xx < W; xx++) out[(c * h + y) * W + xx] = xx < w ? x[(c * h + y) * w + xx]! : -0.8 * x[(c * h + y) * w + (2 * w - 1 - xx)]!;
  return out;
}

export const vaeChecks: FixtureCheck[] = [
  fixtureCheck('vae.safetensors', 'vae.io.safetensors', true),
  fixtureCheck('vae_ldm.safetensors', 'vae.io.safetensors', true),
  fixtureCheck('vae_fp16.safetensors', 'vae_fp16.io.safetensors', false),
  tiledCheck,
];
