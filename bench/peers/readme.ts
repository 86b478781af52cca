/**
 * Regenerates the body of README.md's "## Performance" section from bench-results/*.md (the files bench:peers,
 * bench:e2e and bench:gpu write), so the README quotes measured tables only. Called with `--readme`.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const RESULTS = ['peers-node.md', 'peers-browser.md', 'e2e.md', 'gpu.md'];

function body(): string {
  const parts: string[] = [
    '<!-- generated from bench-results/*.md by `npm run bench:peers -- --readme` (or bench:e2e); edit the benchmarks, not this -->',
    '',
    'Measured on this project\'s development machine, which has no GPU: WebGPU runs on **SwiftShader** (Vulkan on the CPU, ' +
      '2 shared cores), in Node through Dawn and in headless Chromium. Absolute numbers are CPU numbers and move with the ' +
      'machine\'s load; the ratios to the peers, measured in the same process, on the same device and in the same run, are ' +
      'the meaningful part. "% of peak" is against the FMA peak (or shader-copy bandwidth) measured in that run.',
    '',
  ];
  for (const f of RESULTS) {
    const p = `bench-results/${f}`;
    if (!existsSync(p)) continue;
    const text = readFileSync(p, 'utf8').replace(/^<!--.*?-->\s*/s, '').trim();
    parts.push(text.replace(/^### /m, '#### '), '', `Source: [${p}](${p}).`, '');
  }
  if (existsSync('bench-results/vae-memory.md')) {
    parts.push(
      'Peak GPU memory of the SD VAE (real topology, random weights) decoding and encoding 512², 1024² and 2048² within ' +
        'a 1.5 GiB budget, and the largest single buffer: [bench-results/vae-memory.md](bench-results/vae-memory.md) ' +
        '(`node dist/bench/vae-memory.js`).',
      '',
    );
  }
  if (!existsSync('bench-results/gpu.md')) {
    parts.push(
      'Real-GPU timings (1024²: LCM 4 steps + CFM Euler 4/40 NFE + tiled decode) come from `npm run bench:gpu` on a machine ' +
        'with a GPU; none has been run for this README yet.',
      '',
    );
  }
  return parts.join('\n');
}

/** Replaces everything between the "## Performance" heading and the next "## " heading. */
export function updateReadmePerformance(path = 'README.md'): boolean {
  if (!existsSync(path)) return false;
  const text = readFileSync(path, 'utf8');
  const m = /^## Performance[ \t]*\n/m.exec(text);
  if (!m) return false;
  const start = m.index + m[0].length;
  const next = text.slice(start).search(/^## /m);
  const end = next < 0 ? text.length : start + next;
  writeFileSync(path, `${text.slice(0, start)}\n${body()}\n${text.slice(end)}`);
  return true;
}
