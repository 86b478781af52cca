import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/io/checkpoint.js';
import { SafetensorsFile, writeSafetensors, type HostTensor, type TensorSource } from '../../src/io/safetensors.js';
import { bytesSource } from '../../src/io/byte-source.js';
import { UNet2DConditionConfig, UNet2DConditionModel } from '../../src/models/unet-2d-condition/index.js';
import { fileSource } from '../../src/node/fs-source.js';
import { guidanceEmbedding } from '../../src/ops/embedding.js';
import { ArgumentError, ConfigError, ShapeError, WeightError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { nodeGPU } from '../../src/node/gpu.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import { FIXTURES, fx, loadFixture, nodeLoader, tolerance } from '../helpers/fixtures.js';
import { unetKeyRenamer } from '../../src/models/keys.js';
import { fixtureSource, recordShapes, TINY_UNET, TINY_UNET_LCM, UNET_TOL, unetResults } from '../shared/fixtures-unet.js';

// dawn.node (webgpu 0.6.2) segfaults once the GPU object that made a device is garbage-collected, and
// createNodeRuntime keeps only the device: this module holds the GPU for as long as the file runs.
let gpu: GPU | null = null;
let shared: Promise<Runtime> | null = null;
function testRuntime(): Promise<Runtime> {
  shared ??= nodeGPU().then((g) => createRuntime({ gpu: (gpu = g), log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }));
  return shared;
}

const json = (name: string): Record<string, unknown> => JSON.parse(readFileSync(FIXTURES + name, 'utf8')) as Record<string, unknown>;
const io = (k: string) => fx('unet.io.safetensors', k);

async function st(name: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(await fileSource(FIXTURES + name));
}

/** Runs the UNet on unet.io's inputs. */
async function outOf(rt: Runtime, unet: UNet2DConditionModel): Promise<Float32Array> {
  return rt.scopeAsync(async () =>
    rt.read(unet.forward(rt, rt.upload(io('sample').data, io('sample').shape), io('timestep').data[0]!, rt.upload(io('encoder_hidden_states').data, io('encoder_hidden_states').shape))),
  );
}

describe('SD-1.5 structure and single-file names (no GPU)', () => {
  it('the sd15 preset builds the 686 tensors / 859,520,964 parameters of SD-1.5', () => {
    const shapes = recordShapes((w) => new UNet2DConditionModel(w, UNet2DConditionConfig.sd15));
    expect(shapes.size).toBe(686);
    expect([...shapes.values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0)).toBe(859520964);
    expect(shapes.get('up_blocks.1.resnets.2.conv1.weight')).toEqual([1280, 1920, 3, 3]);
    expect(shapes.get('up_blocks.3.resnets.0.conv_shortcut.weight')).toEqual([320, 960, 1, 1]);
    expect(shapes.get('down_blocks.2.attentions.1.transformer_blocks.0.ff.net.0.proj.weight')).toEqual([10240, 1280]);
    expect(shapes.get('mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight')).toEqual([1280, 768]);
    const lcm = recordShapes((w) => new UNet2DConditionModel(w, UNet2DConditionConfig.lcmSd15));
    expect(lcm.get('time_embedding.cond_proj.weight')).toEqual([320, 256]);
  });

  it('single-file → diffusers renaming (REFERENCE §7.6 table; all 686 SD-1.5 keys were checked against the reference key lists)', () => {
    const sd = UNet2DConditionConfig.sd15;
    const r = unetKeyRenamer(['model.diffusion_model.input_blocks.0.0.weight'], sd);
    const cases: [string, string | null][] = [
      ['time_embed.0.weight', 'time_embedding.linear_1.weight'],
      ['time_embed.2.bias', 'time_embedding.linear_2.bias'],
      ['input_blocks.0.0.bias', 'conv_in.bias'],
      ['input_blocks.1.0.in_layers.0.weight', 'down_blocks.0.resnets.0.norm1.weight'],
      ['input_blocks.2.1.transformer_blocks.0.attn1.to_q.weight', 'down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight'],
      ['input_blocks.3.0.op.weight', 'down_blocks.0.downsamplers.0.conv.weight'],
      ['input_blocks.4.0.skip_connection.weight', 'down_blocks.1.resnets.0.conv_shortcut.weight'],
      ['input_blocks.11.0.emb_layers.1.weight', 'down_blocks.3.resnets.1.time_emb_proj.weight'],
      ['middle_block.0.out_layers.3.bias', 'mid_block.resnets.0.conv2.bias'],
      ['middle_block.1.proj_in.weight', 'mid_block.attentions.0.proj_in.weight'],
      ['middle_block.2.out_layers.0.weight', 'mid_block.resnets.1.norm2.weight'],
      ['output_blocks.2.1.conv.weight', 'up_blocks.0.upsamplers.0.conv.weight'],
      ['output_blocks.3.1.norm.weight', 'up_blocks.1.attentions.0.norm.weight'],
      ['output_blocks.5.1.proj_out.bias', 'up_blocks.1.attentions.2.proj_out.bias'],
      ['output_blocks.5.2.conv.weight', 'up_blocks.1.upsamplers.0.conv.weight'],
      ['output_blocks.8.2.conv.bias', 'up_blocks.2.upsamplers.0.conv.bias'],
      ['output_blocks.11.0.skip_connection.bias', 'up_blocks.3.resnets.2.conv_shortcut.bias'],
      ['out.0.weight', 'conv_norm_out.weight'],
      ['out.2.bias', 'conv_out.bias'],
    ];
    for (const [ldm, want] of cases) expect(r(`model.diffusion_model.${ldm}`), ldm).toBe(want);
    for (const other of ['first_stage_model.decoder.conv_in.weight', 'cond_stage_model.transformer.text_model.final_layer_norm.weight', 'model_ema.diffusion_modelinput_blocks00weight', 'alphas_cumprod', 'extra.float16']) {
      expect(r(other), other).toBeNull();
    }
    // unknown names inside the UNet prefix pass through, so the strict load names them
    expect(r('model.diffusion_model.label_emb.0.0.weight')).toBe('label_emb.0.0.weight');
    // diffusers files pass through unchanged
    expect(unetKeyRenamer(['conv_in.weight'], sd)('conv_in.weight')).toBe('conv_in.weight');
  });
});

describe('UNet2DConditionModel', () => {
  let rt: Runtime;
  let unet: UNet2DConditionModel;
  let reference: Float32Array;
  beforeAll(async () => {
    rt = await testRuntime();
    unet = await UNet2DConditionModel.load(rt, await st('unet.safetensors'), TINY_UNET);
    reference = await outOf(rt, unet);
  });
  afterAll(() => unet?.dispose());

  it('config: unet.config.json / unet_lcm.config.json → the tiny configs; sd15 preset; heads from attention_head_dim', () => {
    expect(UNet2DConditionConfig.fromDiffusers(json('unet.config.json'))).toEqual(TINY_UNET);
    expect(UNet2DConditionConfig.fromDiffusers(json('unet_lcm.config.json'))).toEqual(TINY_UNET_LCM);
    const sd = UNet2DConditionConfig.sd15;
    expect(sd.numAttentionHeads).toEqual([8, 8, 8, 8]);
    expect(sd.blockOutChannels.map((c, i) => c / sd.numAttentionHeads[i]!)).toEqual([40, 80, 160, 160]);
    expect(UNet2DConditionConfig.lcmSd15.timeCondProjDim).toBe(256);
    // SD-2.x style: explicit per-level head dims through num_attention_heads, linear projections
    const sd2 = UNet2DConditionConfig.fromDiffusers({ ...json('unet.config.json'), num_attention_heads: [2, 4], use_linear_projection: true, transformer_layers_per_block: [1, 2] });
    expect(sd2).toMatchObject({ numAttentionHeads: [2, 4], useLinearProjection: true, transformerLayersPerBlock: [1, 2] });
  });

  it('config: unsupported options are ConfigErrors', () => {
    const base = json('unet.config.json');
    for (const [k, v] of [
      ['class_embed_type', 'timestep'],
      ['addition_embed_type', 'text_time'],
      ['resnet_time_scale_shift', 'scale_shift'],
      ['mid_block_type', 'UNetMidBlock2DSimpleCrossAttn'],
      ['down_block_types', ['CrossAttnDownBlock2D', 'SimpleCrossAttnDownBlock2D']],
      ['attention_head_dim', [8]],
      ['center_input_sample', true],
      ['norm_num_groups', 5],
      ['act_fn', 'gelu'],
    ] as const) {
      expect(() => UNet2DConditionConfig.fromDiffusers({ ...base, [k]: v }), k).toThrow(ConfigError);
    }
    expect(() => UNet2DConditionConfig.fromDiffusers({ ...base, attention_head_dim: undefined, num_attention_heads: undefined })).toThrow(/num_attention_heads is missing/);
  });

  it('the browser tolerances are tolerances.json', () => {
    expect(UNET_TOL.unet).toEqual(tolerance('unet', 'out'));
    expect(UNET_TOL.unetLcm).toEqual(tolerance('unet_lcm', 'out'));
    expect(UNET_TOL.unetLcmCond).toEqual(tolerance('unet_lcm', 'timestep_cond'));
  });

  it('unet.io: out and every debug.* output', async () => {
    const res = await unetResults(rt, nodeLoader, { model: unet });
    const want = [...loadFixture('unet.io.safetensors').keys()].filter((k) => k.startsWith('debug.'));
    expect(res.map((r) => r.name).filter((n) => n.startsWith('debug.')).sort()).toEqual(want.sort());
    for (const r of res) {
      const rep = expectClose(r.actual, r.expected, r, `unet ${r.name}`);
      if (r.name === 'out') console.info(`unet.io out: maxAbs ${rep.maxAbs.toExponential(2)}`);
    }
  });

  it('a scalar timestep, a per-item array and a [1] tensor give the same output', async () => {
    const viaTensor = await rt.scopeAsync(async () =>
      rt.read(unet.forward(rt, rt.upload(io('sample').data, io('sample').shape), rt.upload(io('timestep').data, [1]), rt.upload(io('encoder_hidden_states').data, io('encoder_hidden_states').shape))),
    );
    expect(viaTensor).toEqual(reference);
    // batch 2 with a broadcast [1] tensor and with an array: each item equals the batch-1 result
    const two = (x: ArrayLike<number>) => Float32Array.from({ length: 2 * x.length }, (_, i) => x[i % x.length]!);
    const s = io('sample');
    const c = io('encoder_hidden_states');
    for (const t of [[io('timestep').data[0]!, io('timestep').data[0]!], 'tensor'] as const) {
      const out = await rt.scopeAsync(async () =>
        rt.read(unet.forward(rt, rt.upload(two(s.data), [2, ...s.shape.slice(1)]), t === 'tensor' ? rt.upload(io('timestep').data, [1]) : t, rt.upload(two(c.data), [2, ...c.shape.slice(1)]))),
      );
      expectClose(out.subarray(0, reference.length), io('out').data, tolerance('unet', 'out'), 'batch item 0');
      expectClose(out.subarray(reference.length), io('out').data, tolerance('unet', 'out'), 'batch item 1');
    }
  });

  it('unet_ldm.safetensors (SD single-file names) loads to the same network', async () => {
    const ldm = await UNet2DConditionModel.load(rt, await st('unet_ldm.safetensors'), TINY_UNET);
    try {
      const out = await outOf(rt, ldm);
      expectClose(out, io('out').data, tolerance('unet', 'out'), 'unet_ldm.safetensors');
      expect(out).toEqual(reference);
    } finally {
      ldm.dispose();
    }
  });

  it('unet_ldm.ckpt through openCheckpoint (shared storages, offsets, strides; extra.* keys skipped)', async () => {
    const ckpt = await openCheckpoint(await fileSource(FIXTURES + 'unet_ldm.ckpt'));
    expect(ckpt.keys().some((k) => k.startsWith('extra.'))).toBe(true);
    const ldm = await UNet2DConditionModel.load(rt, ckpt, TINY_UNET);
    try {
      const out = await outOf(rt, ldm);
      expectClose(out, io('out').data, tolerance('unet', 'out'), 'unet_ldm.ckpt');
      expect(out).toEqual(reference);
    } finally {
      ldm.dispose();
    }
  });

  it('use_linear_projection: proj_in/proj_out stored as Linear [C, C] give the same network', async () => {
    const f = loadFixture('unet.safetensors');
    const linear: TensorSource = {
      name: 'unet, linear projections',
      keys: () => [...f.keys()],
      info: (k) => ({ dtype: 'F32', shape: squeeze(k, f.get(k)!.shape) }),
      read: async (k) => ({ dtype: 'f32', shape: squeeze(k, f.get(k)!.shape), data: f.get(k)!.data as Float32Array }),
    };
    function squeeze(k: string, shape: number[]): number[] {
      return /\.proj_(in|out)\.weight$/.test(k) ? shape.slice(0, 2) : shape;
    }
    expect(linear.info('mid_block.attentions.0.proj_in.weight').shape).toEqual([64, 64]);
    const m = await UNet2DConditionModel.load(rt, linear, { ...TINY_UNET, useLinearProjection: true });
    try {
      expect(await outOf(rt, m)).toEqual(reference);
    } finally {
      m.dispose();
    }
  });

  it('f16 storage stays close to f32; bf16 weights (widened to f32) too', async () => {
    const f16 = await UNet2DConditionModel.load(rt, await st('unet.safetensors'), TINY_UNET, { dtype: 'f16' });
    try {
      expect(f16.convIn.weight.dtype).toBe('f16');
      // Not a fixture tolerance: this compares f16-ROUNDED weights with the f32 model, so the bound is f16's
      // storage error (~5e-4 relative per weight, accumulated over the net); measured max abs 1.6e-3.
      const rep = expectClose(await outOf(rt, f16), reference, { atol: 1e-2, rtol: 1e-2 }, 'f16 vs f32');
      expect(rep.maxAbs).toBeGreaterThan(0);
      console.info(`unet f16 storage vs f32: maxAbs ${rep.maxAbs.toExponential(2)}`);
    } finally {
      f16.dispose();
    }
    const entries = [...loadFixture('unet.safetensors').entries()].map(([name, t]) => {
      const d = t.data as Float32Array;
      const u32 = new Uint32Array(Float32Array.from(d).buffer);
      const bits = new Uint16Array(d.length);
      for (let i = 0; i < d.length; i++) {
        const x = u32[i]!;
        bits[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16; // round to nearest even
      }
      return { name, tensor: { dtype: 'bf16', shape: t.shape, data: bits } as HostTensor };
    });
    const bf16 = await UNet2DConditionModel.load(rt, await SafetensorsFile.open(bytesSource(writeSafetensors(entries), 'unet_bf16.safetensors')), TINY_UNET);
    try {
      expect(bf16.convIn.weight.dtype).toBe('f32');
      const rep = expectClose(await outOf(rt, bf16), reference, { atol: 5e-2, rtol: 5e-2 }, 'bf16 vs f32');
      console.info(`unet bf16 weights vs f32: maxAbs ${rep.maxAbs.toExponential(2)}`);
    } finally {
      bf16.dispose();
    }
  });

  it('bad inputs are typed errors before GPU work', async () => {
    const before = rt.dispatches;
    const live = rt.memory().liveBytes;
    await rt.scopeAsync(async () => {
      const s = rt.upload(io('sample').data, io('sample').shape);
      const c = rt.upload(io('encoder_hidden_states').data, io('encoder_hidden_states').shape);
      const mark = rt.dispatches;
      const f = (sample = s, t: unknown = 10, ctx = c, o = {}) => () => unet.forward(rt, sample, t as number, ctx, o);
      expect(f(rt.zeros([1, 3, 16, 16]))).toThrow(/3 channels/);
      expect(f(rt.zeros([1, 4, 15, 16]))).toThrow(ShapeError);
      expect(f(rt.zeros([1, 4, 16]))).toThrow(ShapeError);
      expect(f(s, 10, rt.zeros([2, 77, 32]))).toThrow(ShapeError);
      expect(f(s, 10, rt.zeros([1, 77, 31]))).toThrow(ShapeError);
      expect(f(s, NaN)).toThrow(ArgumentError);
      expect(f(s, [1, 2])).toThrow(/2 timesteps for a batch of 1/);
      expect(f(s, rt.zeros([3]))).toThrow(ShapeError);
      expect(f(s, 'x')).toThrow(ArgumentError);
      expect(f(s, 10, c, { timestepCond: rt.zeros([1, 32]) })).toThrow(/no time_cond_proj_dim/);
      expect(rt.dispatches - mark).toBe(0);
    });
    expect(rt.memory().liveBytes).toBe(live);
    expect(rt.dispatches).toBeGreaterThanOrEqual(before);
  });

  it('weights: missing, extra and mis-shaped keys are WeightErrors naming the key; nothing stays allocated', async () => {
    const f = loadFixture('unet.safetensors');
    const src = (edit: (m: Map<string, { shape: number[]; data: Float32Array }>) => void): TensorSource => {
      const m = new Map([...f.entries()].map(([k, t]) => [k, { shape: [...t.shape], data: t.data as Float32Array }]));
      edit(m);
      return {
        name: 'edited',
        keys: () => [...m.keys()],
        info: (k) => ({ dtype: 'F32', shape: m.get(k)!.shape }),
        read: async (k) => ({ dtype: 'f32', shape: m.get(k)!.shape, data: m.get(k)!.data }),
      };
    };
    const live = rt.memory().liveBytes;
    await expect(UNet2DConditionModel.load(rt, src((m) => m.delete('mid_block.attentions.0.proj_in.weight')), TINY_UNET)).rejects.toThrow(/mid_block\.attentions\.0\.proj_in\.weight.*missing/);
    await expect(UNet2DConditionModel.load(rt, src((m) => m.set('add_embedding.linear_1.weight', { shape: [2], data: new Float32Array(2) })), TINY_UNET)).rejects.toThrow(/add_embedding\.linear_1\.weight/);
    await expect(UNet2DConditionModel.load(rt, src((m) => m.set('conv_in.bias', { shape: [31], data: new Float32Array(31) })), TINY_UNET)).rejects.toThrow(WeightError);
    // an LCM config needs cond_proj
    await expect(UNet2DConditionModel.load(rt, src(() => {}), TINY_UNET_LCM)).rejects.toThrow(/time_embedding\.cond_proj\.weight/);
    expect(rt.memory().liveBytes).toBe(live);
  });
});

describe('UNet2DConditionModel, LCM-distilled (unet_lcm)', () => {
  let rt: Runtime;
  let unet: UNet2DConditionModel;
  beforeAll(async () => {
    rt = await testRuntime();
    unet = await UNet2DConditionModel.load(rt, fixtureSource(loadFixture('unet_lcm.safetensors'), 'unet_lcm'), TINY_UNET_LCM);
  });
  afterAll(() => unet?.dispose());
  const lcm = (k: string) => fx('unet_lcm.io.safetensors', k);

  it('timestep_cond = guidanceEmbedding(w = g − 1) matches the fixture', async () => {
    expect(lcm('w').data[0]).toBe(lcm('guidance_scale').data[0]! - 1);
    const cond = await rt.scopeAsync(async () => rt.read(guidanceEmbedding(rt, rt.upload(lcm('w').data, [1]), 32)));
    const rep = expectClose(cond, lcm('timestep_cond').data, tolerance('unet_lcm', 'timestep_cond'), 'timestep_cond');
    console.info(`unet_lcm timestep_cond: maxAbs ${rep.maxAbs.toExponential(2)}`);
  });

  it('out with timestep_cond (and its debug outputs, cond_proj included)', async () => {
    const res = await unetResults(rt, nodeLoader, { io: 'unet_lcm.io.safetensors', model: unet, timestepCond: true, tol: tolerance('unet_lcm', 'out') });
    expect(res.map((r) => r.name)).toContain('debug.time_embedding.cond_proj');
    for (const r of res) {
      const rep = expectClose(r.actual, r.expected, r, `unet_lcm ${r.name}`);
      if (r.name === 'out') console.info(`unet_lcm out: maxAbs ${rep.maxAbs.toExponential(2)}`);
    }
  });

  it('out from our own guidance embedding, and out_without_timestep_cond', async () => {
    const run = (withCond: boolean) =>
      rt.scopeAsync(async () => {
        const cond = withCond ? guidanceEmbedding(rt, rt.upload(lcm('w').data, [1]), 32) : undefined;
        const out = unet.forward(rt, rt.upload(lcm('sample').data, lcm('sample').shape), lcm('timestep').data[0]!, rt.upload(lcm('encoder_hidden_states').data, [1, 77, 32]), { timestepCond: cond });
        return rt.read(out);
      });
    const tol = tolerance('unet_lcm', 'out');
    expectClose(await run(true), lcm('out').data, tol, 'out (own embedding)');
    const without = await run(false);
    expectClose(without, lcm('out_without_timestep_cond').data, tol, 'out_without_timestep_cond');
    // the condition matters: a port that drops it fails the first comparison
    expect(Math.max(...without.map((v, i) => Math.abs(v - lcm('out').data[i]!)))).toBeGreaterThan(10 * tol.atol);
  });

  it('timestepCond of the wrong width is a ShapeError', async () => {
    await rt.scopeAsync(async () => {
      expect(() => unet.forward(rt, rt.zeros([1, 4, 16, 16]), 1, rt.zeros([1, 77, 32]), { timestepCond: rt.zeros([1, 31]) })).toThrow(ShapeError);
    });
  });
});
