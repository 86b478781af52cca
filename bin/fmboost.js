#!/usr/bin/env node
// Launcher for the `fmboost` command. The CLI is bundled to dist/cli.js by `npm run build` (also run by
// `npm ci` through the "prepare" script); a checkout without dist/ is built here once, on first use.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'cli.js');
if (!existsSync(cli)) {
  process.stderr.write('fmboost: dist/cli.js is missing; building it (node scripts/build.mjs)…\n');
  try {
    execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
  } catch {
    process.stderr.write('fmboost: the build failed; run `npm ci` (esbuild is a dev dependency) and `npm run build`\n');
    process.exit(1);
  }
}
await import(pathToFileURL(cli).href);
