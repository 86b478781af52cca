/**
 * Peak GPU memory of the SD VAE (AutoencoderKLConfig.sd15, random weights N(0, 1/fan_in)) decoding and
 * encoding at 512² (and 1024², and 2048² with --big). Weights go through the normal loader from the shared
 * random-weight source (bench/e2e/random-weights.ts), so no file is needed.
 *
 *   node scripts/build.mjs && node dist/bench/vae-memory.js [--sizes 512,1024] [--big] [--budget-mib 1536]
 *     [--dtype f32|f16] [--what decode,encode] [--no-encode] [--tile N] [--plan-only] [--allocation-only]
 *     [--default-limits] [--out results.jsonl]
 *   node dist/bench/vae-memory.js --md bench-results/vae-memory.md --from [label=]a.jsonl[+b.jsonl][,…] [--note TEXT]
 *
 * Prints per run: mode (untiled/exact/streaming), exact statistics or not, tile counts, the largest single
 * buffer, rt.memory() peak (allocated incl. pool) and peak live bytes, over the weights, and wall time;
 * --out appends each run as one JSON line (VaeMemoryResult), written even when the run fails.
 * --allocation-only runs the whole schedule (every buffer allocated through the allocator, every dispatch
 * validated and recorded) with rt.executeDispatches = false, so no kernel runs: the allocations, hence the
 * peaks, are those of a full run (the allocator never looks at values; checked byte for byte against full
 * runs, see --md), in seconds instead of hours on SwiftShader.
 * --plan-only prints the tiling decision and estimate for every size without running.
 * --md writes the markdown report from --out files: the allocation-only table and the full-vs-allocation-only
 * comparison of every (direction, size, budget) measured both ways. Files joined by + form one group (runs of
 * one build of the library); runs are compared only within a group, which the report names by its label.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { createNodeRuntime } from '../src/node/gpu.js';
import { randomVaeSource } from './e2e/random-weights.js';
import { AutoencoderKL, type TilingReport } from '../src/models/vae/model.js';
import { AutoencoderKLConfig } from '../src/models/vae/config.js';
import { fmtBytes } from '../src/runtime/errors.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** One measured run, as written to --out (one JSON object per line). */
export interface VaeMemoryResult {
  what: 'decode' | 'encode';
  px: number;
  /** 'full': every kernel ran; 'allocation-only': dispatches recorded but not launched (rt.executeDispatches). */
  run: 'full' | 'allocation-only';
  budgetBytes: number;
  bindingLimitBytes: number;
  weightDtype: string;
  weightBytes: number;
  /** Live bytes before the run (the weights). */
  baseBytes: number;
  /** rt.memory() peaks over the run: allocated (live + pool) and live. */
  peakBytes: number;
  peakLiveBytes: number;
  dispatches: number;
  /** Largest single buffer the allocator handed out during the run (any tensor, not only tiles), and its label. */
  largestAllocBytes?: number;
  largestAllocLabel?: string;
  report?: TilingReport;
  error?: string;
  seconds: number;
  loadavg: number[];
  date: string;
  adapter: string;
}

async function main(): Promise<void> {
  const md = arg('--md');
  if (md) return writeMarkdown(md, (arg('--from') ?? '').split(',').filter(Boolean));
  const big = process.argv.includes('--big');
  const sizes = (arg('--sizes') ?? (big ? '512,1024,2048' : '512')).split(',').map(Number);
  const budget = Number(arg('--budget-mib') ?? 1536) * 2 ** 20;
  const dtype = (arg('--dtype') ?? 'f32') as 'f32' | 'f16';
  const tile = arg('--tile') ? Number(arg('--tile')) : undefined;
  const allocationOnly = process.argv.includes('--allocation-only');
  const out = arg('--out');
  const only = arg('--what');
  const whats = (only ? only.split(',') : process.argv.includes('--no-encode') ? ['decode'] : ['decode', 'encode']) as ('decode' | 'encode')[];
  for (const px of sizes) if (!(Number.isInteger(px) && px > 0 && px % 8 === 0)) throw new Error(`--sizes: ${px} is not a positive multiple of 8`);
  for (const w of whats) if (w !== 'decode' && w !== 'encode') throw new Error(`--what: '${w}' is not decode or encode`);
  // --default-limits: WebGPU's default limits (128 MiB per storage binding, 256 MiB per buffer) instead of the
  // adapter's larger ones, so a buffer over 128 MiB is refused by the allocator (OutOfMemoryError).
  const defaultLimits = process.argv.includes('--default-limits');
  const rt = await createNodeRuntime({ memoryBudgetBytes: budget, log: () => {}, requestHigherLimits: !defaultLimits });
  // Every allocation passes through allocator.alloc: remember the largest (bench-only instrumentation).
  let largest = { bytes: 0, label: '' };
  const alloc = rt.allocator.alloc.bind(rt.allocator);
  rt.allocator.alloc = (bytes, label, pooled) => {
    if (bytes > largest.bytes) largest = { bytes, label };
    return alloc(bytes, label, pooled);
  };
  console.log(
    `adapter: ${rt.adapterName}; binding limit ${fmtBytes(rt.allocator.maxBufferBytes)}; budget ${fmtBytes(budget)}; weights ${dtype}` +
      (allocationOnly ? '; ALLOCATION-ONLY (dispatches recorded, not launched)' : '; full compute'),
  );
  const t0 = performance.now();
  const vae = await AutoencoderKL.load(rt, { config: AutoencoderKLConfig.sd15, weights: randomVaeSource(), dtype });
  console.log(`loaded 248 tensors (${fmtBytes(vae.weightBytes)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tiling = tile ? { tileSize: tile } : 'auto';
  const line = (what: string, px: number, r: TilingReport, s: number, base: number) => {
    const m = rt.memory();
    console.log(
      `${what} ${px}²: mode ${r.mode}${r.exact ? '' : ' (estimated GroupNorm statistics)'}; tile ${r.tileSize} latent px, ${r.tiles} tiles` +
        (r.streamTiles && what === 'decode' ? `, ${r.streamTiles} output tiles, halo ${r.halo}, proxy 1/${r.proxyFactor}` : '') +
        (r.streamTiles && what === 'encode' ? `, ${r.streamedStages} streamed stages: ${r.streamTiles} output tiles, halo ≤ ${r.halo}, ${r.passes} passes` : '') +
        `; largest buffer ${fmtBytes(r.maxTileBytes)}; peak ${fmtBytes(m.peakBytes)} = ${m.peakBytes} B (live ${m.peakLiveBytes} B; ${fmtBytes(m.peakBytes - base)} over the weights); ` +
        `estimate ${fmtBytes(r.estimatedBytes)}; ${s.toFixed(1)} s`,
    );
  };
  if (process.argv.includes('--plan-only')) {
    for (const px of sizes) {
      for (const what of whats) {
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
    for (const what of whats) {
      rt.allocator.trim();
      rt.allocator.resetPeak();
      const base = rt.memory().liveBytes;
      const d0 = rt.dispatches;
      largest = { bytes: 0, label: '' };
      const t = performance.now();
      let report: TilingReport | undefined;
      let error: string | undefined;
      rt.executeDispatches = !allocationOnly;
      try {
        await rt.scopeAsync(async () => {
          if (what === 'decode') {
            const z = rt.upload(new Float32Array(4 * h * h).map((_, i) => Math.sin(i * 0.37) * 1.5), [1, 4, h, h]);
            const r = await vae.decodeWithReport(z, { tiling });
            await rt.read(r.image);
            report = r.report;
          } else {
            const x = rt.upload(new Float32Array(3 * px * px).map((_, i) => Math.sin(i * 0.011)), [1, 3, px, px]);
            const r = await vae.encodeWithReport(x, { tiling });
            await rt.read(r.mean);
            report = r.report;
          }
        });
        line(what, px, report!, (performance.now() - t) / 1000, base);
      } catch (e) {
        error = `${(e as Error).name}: ${(e as Error).message}`;
        console.log(`${what} ${px}²: ${error} (${((performance.now() - t) / 1000).toFixed(1)} s)`);
      } finally {
        rt.executeDispatches = true;
      }
      const m = rt.memory();
      const result: VaeMemoryResult = {
        what, px, run: allocationOnly ? 'allocation-only' : 'full', budgetBytes: budget, bindingLimitBytes: rt.allocator.maxBufferBytes,
        weightDtype: dtype, weightBytes: vae.weightBytes, baseBytes: base, peakBytes: m.peakBytes, peakLiveBytes: m.peakLiveBytes,
        dispatches: rt.dispatches - d0, largestAllocBytes: largest.bytes, largestAllocLabel: largest.label, report, error, seconds: (performance.now() - t) / 1000, loadavg: loadavg(), date: new Date().toISOString(), adapter: rt.adapterName,
      };
      if (out) appendFileSync(out, JSON.stringify(result) + '\n');
    }
  }
  vae.dispose();
}

const MiB = 2 ** 20;
const mib = (b: number) => (b / MiB).toFixed(1);

/** The markdown report (see the header) from result lines. */
function writeMarkdown(file: string, inputs: string[]): void {
  if (!inputs.length) throw new Error('--md needs --from a.jsonl[,b.jsonl…]');
  type Row = VaeMemoryResult & { group: string };
  const rows: Row[] = inputs.flatMap((item, g) => {
    const [label, files] = item.includes('=') ? (item.split('=', 2) as [string, string]) : [`group ${g + 1}`, item];
    // A file a running bench has not written yet counts as empty (see --note for runs still going).
    return files.split('+').filter((f) => existsSync(f)).flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => ({ ...(JSON.parse(l) as VaeMemoryResult), group: label })));
  });
  // Same direction, size, budget, weights and plan; everything measured is then compared.
  const key = (r: Row) => `${r.group} ${r.what} ${r.px} ${r.budgetBytes} ${r.weightDtype} ${r.report?.mode} ${r.report?.tileSize} ${r.report?.tiles} ${r.report?.streamTiles}`;
  const la = (r: VaeMemoryResult) => r.loadavg.map((v) => v.toFixed(1)).join(' ');
  const when = (r: VaeMemoryResult) => r.date.replace('T', ' ').slice(0, 16);
  const adapters = [...new Set(rows.map((r) => r.adapter))].join('; ');
  const out: string[] = [
    `<!-- generated by \`node dist/bench/vae-memory.js --md ${file} --from ${inputs.join(',')}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (load average ${loadavg().map((v) => v.toFixed(1)).join(' ')}); do not edit -->`,
    '',
    `### SD VAE peak GPU memory (Node, ${adapters})`,
    '',
    'Real SD VAE topology (`AutoencoderKLConfig.sd15`, 248 tensors, both halves loaded), random weights, batch 1, default tiling (`auto`: the planner chooses untiled / exact / streaming and the tile sizes from the budget and the 128 MiB tile cap). ' +
      '"peak" is `rt.memory().peakBytes`: everything the allocator held at its highest, weights and pooled free buffers included (the allocator keeps freed buffers for reuse and trims them only when a new buffer would pass the budget, so where the schedule churns through many sizes this peak is the budget itself); "live" is the peak of bytes held by tensors (weights included), what the schedule needs. ' +
      '"largest buffer" is the largest single allocation of the run (any tensor). Load average is the machine\'s (1, 5, 15 min) when the run ended.',
    '',
    '**Run kinds.** *full*: every kernel ran. *allocation-only* (`--allocation-only`): the same code with `rt.executeDispatches = false`: every buffer is allocated through the allocator and every dispatch validated and recorded, but no workgroup is launched; the allocator never looks at values, so the allocations are those of a full run. The second table checks this byte for byte wherever both kinds were run.',
    '',
  ];
  const alloc = rows.filter((r) => r.run === 'allocation-only' && r.budgetBytes === 1536 * MiB && r.weightDtype === 'f32' && [512, 1024, 2048].includes(r.px));
  out.push(
    '#### Allocation-only, budget 1.5 GiB, f32 weights',
    '',
    '| build | device binding limit MiB | direction | image | mode | exact | tiles (latent grid) | streamed | peak MiB (incl. pool) | peak live MiB | weights MiB | peak − weights MiB | largest buffer MiB | ≤ 128 MiB | dispatches | s | when (UTC) | load avg |',
    '|---|---:|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|',
  );
  const groups = [...new Set(rows.map((r) => r.group))];
  for (const r of alloc.sort((a, b) => groups.indexOf(a.group) - groups.indexOf(b.group) || b.bindingLimitBytes - a.bindingLimitBytes || a.px - b.px || a.what.localeCompare(b.what))) {
    const p = r.report;
    const head = `| ${r.group} | ${mib(r.bindingLimitBytes)} | ${r.what}`;
    if (!p) {
      out.push(`${head} | ${r.px}² | ${r.error} | | | | ${mib(r.peakBytes)} | ${mib(r.peakLiveBytes)} | ${mib(r.weightBytes)} | | | | ${r.dispatches} | ${r.seconds.toFixed(0)} | ${when(r)} | ${la(r)} |`);
      continue;
    }
    const streamed =
      p.mode !== 'streaming' ? '—' : r.what === 'decode' ? `${p.streamTiles} output tiles, halo ${p.halo}, proxy 1/${p.proxyFactor}` : `${p.streamedStages} stages, ${p.streamTiles} tiles, ${p.passes} passes`;
    const big = r.largestAllocBytes ?? p.maxTileBytes;
    out.push(
      `${head} | ${r.px}² | ${p.mode} | ${p.exact ? 'yes' : 'no (estimated GroupNorm statistics)'} | ${p.tiles} (T = ${p.tileSize}) | ${streamed} | ${mib(r.peakBytes)} | ${mib(r.peakLiveBytes)} | ${mib(r.weightBytes)} | ${mib(r.peakBytes - r.baseBytes)} | ` +
        `${mib(big)}${r.largestAllocLabel ? ` (${r.largestAllocLabel})` : ''} | ${big <= 128 * MiB ? 'yes' : '**no**'} | ${r.dispatches} | ${r.seconds.toFixed(0)} | ${when(r)} | ${la(r)} |`,
    );
  }
  out.push(
    '',
    '#### Full compute vs allocation-only (same direction, size, budget, plan)',
    '',
    '| build | direction | image | budget MiB | mode | full: peak B | allocation-only: peak B | full: live B | allocation-only: live B | dispatches (full / alloc.) | largest tile B (full / alloc.) | equal | full s (load avg) | alloc. s |',
    '|---|---|---|---:|---|---:|---:|---:|---:|---|---|---|---|---:|',
  );
  const full = rows.filter((r) => r.run === 'full' && r.report);
  for (const f of full.sort((a, b) => a.group.localeCompare(b.group) || a.budgetBytes - b.budgetBytes || a.px - b.px || a.what.localeCompare(b.what))) {
    const d = rows.find((r) => r.run === 'allocation-only' && key(r) === key(f));
    if (!d) {
      out.push(`| ${f.group} | ${f.what} | ${f.px}² | ${f.budgetBytes / MiB} | ${f.report!.mode} | ${f.peakBytes} | (no allocation-only run with this plan) | ${f.peakLiveBytes} | | ${f.dispatches} | ${f.report!.maxTileBytes} | | ${f.seconds.toFixed(0)} (${la(f)}) | |`);
      continue;
    }
    const equal = d.peakBytes === f.peakBytes && d.peakLiveBytes === f.peakLiveBytes && d.dispatches === f.dispatches && d.report!.maxTileBytes === f.report!.maxTileBytes;
    out.push(
      `| ${f.group} | ${f.what} | ${f.px}² | ${f.budgetBytes / MiB} | ${f.report!.mode} | ${f.peakBytes} | ${d.peakBytes} | ${f.peakLiveBytes} | ${d.peakLiveBytes} | ${f.dispatches} / ${d.dispatches} | ${f.report!.maxTileBytes} / ${d.report!.maxTileBytes} | ${equal ? 'yes' : '**no**'} | ${f.seconds.toFixed(0)} (${la(f)}) | ${d.seconds.toFixed(1)} |`,
    );
  }
  const unfinished = rows.filter((r) => r.run === 'full' && !r.report);
  for (const r of unfinished) out.push(`| ${r.group} | ${r.what} | ${r.px}² | ${r.budgetBytes / MiB} | failed: ${r.error} | | | | | | | | ${r.seconds.toFixed(0)} | |`);
  const note = arg('--note');
  if (note) out.push('', note);
  out.push('');
  writeFileSync(file, out.join('\n'));
  console.log(`wrote ${file} (${alloc.length} allocation-only rows, ${full.length} full runs)`);
}

await main();
