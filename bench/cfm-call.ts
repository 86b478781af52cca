/**
 * Time per CFM network call (one CfmUNet forward with a prepared context, GPU work included) for the fixture
 * model and for the released topology (configs/flow400_64-128/unet-base_psu.yaml, 305.8 M parameters).
 *
 *   node scripts/build.mjs && node dist/bench/cfm-call.js [--latent 32] [--runs 2] [--dtype f32|f16]
 *     [--no-released] [--no-fixture] [--check]
 *
 * The released weights are REFERENCE §11.3's deterministic ones (tensor k, element j: 0.05·sin(0.7k + 0.013j + 0.1),
 * k in state_dict order = the order the constructor asks for them), generated on read by bench/e2e/random-weights.ts
 * ('sine'), so no file is needed.
 * --check also runs §11.3's 16×16 input through the released topology and prints its sum, sum|·|, first six,
 * element 123 and last next to the float64 reference values (f32 weights only).
 * Each case: one warm-up call (pipeline compilation), then `runs` timed calls, each followed by rt.sync().
 */
import { SafetensorsFile } from '../src/io/safetensors.js';
import { CfmUNet, CfmUNetConfig, parseCfmUNetConfig } from '../src/models/cfm-unet.js';
import { fileSource } from '../src/node/fs-source.js';
import { nodeGPU } from '../src/node/gpu.js';
import { fmtBytes } from '../src/runtime/errors.js';
import { createRuntime } from '../src/runtime/gpu.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { readFileSync } from 'node:fs';
import { randomSource, recordShapes } from './e2e/random-weights.js';

const args = process.argv.slice(2);
const opt = (name: string, d: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : d;
};
const latent = Number(opt('latent', '32'));
const runs = Number(opt('runs', '2'));
const dtype = opt('dtype', 'f32') as 'f16' | 'f32';

async function timeCalls(rt: Runtime, net: CfmUNet, label: string, hw: number): Promise<void> {
  const C = net.latentChannels;
  const n = C * hw * hw;
  const x = rt.upload(Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i)), [1, C, hw, hw]);
  const c = rt.upload(Float32Array.from({ length: net.contextChannels * hw * hw }, (_, i) => Math.cos(0.23 * i)), [1, net.contextChannels, hw, hw]);
  const cond = net.prepareContext(rt, c);
  const call = async (t: number): Promise<number> => {
    const d0 = rt.dispatches;
    const b0 = rt.bindGroupStats.created;
    const t0 = performance.now();
    rt.scope(() => net.forward(rt, x, cond, t).dispose());
    recordMs = performance.now() - t0;
    made = rt.bindGroupStats.created - b0;
    await rt.sync();
    const ms = performance.now() - t0;
    dispatches = rt.dispatches - d0;
    return ms;
  };
  let dispatches = 0;
  let recordMs = 0;
  let made = 0;
  rt.allocator.resetPeak?.();
  const warm = await call(0.1);
  const times: number[] = [];
  for (let r = 0; r < runs; r++) times.push(await call(0.2 + r / (runs + 1)));
  const best = Math.min(...times);
  const mem = rt.memory();
  console.log(
    `${label.padEnd(44)} latent ${hw}²: ${best.toFixed(0).padStart(7)} ms/call (runs ${times.map((t) => t.toFixed(0)).join(', ')}; warm-up ${warm.toFixed(0)} ms)` +
      `  ${dispatches} dispatches (last call: JS record ${recordMs.toFixed(0)} ms, ${made} bind groups made)  weights ${fmtBytes(net.bytes)}  peak ${fmtBytes(mem.peakBytes)}`,
  );
  cond.dispose();
  x.dispose();
  c.dispose();
}

async function checkReleased(rt: Runtime, net: CfmUNet): Promise<void> {
  const s = [1, 4, 16, 16];
  const xt = Float32Array.from({ length: 1024 }, (_, i) => Math.sin(0.37 * i));
  const ctx = Float32Array.from({ length: 1024 }, (_, i) => Math.cos(0.23 * i));
  const y = await rt.scopeAsync(async () => rt.read(net.forward(rt, rt.upload(xt, s), rt.upload(ctx, s), 0.25)));
  const ref = { sum: 3.5868341769e1, sumAbs: 8.3387178097e1, first: [5.7571346598e-2, 6.8002746539e-2, 6.8868092256e-2, 6.8982693826e-2, 6.8857724441e-2, 6.8522525847e-2], e123: 8.7626564271e-2, last: 7.7714893706e-3 };
  const sum = y.reduce((a, v) => a + v, 0);
  const sumAbs = y.reduce((a, v) => a + Math.abs(v), 0);
  const rel = (a: number, b: number) => (Math.abs(a - b) / Math.abs(b)).toExponential(2);
  console.log(`§11.3 released 16²: sum ${sum.toExponential(10)} (rel ${rel(sum, ref.sum)}), sum|·| ${sumAbs.toExponential(10)} (rel ${rel(sumAbs, ref.sumAbs)})`);
  const got = [...y.subarray(0, 6), y[123]!, y[y.length - 1]!];
  const want = [...ref.first, ref.e123, ref.last];
  console.log(`  elements rel err: ${got.map((g, i) => rel(g, want[i]!)).join(' ')}`);
}

async function main(): Promise<void> {
  const gpu = await nodeGPU();
  const rt = await createRuntime({ gpu, log: () => {}, memoryBudgetBytes: 12 * 2 ** 30 });
  console.log(`adapter: ${rt.adapterName}; weights ${dtype}; ${runs} timed runs after one warm-up`);
  if (!args.includes('--no-fixture')) {
    const config = parseCfmUNetConfig(JSON.parse(readFileSync('test/fixtures/cfm.config.json', 'utf8')));
    const net = await CfmUNet.load(rt, { config, weights: await SafetensorsFile.open(await fileSource('test/fixtures/cfm.safetensors')), dtype });
    await timeCalls(rt, net, 'fixture (test/fixtures/cfm, 2.8 MB)', 16);
    await timeCalls(rt, net, 'fixture (test/fixtures/cfm, 2.8 MB)', latent);
    net.dispose();
  }
  if (!args.includes('--no-released')) {
    const config = CfmUNetConfig.released;
    const t0 = performance.now();
    const net = await CfmUNet.load(rt, { config, weights: randomSource(recordShapes((w) => new CfmUNet(w, config)), '§11.3 deterministic weights', 'sine'), dtype });
    console.log(`released topology loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (args.includes('--check')) await checkReleased(rt, net);
    await timeCalls(rt, net, 'released (unet-base_psu, 305.8 M params)', latent);
    net.dispose();
  }
  rt.destroy();
  void gpu;
}

await main();
