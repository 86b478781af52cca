/**
 * Op benchmark: measures the device's own FMA peak and shader copy bandwidth, then runs every case of
 * bench/cases/*.ts and reports median time, throughput and the fraction of that peak.
 * Usage: npm run bench [-- --quick] [-- --no-throttle]
 */
import { nodeGPU } from '../src/node/gpu.js';
import { createRuntime } from '../src/runtime/gpu.js';
import type { Runtime } from '../src/runtime/runtime.js';
import copyWgsl from './copy.wgsl';
import peakWgsl from './peak.wgsl';
import { cases as attentionCases } from './cases/attention.js';
import { cases as gemmCases } from './cases/gemm.js';
import { cases as normCases } from './cases/norm.js';
import type { BenchCase } from './cases/types.js';

const quick = process.argv.includes('--quick');
const throttle = !process.argv.includes('--no-throttle');
const RUNS = quick ? 5 : 9;
const WARMUP = quick ? 1 : 2;

// Dawn's Node binding services GPU promises with a setImmediate loop that busy-spins the main thread; on a
// CPU adapter that spin competes with the shader threads. A 1 ms timer keeps the same semantics.
if (throttle) {
  const timer = (fn: (...a: unknown[]) => void, ...args: unknown[]) => setTimeout(fn, 1, ...args);
  (globalThis as { setImmediate: unknown }).setImmediate = timer;
}

async function medianMs(rt: Runtime, run: () => void, runs = RUNS, warmup = WARMUP): Promise<number> {
  for (let i = 0; i < warmup; i++) {
    run();
    await rt.sync();
  }
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    run();
    await rt.sync();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

/** FLOP/s of a compute-bound kernel (independent FMA chains), the best of two workgroup sizes. */
async function fmaPeak(rt: Runtime): Promise<{ gflops: number; wg: number }> {
  const n = 1 << 16;
  const ITERS = quick ? 256 : 512;
  const out = rt.empty([n]);
  let best = { gflops: 0, wg: 0 };
  for (const wg of [64, 256]) {
    const k = rt.kernel('bench-peak', peakWgsl, { WG_SIZE: wg });
    const ms = await medianMs(rt, () => rt.dispatch(k, [out], { ITERS, c: 0.5 }, rt.grid(n / wg)), quick ? 3 : 5, 1);
    const gflops = (n * ITERS * 64) / ms / 1e6;
    if (gflops > best.gflops) best = { gflops, wg };
  }
  out.dispose();
  return best;
}

/** Bytes/s of a vec4 shader copy (read + write counted). */
async function copyBandwidth(rt: Runtime): Promise<number> {
  const vec4s = (quick ? 4 : 8) << 20;
  const src = rt.zeros([vec4s * 4]);
  const dst = rt.empty([vec4s * 4]);
  const k = rt.kernel('bench-copy', copyWgsl, { WG_SIZE: 256 });
  const ms = await medianMs(rt, () => rt.dispatch(k, [src, dst], { N: vec4s }, rt.grid(Math.ceil(vec4s / 256))), quick ? 3 : 5, 1);
  src.dispose();
  dst.dispose();
  return (2 * 16 * vec4s) / ms / 1e6;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

async function main(): Promise<void> {
  const gpu = await nodeGPU();
  const rt = await createRuntime({ gpu, log: () => {} });
  console.log(`adapter: ${rt.adapterName}`);
  console.log(`mode: ${quick ? 'quick' : 'full'} (${WARMUP} warm-up + ${RUNS} timed runs per case, median; each run ends with rt.sync())`);
  console.log(
    throttle
      ? "setImmediate: throttled to a 1 ms timer (Dawn's busy-spinning promise loop would take a CPU core from SwiftShader); --no-throttle to disable"
      : 'setImmediate: stock (busy-spinning while GPU promises are pending)',
  );
  const peak = await fmaPeak(rt);
  const bw = await copyBandwidth(rt);
  console.log(`FMA peak: ${peak.gflops.toFixed(2)} GFLOP/s (8 vec4 FMA chains per invocation, workgroup ${peak.wg})`);
  console.log(`shader copy bandwidth: ${bw.toFixed(2)} GB/s`);
  console.log('');

  const all: BenchCase[] = [...gemmCases, ...attentionCases, ...normCases];
  const header = `${pad('case', 34)} ${pad('median ms', 10, true)} ${pad('throughput', 16, true)} ${pad('of peak', 8, true)}  variant`;
  console.log(header);
  console.log('-'.repeat(header.length + 40));
  for (const c of all) {
    const s = c.setup(rt);
    const ms = await medianMs(rt, () => s.run());
    s.dispose();
    let thr = '-';
    let frac = '-';
    if (c.flops) {
      const g = c.flops / ms / 1e6;
      thr = `${g.toFixed(2)} GFLOP/s`;
      frac = `${((100 * g) / peak.gflops).toFixed(1)} %`;
    } else if (c.bytes) {
      const g = c.bytes / ms / 1e6;
      thr = `${g.toFixed(2)} GB/s`;
      frac = `${((100 * g) / bw).toFixed(1)} %`;
    }
    console.log(`${pad(c.name, 34)} ${pad(ms.toFixed(2), 10, true)} ${pad(thr, 16, true)} ${pad(frac, 8, true)}  ${s.variant ?? ''}`);
  }
  rt.destroy();
  // Keep the GPU object reachable until the device is gone (dawn.node crashes if it is collected first).
  void gpu;
}

await main();
