/**
 * CfmUNet (fm-boosting EfficientUNet): config parsing and refusals, cfm.io (out + every debug.* sub-module output) with
 * the plain and the training-layout weights, the Lightning checkpoint's EMA and online weights, the REFERENCE §11.3
 * deterministic-weight vector of the tiny config, the prepared-context path, and typed errors for bad input.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { cfmWeightsFromCheckpoint, openCheckpoint } from '../../src/io/checkpoint.js';
import { SafetensorsFile, writeSafetensors, type HostTensor, type TensorSource } from '../../src/io/safetensors.js';
import { fileSource } from '../../src/node/fs-source.js';
import { cfmKeyRenamer, CfmUNet, CfmUNetConfig, checkCfmConfig, parseCfmUNetConfig } from '../../src/models/cfm-unet.js';
import { ArgumentError, ConfigError, ShapeError, WeightError } from '../../src/runtime/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { expectClose } from '../helpers/close.js';
import { nodeGPU } from '../../src/node/gpu.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import { FIXTURES, fx, loadFixture, tolerance } from '../helpers/fixtures.js';
import { cfmIoResults, splitInput, TINY_CFM_CONFIG, TINY_CFM_CONFIG_JSON } from '../shared/fixtures-cfm.js';
import { recordShapes } from '../shared/fixtures-unet.js';

// dawn.node (webgpu 0.6.2) crashes once the GPU object that made a device is garbage-collected, and
// testRuntime() keeps only the device: this file holds the GPU for as long as it runs.
let gpu: GPU | undefined;
let shared: Promise<Runtime> | undefined;
function testRuntime(): Promise<Runtime> {
  shared ??= nodeGPU().then((g) => createRuntime({ gpu: (gpu = g), log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 }));
  return shared;
}


const NET_PARAMS = TINY_CFM_CONFIG_JSON.fm_cfg.params.net_cfg.params;

describe('CfmUNet config', () => {
  it('reads cfm.config.json (the fm_cfg wrapper) and every inner wrapper', () => {
    const file = JSON.parse(readFileSync(FIXTURES + 'cfm.config.json', 'utf8')) as unknown;
    const want: CfmUNetConfig = {
      inChannels: 8, modelChannels: 32, outChannels: 4, numResBlocks: 1, channelMult: [1, 2], attentionResolutions: [2],
      dimHead: 8, numHeads: 2, useScaleShiftNorm: true, convResample: true, poolFactor: -1, useLinearAttn: false,
    };
    expect(parseCfmUNetConfig(file)).toEqual(want);
    expect(parseCfmUNetConfig({ net_cfg: { params: NET_PARAMS } })).toEqual(want);
    expect(parseCfmUNetConfig({ target: 'x', params: NET_PARAMS })).toEqual(want);
    expect(parseCfmUNetConfig(NET_PARAMS)).toEqual(want);
    expect(TINY_CFM_CONFIG).toEqual(want);
  });

  it('the released preset is configs/flow400_64-128/unet-base_psu.yaml', () => {
    const r = CfmUNetConfig.released;
    expect([r.inChannels, r.modelChannels, r.outChannels, r.numResBlocks, r.dimHead, r.numHeads]).toEqual([8, 128, 4, 3, 64, 4]);
    expect(r.channelMult).toEqual([1, 2, 4, 8]);
    expect(r.attentionResolutions).toEqual([8, 16]);
    expect(() => checkCfmConfig(r)).not.toThrow();
  });

  it.each([
    ['use_linear_attn true', { use_linear_attn: true }, /LinearQKVAttention/],
    ['pool_factor 2', { pool_factor: 2 }, /pool_factor 2/],
    ['conv_resample false', { conv_resample: false }, /conv_resample/],
    ['width not a multiple of 32', { model_channels: 48 }, /multiple of 32/],
    ['missing field', { num_heads: undefined }, /num_heads/],
    ['wrong type', { channel_mult: 'x' }, /channel_mult/],
    ['in ≤ out', { in_channels: 4 }, /must exceed/],
  ])('refuses %s with a ConfigError', (_, patch, msg) => {
    const bad = { ...NET_PARAMS, ...patch };
    expect(() => parseCfmUNetConfig({ fm_cfg: { params: { net_cfg: { params: bad } } } })).toThrow(ConfigError);
    expect(() => parseCfmUNetConfig({ fm_cfg: { params: { net_cfg: { params: bad } } } })).toThrow(msg);
  });

  it('refuses a JSON object without EfficientUNet parameters', () => {
    expect(() => parseCfmUNetConfig({ fm_cfg: { params: { schedule: 'linear' } } })).toThrow(ConfigError);
    expect(() => parseCfmUNetConfig(null)).toThrow(ConfigError);
  });
});

describe('CfmUNet weight layout', () => {
  it('asks for the §11.3 tiny config keys in state_dict order with their shapes', () => {
    const rows = readFileSync(FIXTURES + 'keys/cfm_tiny_testconfig.tsv', 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'));
    const shapes = recordShapes((w) => new CfmUNet(w, { ...TINY_CFM_CONFIG, dimHead: 16, numHeads: 2 }));
    expect([...shapes.keys()]).toEqual(rows.map((r) => r[1]));
    // Conv1d [out, in, 1] weights are read as 1×1 convolutions; everything else has the stored shape.
    const stored = rows.map((r) => r[2]!.replace(/[()\s]/g, '').split(',').filter(Boolean).map(Number));
    [...shapes.values()].forEach((s, i) => expect(s.filter((d, j) => !(d === 1 && j >= stored[i]!.length))).toEqual(stored[i]));
  });

  it('the released topology has 408 tensors and 305,806,340 parameters (REFERENCE §1.2)', () => {
    const shapes = recordShapes((w) => new CfmUNet(w, CfmUNetConfig.released));
    expect(shapes.size).toBe(408);
    expect([...shapes.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0)).toBe(305_806_340);
    expect(shapes.get('input_blocks.13.1.qkv.weight')).toEqual([768, 1024, 1, 1]);
    expect(shapes.get('output_blocks.3.2.conv.weight')).toEqual([1024, 1024, 3, 3]);
  });
});

describe('cfmKeyRenamer', () => {
  const keys = ['model.net.out.2.weight', 'ema_model.ema_model.net.out.2.weight', 'ema_model.step', 'first_stage.decoder.conv_in.weight', 'diffusion.alpha_bar_t'];
  it('prefers EMA, can take the online weights, drops the rest', () => {
    const ema = cfmKeyRenamer(keys);
    expect(keys.map(ema)).toEqual([null, 'out.2.weight', null, null, null]);
    const online = cfmKeyRenamer(keys, { ema: false });
    expect(keys.map(online)).toEqual(['out.2.weight', null, null, null, null]);
    expect(() => cfmKeyRenamer(['model.net.out.2.weight'], { ema: true })).toThrow(WeightError);
    expect(cfmKeyRenamer(['net.time_embed.0.weight'])('net.time_embed.0.weight')).toBe('time_embed.0.weight');
    expect(cfmKeyRenamer(['time_embed.0.weight'])('time_embed.0.weight')).toBe('time_embed.0.weight');
  });
});

describe('CfmUNet on the fixtures', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  async function fromFile(file: string, o: { ema?: boolean } = {}): Promise<CfmUNet> {
    const source = SafetensorsFile.open(await fileSource(FIXTURES + file));
    return CfmUNet.load(rt, { config: TINY_CFM_CONFIG_JSON, weights: await source, ...o });
  }

  it.each(['cfm.safetensors', 'cfm_trainer.safetensors'])('%s: out and every debug.* match cfm.io', async (file) => {
    const net = await fromFile(file);
    try {
      const res = await cfmIoResults(rt, net, loadFixture('cfm.io.safetensors'));
      expect(res.map((r) => r.name).sort()).toEqual([...loadFixture('cfm.io.safetensors').keys()].filter((k) => k === 'out' || k.startsWith('debug.')).sort());
      const tol = tolerance('cfm', 'out');
      for (const r of res) expectClose(r.result.actual, r.result.expected, tol, `${file} ${r.name}`);
    } finally {
      net.dispose();
    }
  });

  it('cfm_trainer.ckpt: EMA by default (out_ema), online on request (out_online)', async () => {
    const ckpt = await openCheckpoint(await fileSource(FIXTURES + 'cfm_trainer.ckpt'));
    const io = loadFixture('cfm_trainer_ckpt.io.safetensors');
    const [xt, ctx, shape] = splitInput(fx('cfm_trainer_ckpt.io.safetensors', 'x'));
    const t = io.get('t')!.data[0]!;
    const run = async (net: CfmUNet) => {
      try {
        return await rt.scopeAsync(async () => rt.read(net.forward(rt, rt.upload(xt, shape), rt.upload(ctx, shape), t)));
      } finally {
        net.dispose();
      }
    };
    const ema = await run(await CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: cfmWeightsFromCheckpoint(ckpt) }));
    expectClose(ema, io.get('out_ema')!.data, tolerance('cfm_trainer_ckpt', 'out_ema'), 'EMA via cfmWeightsFromCheckpoint');
    const online = await run(await CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: cfmWeightsFromCheckpoint(ckpt, { ema: false }) }));
    expectClose(online, io.get('out_online')!.data, tolerance('cfm', 'out'), 'online via cfmWeightsFromCheckpoint');
    // The checkpoint itself: same choice, made by CfmUNet.load.
    const direct = await run(await CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: ckpt }));
    expect(direct).toEqual(ema);
    const directOnline = await run(await CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: ckpt, ema: false }));
    expect(directOnline).toEqual(online);
    // The two weight sets really differ, so the selection above is observable.
    expect(Math.max(...ema.map((v, i) => Math.abs(v - online[i]!)))).toBeGreaterThan(1e-3);
  });

  it('a prepared context, a [1] time tensor and plain inputs give the same velocity; no buffers leak', async () => {
    const net = await fromFile('cfm.safetensors');
    try {
      const [xt, ctx, shape] = splitInput(fx('cfm.io.safetensors', 'x'));
      const t = fx('cfm.io.safetensors', 't');
      // warm-up: the embedding's frequency table is created once per runtime and kept
      await rt.scopeAsync(async () => rt.read(net.forward(rt, rt.upload(xt, shape), rt.upload(ctx, shape), 0)));
      await rt.sync();
      const before = rt.memory().liveBytes;
      const [a, b] = await rt.scopeAsync(async () => {
        const x = rt.upload(xt, shape);
        const c = rt.upload(ctx, shape);
        const plain = await rt.read(net.forward(rt, x, c, t.data[0]!));
        const cond = net.prepareContext(rt, c);
        try {
          // twice: the second call must not see anything of the first in the shared input buffer
          net.forward(rt, rt.upload(new Float32Array(xt.length).fill(3), shape), cond, 0.9);
          const prepared = await rt.read(net.forward(rt, x, cond, rt.upload(t.data, [1])));
          return [plain, prepared];
        } finally {
          cond.dispose();
        }
      });
      expect(b).toEqual(a);
      await rt.sync();
      expect(rt.memory().liveBytes).toBe(before);
    } finally {
      net.dispose();
    }
  });

  it('batch 2 with per-item times equals two single calls', async () => {
    const net = await fromFile('cfm.safetensors');
    try {
      const [xt, ctx, shape] = splitInput(fx('cfm.io.safetensors', 'x'));
      const two = (v: Float32Array) => {
        const o = new Float32Array(v.length * 2);
        o.set(v);
        o.set(v.map((x) => -x), v.length);
        return o;
      };
      const s2 = [2, ...shape.slice(1)];
      const got = await rt.scopeAsync(async () => rt.read(net.forward(rt, rt.upload(two(xt), s2), rt.upload(two(ctx), s2), rt.upload([0.25, 0.75], [2]))));
      const one = await rt.scopeAsync(async () => rt.read(net.forward(rt, rt.upload(xt, shape), rt.upload(ctx, shape), 0.25)));
      const other = await rt.scopeAsync(async () =>
        rt.read(net.forward(rt, rt.upload(xt.map((x) => -x), shape), rt.upload(ctx.map((x) => -x), shape), 0.75)),
      );
      expectClose(got.subarray(0, one.length), one, { atol: 1e-6, rtol: 1e-5 }, 'item 0');
      expectClose(got.subarray(one.length), other, { atol: 1e-6, rtol: 1e-5 }, 'item 1');
    } finally {
      net.dispose();
    }
  });

  it('typed errors for bad inputs, before any GPU work', async () => {
    const net = await fromFile('cfm.safetensors');
    try {
      const x = rt.upload(new Float32Array(4 * 16 * 16), [1, 4, 16, 16]);
      const c = rt.upload(new Float32Array(4 * 16 * 16), [1, 4, 16, 16]);
      const before = rt.dispatches;
      expect(() => net.forward(rt, rt.upload(new Float32Array(3 * 256), [1, 3, 16, 16]), c, 0.5)).toThrow(ShapeError);
      expect(() => net.forward(rt, x, rt.upload(new Float32Array(5 * 256), [1, 5, 16, 16]), 0.5)).toThrow(ShapeError);
      expect(() => net.forward(rt, rt.upload(new Float32Array(4 * 15 * 16), [1, 4, 15, 16]), c, 0.5)).toThrow(/multiples of 2/);
      expect(() => net.forward(rt, x, rt.upload(new Float32Array(4 * 64), [1, 4, 8, 8]), 0.5)).toThrow(ShapeError);
      expect(() => net.forward(rt, x, c, NaN)).toThrow(ArgumentError);
      expect(() => net.forward(rt, x, c, rt.upload([0.1, 0.2, 0.3], [3]))).toThrow(ShapeError);
      expect(() => net.prepareContext(rt, rt.upload(new Float32Array(8 * 256), [1, 8, 16, 16]))).toThrow(ShapeError);
      expect(rt.dispatches).toBe(before);
      x.dispose();
      c.dispose();
    } finally {
      net.dispose();
    }
  });

  it('missing, mis-shaped and extra weights are WeightErrors naming the key; nothing stays allocated', async () => {
    const src = await SafetensorsFile.open(await fileSource(FIXTURES + 'cfm.safetensors'));
    const all = await Promise.all(src.keys().map(async (k) => ({ name: k, tensor: await src.read(k) })));
    const mk = (list: { name: string; tensor: HostTensor }[]) => SafetensorsFile.open(bytesSource(writeSafetensors(list), 'edited.safetensors'));
    const before = rt.memory().liveBytes;
    const missing = await mk(all.filter((e) => e.name !== 'output_blocks.1.2.conv.weight'));
    await expect(CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: missing })).rejects.toThrow(/output_blocks\.1\.2\.conv\.weight/);
    await expect(CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: missing })).rejects.toThrow(WeightError);
    const extra = await mk([...all, { name: 'input_blocks.9.0.op.weight', tensor: { dtype: 'f32', shape: [2], data: new Float32Array(2) } }]);
    await expect(CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: extra })).rejects.toThrow(/input_blocks\.9\.0\.op\.weight/);
    const wrong = await mk(all.map((e) => (e.name === 'middle_block.1.qkv.weight' ? { name: e.name, tensor: { dtype: 'f32' as const, shape: [48, 63, 1], data: e.tensor.data.subarray(0, 48 * 63) } } : e)));
    await expect(CfmUNet.load(rt, { config: TINY_CFM_CONFIG, weights: wrong })).rejects.toThrow(/middle_block\.1\.qkv\.weight/);
    // The fixture weights under a config with other heads: the qkv shape no longer fits.
    await expect(CfmUNet.load(rt, { config: { ...TINY_CFM_CONFIG, numHeads: 4 }, weights: src })).rejects.toThrow(WeightError);
    await rt.sync();
    expect(rt.memory().liveBytes).toBe(before);
  });
});

/** REFERENCE §11.3: tensor k (state_dict order), element j = 0.05·sin(0.7k + 0.013j + 0.1). */
export function deterministicWeights(tsv: string): TensorSource {
  const rows = tsv.trim().split('\n').slice(1).map((l) => l.split('\t'));
  const list = rows.map(([k, key, shape]) => {
    const dims = shape!.replace(/[()\s]/g, '').split(',').filter(Boolean).map(Number);
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let j = 0; j < n; j++) data[j] = 0.05 * Math.sin(0.7 * Number(k) + 0.013 * j + 0.1);
    return { name: key!, tensor: { dtype: 'f32' as const, shape: dims, data } };
  });
  return new MemorySource('deterministic', list);
}

class MemorySource implements TensorSource {
  private readonly map: Map<string, HostTensor>;
  constructor(readonly name: string, list: { name: string; tensor: HostTensor }[]) {
    this.map = new Map(list.map((e) => [e.name, e.tensor]));
  }
  keys(): string[] {
    return [...this.map.keys()];
  }
  info(key: string) {
    const t = this.map.get(key)!;
    return { dtype: 'F32', shape: t.shape };
  }
  async read(key: string): Promise<HostTensor> {
    return this.map.get(key)!;
  }
}

/** x_t[i] = sin(0.37i), context[i] = cos(0.23i) over [1, 4, 16, 16]. */
export function deterministicInputs(): [Float32Array, Float32Array] {
  const n = 4 * 16 * 16;
  return [Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i)), Float32Array.from({ length: n }, (_, i) => Math.cos(0.23 * i))];
}

describe('REFERENCE §11.3 deterministic weights, tiny config', () => {
  it('matches the float64 reference (sum, sum|·|, first six, element 123, last)', async () => {
    const rt = await testRuntime();
    const config = { ...TINY_CFM_CONFIG, dimHead: 16, numHeads: 2 };
    const tsv = readFileSync(FIXTURES + 'keys/cfm_tiny_testconfig.tsv', 'utf8');
    const net = await CfmUNet.load(rt, { config, weights: deterministicWeights(tsv) });
    try {
      const [xt, ctx] = deterministicInputs();
      const s = [1, 4, 16, 16];
      const y = await rt.scopeAsync(async () => rt.read(net.forward(rt, rt.upload(xt, s), rt.upload(ctx, s), 0.25)));
      const sum = y.reduce((a, v) => a + v, 0);
      const sumAbs = y.reduce((a, v) => a + Math.abs(v), 0);
      // "an fp32 implementation should agree to ~1e-5 relative"
      expect(Math.abs(sum - 3.8413731750e1) / 3.8413731750e1).toBeLessThan(1e-5);
      expect(Math.abs(sumAbs - 3.8842551706e1) / 3.8842551706e1).toBeLessThan(1e-5);
      const want = [2.9465148761e-2, 2.2504876646e-2, 2.1650037761e-2, 2.2367205180e-2, 2.2129303036e-2, 2.1078474267e-2, 7.1246697831e-3, 4.7311193230e-2];
      const got = [...y.subarray(0, 6), y[123]!, y[y.length - 1]!];
      expectClose(got, want, { atol: 0, rtol: 1e-5 }, '§11.3 elements');
    } finally {
      net.dispose();
    }
  });
});


