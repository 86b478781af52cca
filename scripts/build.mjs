// Bundles the library, the Node entry, the CLI, benchmarks and scripts with esbuild.
// WGSL files are imported as text (the same import form vitest uses through vitest.config.ts).
// Usage: node scripts/build.mjs [--types]   (--types also emits .d.ts with tsc)
import { build } from 'esbuild';
import { existsSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const common = { bundle: true, format: 'esm', sourcemap: true, loader: { '.wgsl': 'text' }, logLevel: 'warning', target: 'es2022' };
const nodeExternal = ['webgpu', 'pngjs', 'commander', 'cli-progress', 'puppeteer-core', '@tensorflow/*', 'onnxruntime-web', 'onnxruntime-node'];

const jobs = [
  build({ ...common, entryPoints: ['src/index.ts'], outfile: 'dist/index.js', platform: 'browser' }),
];
const nodeEntries = {};
if (existsSync('src/node/index.ts')) nodeEntries['node'] = 'src/node/index.ts';
if (existsSync('src/cli/main.ts')) nodeEntries['cli'] = 'src/cli/main.ts';
for (const dir of ['bench', 'scripts']) {
  if (!existsSync(dir)) continue;
  for (const f of readdirSync(dir)) if (f.endsWith('.ts')) nodeEntries[`${dir}/${f.slice(0, -3)}`] = `${dir}/${f}`;
}
if (Object.keys(nodeEntries).length) {
  jobs.push(
    build({
      ...common,
      entryPoints: nodeEntries,
      outdir: 'dist',
      platform: 'node',
      external: nodeExternal,
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    }),
  );
}
// Demos: examples/<name>/main.ts → dist/examples/<name>/main.js. They import the library from its source for
// types, and the bundle imports the built library (/dist/index.js) instead, as a web project would.
const publicApi = {
  name: 'fmboost-public-api',
  setup(b) {
    b.onResolve({ filter: /(^|\/)src\/index(\.js|\.ts)?$/ }, () => ({ path: '/dist/index.js', external: true }));
  },
};
if (existsSync('examples')) {
  for (const d of readdirSync('examples')) {
    const entry = `examples/${d}/main.ts`;
    if (!existsSync(entry)) continue;
    jobs.push(build({ ...common, entryPoints: [entry], outfile: `dist/examples/${d}/main.js`, platform: 'browser', plugins: [publicApi] }));
  }
}
// Test bundle for the browser suite: the op/model checks that run inside the page.
if (existsSync('test/browser/page.ts')) {
  jobs.push(build({ ...common, entryPoints: ['test/browser/page.ts'], outfile: 'dist/test/page.js', platform: 'browser' }));
}
await Promise.all(jobs);
if (process.argv.includes('--types')) {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
