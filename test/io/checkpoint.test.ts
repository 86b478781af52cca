import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ArgumentError, CheckpointError } from '../../src/runtime/errors.js';
import { f32ToF16 } from '../../src/runtime/dtype.js';
import { bytesSource, type ByteSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, type HostTensor } from '../../src/io/safetensors.js';
import { Checkpoint, cfmWeightsFromCheckpoint, convertCheckpoint, openCheckpoint } from '../../src/io/checkpoint.js';
import { PyDict, PyGlobal, PyObject, TorchTensor, unpickle, type PyValue } from '../../src/io/pickle.js';
import { ZipArchive } from '../../src/io/zip.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { rng } from '../helpers/random.js';
import { stateDictPickle, storageBytes, storedZip, torchZip, type TensorSpec } from './torch-zip.js';

const fileBytes = (name: string): Uint8Array => new Uint8Array(readFileSync(FIXTURES + name));
const source = (name: string): ByteSource => bytesSource(fileBytes(name), name);
const st = async (name: string): Promise<SafetensorsFile> => SafetensorsFile.open(source(name));

/** Exact equality of two tensors' dtype, shape and bits, reporting the first differing element. */
function expectSameBits(a: HostTensor, b: HostTensor, what: string): void {
  expect(a.dtype, `${what}: dtype`).toBe(b.dtype);
  expect(a.shape, `${what}: shape`).toEqual(b.shape);
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  expect(x.byteLength, `${what}: bytes`).toBe(y.byteLength);
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i]) expect.fail(`${what}: element ${Math.floor(i / a.data.BYTES_PER_ELEMENT)} differs (${a.data[Math.floor(i / a.data.BYTES_PER_ELEMENT)]} vs ${b.data[Math.floor(i / a.data.BYTES_PER_ELEMENT)]})`);
  }
}

async function refusal(p: Promise<unknown>): Promise<CheckpointError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  return err as CheckpointError;
}

const get = (v: PyValue | undefined, ...path: PyValue[]): PyValue | undefined => {
  for (const k of path) {
    if (v instanceof PyDict) v = v.get(k);
    else if (Array.isArray(v) && typeof k === 'number') v = (v as PyValue[])[k];
    else return undefined;
  }
  return v;
};

/** Plain-JSON view of pickled data (dicts → objects, tuples → arrays), for comparison with the descriptions. */
function plain(v: PyValue | undefined): unknown {
  if (v instanceof PyDict) return Object.fromEntries([...v].map(([k, x]) => [String(k), plain(x)]));
  if (Array.isArray(v)) return (v as PyValue[]).map(plain);
  if (typeof v === 'bigint') return Number(v);
  return v;
}

/** omegaconf DictConfig/ListConfig/AnyNode placeholders → their plain values (content under BUILD state `_content` / `_val`). */
function omega(v: PyValue | undefined): unknown {
  if (!(v instanceof PyObject)) return plain(v);
  const state = v.state as PyDict;
  if (v.$class === 'omegaconf.nodes.AnyNode') return plain(state.get('_val'));
  const content = state.get('_content');
  if (v.$class === 'omegaconf.dictconfig.DictConfig') return Object.fromEntries([...(content as PyDict)].map(([k, x]) => [String(k), omega(x)]));
  if (v.$class === 'omegaconf.listconfig.ListConfig') return (content as PyValue[]).map(omega);
  throw new Error(`unexpected ${v.$class}`);
}

describe('unet_ldm.ckpt (SD-1.5-style single file)', () => {
  let ckpt: Checkpoint;
  let ref: SafetensorsFile;
  const info = JSON.parse(readFileSync(`${FIXTURES}unet_ldm_ckpt.json`, 'utf8')) as { tensors: { key: string; shape: number[]; stride: number[]; storage: string; storage_offset: number; storage_type: string }[] };
  beforeAll(async () => {
    ckpt = await openCheckpoint(source('unet_ldm.ckpt'));
    ref = await st('unet_ldm.safetensors');
  });

  it('finds the archive under its non-default prefix and lists the state dict', () => {
    expect(ckpt.prefix).toBe('unet_ldm/');
    expect(ckpt.byteorder).toBe('little');
    expect(ckpt.keys()).toEqual(info.tensors.map((t) => t.key));
    expect(ckpt.stateDictKeys()).toEqual(ckpt.keys());
    expect([...(ckpt.root as PyDict).keys()]).toEqual(['state_dict']);
  });

  it('every model.diffusion_model.* tensor equals unet_ldm.safetensors exactly', async () => {
    const unetKeys = ckpt.keys().filter((k) => k.startsWith('model.diffusion_model.'));
    expect(unetKeys.sort()).toEqual(ref.keys().sort());
    expect(unetKeys).toHaveLength(304);
    for (const k of unetKeys) {
      expect(ckpt.info(k)).toEqual(ref.info(k));
      expectSameBits(await ckpt.read(k), await ref.read(k), k);
    }
  });

  it('records storage, offset, shape and stride of every tensor as unet_ldm_ckpt.json lists them', () => {
    for (const t of info.tensors) {
      const v = ckpt.tensor(t.key);
      expect([`unet_ldm/data/${v.storage.key}`, v.storage.storageType, v.storageOffset, v.shape, v.stride]).toEqual([t.storage, t.storage_type, t.storage_offset, t.shape, t.stride]);
    }
  });

  it('channels-last conv weight, shared storages, transposed view, float16 extra, Parameter', async () => {
    const conv = ckpt.tensor('model.diffusion_model.input_blocks.0.0.weight');
    expect(conv.stride).toEqual([36, 1, 12, 4]);
    const w0 = ckpt.tensor('model.diffusion_model.time_embed.0.weight');
    const b0 = ckpt.tensor('model.diffusion_model.time_embed.0.bias');
    expect(b0.storage).toBe(w0.storage);
    expect([w0.storageOffset, b0.storageOffset]).toEqual([0, 4096]);
    const w2 = ckpt.tensor('model.diffusion_model.time_embed.2.weight');
    const tr = ckpt.tensor('extra.transposed');
    expect(tr.storage).toBe(w2.storage);
    expect(ckpt.tensor('model.diffusion_model.time_embed.2.bias').storage).toBe(w2.storage);
    expect([w2.storageOffset, tr.storageOffset, tr.stride]).toEqual([128, 128, [1, 128]]);

    const w = (await ckpt.read('model.diffusion_model.time_embed.2.weight')).data as Float32Array;
    const t = (await ckpt.read('extra.transposed')).data as Float32Array;
    for (let i = 0; i < 128; i++) for (let j = 0; j < 128; j++) if (t[i * 128 + j] !== w[j * 128 + i]) expect.fail(`transposed[${i},${j}]`);

    const half = await ckpt.read('extra.float16');
    expect([half.dtype, half.shape, ckpt.info('extra.float16').dtype]).toEqual(['f16', [4, 32, 3, 3], 'F16']);
    const out2 = (await ref.read('model.diffusion_model.out.2.weight')).data as Float32Array;
    expect([...(half.data as Uint16Array)]).toEqual([...out2].map(f32ToF16));

    const p = ckpt.tensor('model.diffusion_model.out.0.weight');
    expect([p.isParameter, p.requiresGrad]).toEqual([true, true]);
    expect(ckpt.keys().filter((k) => ckpt.tensor(k).isParameter)).toEqual(['model.diffusion_model.out.0.weight']);
  });

  it('reads lazily: opening reads the directory and the pickle; a tensor read fetches only its bytes', async () => {
    const inner = source('unet_ldm.ckpt');
    const reads: [number, number][] = [];
    const counting: ByteSource = { name: inner.name, size: inner.size, read: (o, n, s) => (reads.push([o, n]), inner.read(o, n, s)) };
    const c = await openCheckpoint(counting);
    const opened = reads.reduce((s, r) => s + r[1], 0);
    expect(opened).toBeLessThan(200_000);
    expect(opened).toBeLessThan(inner.size / 20);
    reads.length = 0;
    const bias = await c.read('model.diffusion_model.time_embed.0.bias');
    expect(bias.shape).toEqual([128]);
    const zip = await ZipArchive.open(bytesSource(fileBytes('unet_ldm.ckpt')));
    const base = await zip.dataOffset(zip.entry('unet_ldm/data/2')!);
    // the local header once, then exactly the 128 floats at storage offset 4096
    expect(reads.at(-1)).toEqual([base + 4096 * 4, 512]);
    expect(reads.reduce((s, r) => s + r[1], 0)).toBe(512 + 30);
  });

  it('honours an abort signal', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(ckpt.read('extra.float16', ac.signal)).rejects.toThrow(/aborted/);
  });
});

describe('cfm_trainer.ckpt (PyTorch-Lightning checkpoint of TrainerFMBoost)', () => {
  let ckpt: Checkpoint;
  let cfm: SafetensorsFile;
  const desc = JSON.parse(readFileSync(`${FIXTURES}cfm_trainer_ckpt.json`, 'utf8')) as Record<string, any>;
  const keysJson = JSON.parse(readFileSync(`${FIXTURES}cfm_trainer.keys.json`, 'utf8')) as { keys: { key: string; shape: number[]; dtype: string }[] };
  const ST: Record<string, string> = { float32: 'F32', int64: 'I64', bool: 'BOOL' };
  beforeAll(async () => {
    ckpt = await openCheckpoint(source('cfm_trainer.ckpt'));
    cfm = await st('cfm.safetensors');
  });

  it('has the Lightning top-level layout and the 383-tensor state dict of cfm_trainer.keys.json', () => {
    expect(ckpt.prefix).toBe('archive/');
    const root = ckpt.root as PyDict;
    expect([...root.keys()]).toEqual(desc.top_level.map((t: { key: string }) => t.key));
    expect([root.get('epoch'), root.get('global_step'), root.get('pytorch-lightning_version'), root.get('hparams_name')]).toEqual([3, 20000, '2.4.0', 'kwargs']);
    expect(ckpt.keys()).toHaveLength(383);
    expect(ckpt.keys()).toEqual(keysJson.keys.map((k) => k.key));
    for (const k of keysJson.keys) expect(ckpt.info(k.key), k.key).toEqual({ dtype: ST[k.dtype], shape: k.shape });
    // Module.state_dict()'s _metadata arrives as BUILD state of the OrderedDict, not as a key
    expect(ckpt.stateDict!.state).toBeInstanceOf(PyDict);
    expect((ckpt.stateDict!.state as PyDict).has('_metadata')).toBe(true);
  });

  it('model.net.* equals cfm.safetensors; first_stage.* equals vae_ldm; buffers and EMA bookkeeping', async () => {
    for (const k of cfm.keys()) expectSameBits(await ckpt.read(`model.net.${k}`), await cfm.read(k), k);
    const vae = await st('vae_ldm.safetensors');
    for (const k of vae.keys()) expectSameBits(await ckpt.read(k.replace(/^first_stage_model\./, 'first_stage.')), await vae.read(k), k);
    const trainer = await st('cfm_trainer.safetensors');
    expectSameBits(await ckpt.read('diffusion.alpha_bar_t'), await trainer.read('diffusion.alpha_bar_t'), 'alpha_bar_t');
    expect(await ckpt.read('ema_model.initted')).toEqual({ dtype: 'bool', shape: [], data: new Uint8Array([1]) });
    expect(await ckpt.read('ema_model.step')).toEqual({ dtype: 'i64', shape: [], data: new BigInt64Array([20000n]) });
  });

  it('EMA differs from online; cfmWeightsFromCheckpoint picks EMA by default and online when asked', async () => {
    const ema = cfmWeightsFromCheckpoint(ckpt);
    const online = cfmWeightsFromCheckpoint(ckpt, { ema: false });
    expect([ema.variant, ema.prefix, online.variant, online.prefix]).toEqual(['ema', 'ema_model.ema_model.net.', 'online', 'model.net.']);
    expect(cfmWeightsFromCheckpoint(ckpt, { ema: true }).prefix).toBe('ema_model.ema_model.net.');
    expect(ema.keys().sort()).toEqual(cfm.keys().sort());
    expect(online.keys().sort()).toEqual(cfm.keys().sort());
    let maxDiff = 0;
    for (const k of cfm.keys()) {
      expect(ema.info(k)).toEqual(cfm.info(k));
      const e = (await ema.read(k)).data as Float32Array;
      expectSameBits(await ema.read(k), await ckpt.read(`ema_model.ema_model.net.${k}`), k);
      expectSameBits(await online.read(k), await cfm.read(k), k);
      const o = (await cfm.read(k)).data as Float32Array;
      let d = 0;
      for (let i = 0; i < e.length; i++) d = Math.max(d, Math.abs(e[i]! - o[i]!));
      expect(d, `${k}: EMA equals online`).toBeGreaterThan(0);
      maxDiff = Math.max(maxDiff, d);
    }
    expect(maxDiff).toBeCloseTo(desc.state_dict.ema.max_abs_diff_to_online, 6);
  });

  it('keeps hyper_parameters as inert data: first_stage_cfg is an omegaconf placeholder with reachable content', () => {
    const hp = get(ckpt.root, 'hyper_parameters') as PyDict;
    expect(hp.size).toBe(22);
    const cfg = hp.get('first_stage_cfg') as PyObject;
    expect(cfg).toBeInstanceOf(PyObject);
    expect(cfg.$class).toBe('omegaconf.dictconfig.DictConfig');
    const target = get(cfg.state as PyDict, '_content', 'target') as PyObject;
    expect(target.$class).toBe('omegaconf.nodes.AnyNode');
    expect((target.state as PyDict).get('_val')).toBe('fmboost.kl_autoencoder.AutoencoderKL');
    expect((target.state as PyDict).get('_parent')).toBe(cfg); // omegaconf's parent link: a cycle, kept as a reference
    const meta = (cfg.state as PyDict).get('_metadata') as PyObject;
    expect(meta.$class).toBe('omegaconf.base.ContainerMetadata');
    const resolverCache = (meta.state as PyDict).get('resolver_cache') as PyDict;
    expect([resolverCache.$class, (resolverCache.defaultFactory as PyGlobal).$global]).toEqual(['collections.defaultdict', '__builtin__.dict']);
    expect(((meta.state as PyDict).get('ref_type') as PyGlobal).$global).toBe('typing.Any');
    expect(omega(cfg)).toEqual(desc.hyper_parameters.first_stage_cfg.omegaconf_DictConfig);
    // everything else is plain data equal to the description
    for (const [k, v] of Object.entries(desc.hyper_parameters)) if (k !== 'first_stage_cfg') expect(plain(hp.get(k)), k).toEqual(v);
    expect(plain(get(ckpt.root, 'loops'))).toEqual(desc.loops);
    expect(plain(get(ckpt.root, 'lr_schedulers'))).toEqual(desc.lr_schedulers);
  });

  it('optimizer and callback tensors outside the state dict are readable through readTensor', async () => {
    const groups = get(ckpt.root, 'optimizer_states', 0, 'param_groups', 0) as PyDict;
    expect(plain(groups.get('betas'))).toEqual([0.9, 0.999]);
    expect(plain(groups.get('params'))).toEqual([...Array(380).keys()]);
    const s0 = get(ckpt.root, 'optimizer_states', 0, 'state', 0) as PyDict;
    const avg = await ckpt.readTensor(s0.get('exp_avg') as TorchTensor);
    expect(avg.shape).toEqual([128, 32]);
    expect((await ckpt.readTensor(s0.get('step') as TorchTensor)).data).toEqual(new Float32Array([1]));
    const cb = get(ckpt.root, 'callbacks') as PyDict;
    const kth = (cb.values().next().value as PyDict).get('kth_value') as TorchTensor;
    expect((await ckpt.readTensor(kth)).data).toEqual(new Float32Array([Infinity]));
  });

  it('convertCheckpoint writes the EMA weights (f32 and f16) and other selections as safetensors', async () => {
    const emaSrc = cfmWeightsFromCheckpoint(ckpt);
    const f32 = await SafetensorsFile.open(bytesSource(await convertCheckpoint(source('cfm_trainer.ckpt')), 'ema.safetensors'));
    expect(f32.keys().sort()).toEqual(cfm.keys().sort());
    expect(f32.metadata).toMatchObject({ format: 'pt', weights: 'ema:ema_model.ema_model.net.' });
    for (const k of cfm.keys()) expectSameBits(await f32.read(k), await emaSrc.read(k), k);

    const f16 = await SafetensorsFile.open(bytesSource(await convertCheckpoint(ckpt, { select: 'ema', dtype: 'f16' }), 'ema16.safetensors'));
    for (const k of cfm.keys()) {
      const h = await f16.read(k);
      expect(h.dtype).toBe('f16');
      expect([...(h.data as Uint16Array)]).toEqual([...((await emaSrc.read(k)).data as Float32Array)].map(f32ToF16));
    }

    const online = await SafetensorsFile.open(bytesSource(await convertCheckpoint(ckpt, { select: 'online', dtype: 'f32' }), 'online.safetensors'));
    for (const k of cfm.keys()) expectSameBits(await online.read(k), await cfm.read(k), k);

    const vae = await SafetensorsFile.open(bytesSource(await convertCheckpoint(ckpt, { prefix: 'first_stage.' }), 'vae.safetensors'));
    const vaeRef = await st('vae_ldm.safetensors');
    expect(vae.keys().sort()).toEqual(vaeRef.keys().map((k) => k.replace(/^first_stage_model\./, '')).sort());
    const all = await SafetensorsFile.open(bytesSource(await convertCheckpoint(ckpt, { select: 'all', dtype: 'f16' }), 'all.safetensors'));
    expect(all.keys()).toEqual(ckpt.keys());
    expect([all.info('ema_model.step').dtype, all.info('ema_model.initted').dtype, all.info('diffusion.alpha_bar_t').dtype]).toEqual(['I64', 'BOOL', 'F16']);

    await expect(convertCheckpoint(ckpt, { select: 'ema', prefix: 'x.' })).rejects.toBeInstanceOf(ArgumentError);
    await expect(convertCheckpoint(ckpt, { dtype: 'f64' as 'f32' })).rejects.toBeInstanceOf(ArgumentError);
    await expect(convertCheckpoint(ckpt, { prefix: 'nothing.' })).rejects.toBeInstanceOf(CheckpointError);
  });
});

describe('malicious checkpoints', () => {
  const cases = [
    ['malicious.ckpt', "refused GLOBAL 'posix.system'"],
    ['malicious_builtins.ckpt', "refused GLOBAL '__builtin__.eval' (builtins.eval)"],
    ['malicious_proto4.ckpt', "refused GLOBAL 'builtins.eval'"],
  ] as const;
  afterEach(() => vi.restoreAllMocks());

  it.each(cases)('%s is refused with a CheckpointError naming the GLOBAL, and no payload text appears', async (file, message) => {
    const printed: string[] = [];
    const capture = (...args: unknown[]): boolean => (printed.push(args.map(String).join(' ')), true);
    vi.spyOn(process.stdout, 'write').mockImplementation(capture as typeof process.stdout.write);
    vi.spyOn(process.stderr, 'write').mockImplementation(capture as typeof process.stderr.write);
    vi.spyOn(console, 'log').mockImplementation(capture);
    const err = await refusal(openCheckpoint(source(file)));
    await refusal(convertCheckpoint(source(file), { select: 'all' }));
    vi.restoreAllMocks();
    expect(err.message).toContain(message);
    expect(err.message).toContain(file);
    expect(err.message).not.toMatch(/fmboost-pickle-executed|print\(|echo /);
    expect(printed.join('\n')).not.toContain('fmboost-pickle-executed');
  });

  it('the refusal comes from the GLOBAL itself, before any call: the pickle is well formed otherwise', async () => {
    const zip = await ZipArchive.open(source('malicious.ckpt'));
    const pkl = await zip.read(zip.entry('archive/data.pkl')!);
    // Replacing 'posix\nsystem' with an unknown (same-length) name moves the refusal to the REDUCE.
    const text = new TextDecoder('latin1').decode(pkl);
    const at = text.indexOf('posix\nsystem\n');
    expect(at).toBeGreaterThan(0);
    const renamed = pkl.slice();
    renamed.set(new TextEncoder().encode('mymod\nsysfun\n'), at);
    expect(() => unpickle(renamed, { name: 'renamed' })).toThrow(/refused call of 'mymod.sysfun'/);
  });
});

describe('hand-built checkpoints', () => {
  const open = (pkl: Uint8Array, storages: Record<string, Uint8Array>, o?: Parameters<typeof torchZip>[2], opts?: Parameters<typeof openCheckpoint>[1]): Promise<Checkpoint> =>
    openCheckpoint(bytesSource(torchZip(pkl, storages, o), 'hand.ckpt'), opts);

  it('converts every storage type and honours a big-endian byteorder record', async () => {
    const specs: Record<string, TensorSpec> = {
      d: { storageKey: 'd', storageType: 'DoubleStorage', storageNumel: 3, shape: [3] },
      s: { storageKey: 's', storageType: 'ShortStorage', storageNumel: 2, shape: [2] },
      c: { storageKey: 'c', storageType: 'CharStorage', storageNumel: 2, shape: [2] },
      u: { storageKey: 'u', storageType: 'ByteStorage', storageNumel: 2, shape: [2] },
      l: { storageKey: 'l', storageType: 'LongStorage', storageNumel: 2, shape: [2] },
      i: { storageKey: 'i', storageType: 'IntStorage', storageNumel: 1, shape: [] },
      b: { storageKey: 'b', storageType: 'BFloat16Storage', storageNumel: 2, shape: [2] },
      f: { storageKey: 'f', storageNumel: 4, shape: [2, 2], stride: [1, 2] },
    };
    for (const big of [false, true]) {
      const storages = {
        d: storageBytes('f64', [0.5, -2, 1e300], big),
        s: storageBytes('i16', [-3, 300], big),
        c: new Uint8Array([0xff, 5]),
        u: new Uint8Array([0xff, 5]),
        l: storageBytes('i64', [-7, 2 ** 40], big),
        i: new Uint8Array(big ? [0, 0, 1, 2] : [2, 1, 0, 0]),
        b: storageBytes('f16bits', [0x3f80, 0xc000], big),
        f: storageBytes('f32', [1, 2, 3, 4], big),
      };
      const c = await open(stateDictPickle(specs), storages, { byteorder: big ? 'big' : 'little' });
      expect(c.byteorder).toBe(big ? 'big' : 'little');
      expect(await c.read('d')).toEqual({ dtype: 'f32', shape: [3], data: new Float32Array([0.5, -2, Infinity]) });
      expect(c.info('d')).toEqual({ dtype: 'F32', shape: [3] });
      expect(await c.read('s')).toEqual({ dtype: 'i32', shape: [2], data: new Int32Array([-3, 300]) });
      expect((await c.read('c')).data).toEqual(new Int32Array([-1, 5]));
      expect((await c.read('u')).data).toEqual(new Int32Array([255, 5]));
      expect((await c.read('l')).data).toEqual(new BigInt64Array([-7n, 2n ** 40n]));
      expect(await c.read('i')).toEqual({ dtype: 'i32', shape: [], data: new Int32Array([258]) });
      expect(await c.read('b')).toEqual({ dtype: 'bf16', shape: [2], data: new Uint16Array([0x3f80, 0xc000]) });
      expect((await c.read('f')).data).toEqual(new Float32Array([1, 3, 2, 4]));
    }
    // no byteorder record (older writers): little-endian
    const c = await open(stateDictPickle({ f: { storageKey: 'f', storageNumel: 1, shape: [1] } }), { f: storageBytes('f32', [7]) }, { byteorder: null });
    expect((await c.read('f')).data).toEqual(new Float32Array([7]));
    await refusal(open(stateDictPickle({}), {}, { byteorder: 'middle' }));
  });

  it('materialises strided, offset, broadcast and empty views', async () => {
    const vals = Array.from({ length: 24 }, (_, i) => i);
    const specs: Record<string, TensorSpec> = {
      perm: { storageKey: '0', storageNumel: 24, shape: [2, 3, 4], stride: [1, 8, 2] }, // a permuted view
      slice: { storageKey: '0', storageNumel: 24, offset: 5, shape: [3, 2], stride: [6, 2] },
      bcast: { storageKey: '0', storageNumel: 24, offset: 23, shape: [2, 3], stride: [0, 0] },
      empty: { storageKey: '0', storageNumel: 24, offset: 24, shape: [0, 3] },
      scalar: { storageKey: '0', storageNumel: 24, offset: 9, shape: [] },
    };
    const c = await open(stateDictPickle(specs, false), { 0: storageBytes('f32', vals) });
    const expectPerm: number[] = [];
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) expectPerm.push(i + 8 * j + 2 * k);
    expect([...((await c.read('perm')).data as Float32Array)]).toEqual(expectPerm);
    expect([...((await c.read('slice')).data as Float32Array)]).toEqual([5, 7, 11, 13, 17, 19]);
    expect([...((await c.read('bcast')).data as Float32Array)]).toEqual([23, 23, 23, 23, 23, 23]);
    expect(await c.read('empty')).toEqual({ dtype: 'f32', shape: [0, 3], data: new Float32Array(0) });
    expect(await c.read('scalar')).toEqual({ dtype: 'f32', shape: [], data: new Float32Array([9]) });
    // a plain state dict at the root (torch.save(model.state_dict()))
    expect(c.keys()).toEqual(Object.keys(specs));
  });

  it('refuses views that would exceed maxTensorBytes, missing or short storage records, and zips without a pickle', async () => {
    const huge = await open(stateDictPickle({ x: { storageKey: '0', storageNumel: 1, shape: [1 << 20, 1 << 12], stride: [0, 0] } }), { 0: storageBytes('f32', [1]) }, {}, { maxTensorBytes: 1 << 20 });
    expect((await refusal(huge.read('x'))).message).toContain('over the limit of 1048576');
    expect((await refusal(open(stateDictPickle({ x: { storageKey: '9', storageNumel: 1, shape: [1] } }), {}))).message).toContain("storage '9' (torch.FloatStorage) has no record 'archive/data/9'");
    expect((await refusal(open(stateDictPickle({ x: { storageKey: '0', storageNumel: 4, shape: [4] } }), { 0: new Uint8Array(15) }))).message).toContain('holds 4 × 4-byte elements but its record has 15 bytes');
    expect((await refusal(openCheckpoint(bytesSource(new Uint8Array(0), 'empty.ckpt')))).message).toContain('too small');
    expect((await refusal(openCheckpoint(bytesSource(storedZip([{ name: 'a/other.pkl', data: new Uint8Array(1) }]), 'np.zip')))).message).toContain('no data.pkl record');
    expect((await refusal(openCheckpoint(bytesSource(storedZip([{ name: 'a/data.pkl', data: stateDictPickle({}) }, { name: 'b/data.pkl', data: stateDictPickle({}) }]), 'two.zip')))).message).toContain('several data.pkl records');
    expect((await refusal(open(stateDictPickle({}), {}, {}, { pickleLimits: { maxBytes: 10 } }))).message).toContain('over the pickle limit of 10');
    expect((await refusal(open(stateDictPickle({}), {}).then((c) => c.read('nope')))).message).toContain("no tensor 'nope'");
  });

  it('reads ZIP64 checkpoints', async () => {
    const c = await open(stateDictPickle({ w: { storageKey: '0', storageNumel: 2, shape: [2] } }), { 0: storageBytes('f32', [1.5, -1]) }, { zip64: true });
    expect((await c.read('w')).data).toEqual(new Float32Array([1.5, -1]));
  });

  it('cfmWeightsFromCheckpoint: bare and net.-prefixed EfficientUNet state dicts, and clear errors', async () => {
    const names = ['time_embed.0.weight', 'input_blocks.0.0.weight', 'out.2.weight'];
    const sd = (prefix: string): Uint8Array => stateDictPickle(Object.fromEntries(names.map((n) => [prefix + n, { storageKey: '0', storageNumel: 1, shape: [1] }])), false);
    const bare = cfmWeightsFromCheckpoint(await open(sd(''), { 0: storageBytes('f32', [1]) }));
    expect([bare.variant, bare.keys()]).toEqual(['plain', names]);
    expect((await bare.read('out.2.weight')).data).toEqual(new Float32Array([1]));
    expect(cfmWeightsFromCheckpoint(await open(sd('net.'), { 0: storageBytes('f32', [1]) })).keys()).toEqual(names);
    const online = await open(sd('model.net.'), { 0: storageBytes('f32', [1]) });
    expect(cfmWeightsFromCheckpoint(online).variant).toBe('online');
    expect(() => cfmWeightsFromCheckpoint(online, { ema: true })).toThrow(CheckpointError);
    expect(() => cfmWeightsFromCheckpoint(online, { ema: true })).toThrow(/EMA weights were requested/);
    const other = await open(sd('model.diffusion_model.'), { 0: storageBytes('f32', [1]) });
    expect(() => cfmWeightsFromCheckpoint(other)).toThrow(/no CFM EfficientUNet weights.*top-level key groups: model/);
    expect(() => cfmWeightsFromCheckpoint(online).read('missing')).toThrow(/no tensor 'model.net.missing'/);
  });
});

describe('fuzz: mutated checkpoints and pickles load or throw CheckpointError, quickly', () => {
  /** Seeded mutations: bit flips, interesting bytes, 32-bit overwrites, truncation, deletion, duplication. */
  function mutate(src: Uint8Array, r: () => number, region?: [number, number]): Uint8Array {
    const [lo, hi] = region ?? [0, src.length];
    const pick = (): number => lo + Math.floor(r() * (hi - lo));
    const kind = Math.floor(r() * (region ? 3 : 6));
    let b = src.slice();
    if (kind === 0) {
      for (let n = 1 + Math.floor(r() * 4); n > 0; n--) b[pick()]! ^= 1 << Math.floor(r() * 8);
    } else if (kind === 1) {
      const vals = [0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x2e, 0x28, 0x52, 0x81, 0x62, 0x51, Math.floor(r() * 256)];
      for (let n = 1 + Math.floor(r() * 3); n > 0; n--) b[pick()] = vals[Math.floor(r() * vals.length)]!;
    } else if (kind === 2) {
      const at = Math.min(pick(), hi - 4);
      const vals = [0, 1, 0x7fffffff, 0xffffffff, 0x80000000, src.length, src.length + 64, 0xfffffff0, Math.floor(r() * 2 ** 32)];
      if (at >= lo) new DataView(b.buffer).setUint32(at, vals[Math.floor(r() * vals.length)]!, true);
    } else if (kind === 3) {
      b = b.slice(0, Math.floor(r() * b.length));
    } else if (kind === 4) {
      const a = Math.floor(r() * b.length);
      b = new Uint8Array([...b.subarray(0, a), ...b.subarray(a + 1 + Math.floor(r() * 16))]);
    } else {
      const a = Math.floor(r() * b.length);
      const len = 1 + Math.floor(r() * 32);
      b = new Uint8Array([...b.subarray(0, a), ...b.subarray(a, a + len), ...b.subarray(a)]);
    }
    return b;
  }

  const TIME_LIMIT_MS = 2000;
  const opts = { maxTensorBytes: 1 << 22, pickleLimits: { maxDepth: 200 } };

  async function runCase(bytes: Uint8Array, label: string): Promise<'ok' | 'refused'> {
    const t0 = performance.now();
    let outcome: 'ok' | 'refused' = 'ok';
    try {
      const c = await openCheckpoint(bytesSource(bytes, label), opts);
      for (const k of c.keys()) await c.read(k);
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw new Error(`${label}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      outcome = 'refused';
    }
    const dt = performance.now() - t0;
    if (dt > TIME_LIMIT_MS) throw new Error(`${label}: took ${dt.toFixed(0)} ms`);
    return outcome;
  }

  /** A small slice of unet_ldm.ckpt with its awkward layouts: channels-last, shared storages, a transposed view, f16. */
  async function unetSlice(): Promise<Uint8Array> {
    const full = await openCheckpoint(source('unet_ldm.ckpt'));
    const zip = await ZipArchive.open(source('unet_ldm.ckpt'));
    const keys = ['model.diffusion_model.input_blocks.0.0.weight', 'model.diffusion_model.time_embed.0.weight', 'model.diffusion_model.time_embed.0.bias', 'extra.transposed', 'extra.float16', 'model.diffusion_model.out.0.weight'];
    const specs: Record<string, TensorSpec> = {};
    const storages: Record<string, Uint8Array> = {};
    for (const k of keys) {
      const t = full.tensor(k);
      specs[k] = { storageKey: t.storage.key, storageType: t.storage.storageType.slice('torch.'.length), storageNumel: t.storage.numel, offset: t.storageOffset, shape: [...t.shape], stride: [...t.stride], parameter: t.isParameter };
      storages[t.storage.key] = await zip.read(zip.entry(`unet_ldm/data/${t.storage.key}`)!);
    }
    const bytes = torchZip(stateDictPickle(specs), storages, { prefix: 'unet_ldm/' });
    const c = await openCheckpoint(bytesSource(bytes, 'slice'));
    for (const k of keys) expectSameBits(await c.read(k), await full.read(k), k);
    return bytes;
  }

  async function pickleRegion(bytes: Uint8Array): Promise<[number, number]> {
    const zip = await ZipArchive.open(bytesSource(bytes, 'x'));
    const e = zip.entries.find((x) => x.name.endsWith('data.pkl'))!;
    const at = await zip.dataOffset(e);
    return [at, at + e.size];
  }

  it('10,500 mutated checkpoints (malicious.ckpt, base.ckpt, a slice of unet_ldm.ckpt)', async () => {
    const targets: [string, Uint8Array][] = [
      ['malicious.ckpt', fileBytes('malicious.ckpt')],
      ['base.ckpt', fileBytes('malformed/ckpt/base.ckpt')],
      ['unet_slice', await unetSlice()],
    ];
    const tally = { ok: 0, refused: 0 };
    for (const [ti, [name, bytes]] of targets.entries()) {
      const region = await pickleRegion(bytes);
      for (let i = 0; i < 3500; i++) {
        const seed = 1000 * (ti + 1) + i;
        const r = rng(seed);
        // Half the mutations stay inside data.pkl so the zip stays readable and the unpickler is exercised.
        const m = mutate(bytes, r, r() < 0.5 ? region : undefined);
        tally[await runCase(m, `${name} seed ${seed}`)]++;
      }
    }
    expect(tally.ok + tally.refused).toBe(10_500);
    expect(tally.refused).toBeGreaterThan(1000);
    expect(tally.ok).toBeGreaterThan(100);
  });

  it('4,500 mutated raw pickles (protocol 2 and 4, with omegaconf objects)', async () => {
    const pkls: [string, Uint8Array, number][] = [];
    for (const [f, n] of [['malicious_proto4.ckpt', 1850], ['malformed/ckpt/base.ckpt', 1850], ['cfm_trainer.ckpt', 800]] as const) {
      const zip = await ZipArchive.open(source(f));
      pkls.push([f, await zip.read(zip.entries.find((e) => e.name.endsWith('data.pkl'))!), n]);
    }
    let total = 0;
    let loaded = 0;
    for (const [f, pkl, n] of pkls) {
      for (let i = 0; i < n; i++) {
        const seed = 77_000 + total;
        const m = mutate(pkl, rng(seed));
        const t0 = performance.now();
        try {
          unpickle(m, { name: f, limits: { maxDepth: 200 } });
          loaded++;
        } catch (e) {
          if (!(e instanceof CheckpointError)) throw new Error(`${f} pickle seed ${seed}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
        }
        const dt = performance.now() - t0;
        if (dt > TIME_LIMIT_MS) throw new Error(`${f} pickle seed ${seed}: took ${dt.toFixed(0)} ms`);
        total++;
      }
    }
    expect(total).toBe(4500);
    expect(loaded).toBeGreaterThan(0);
  });
});
