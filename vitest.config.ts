import { readFileSync } from 'node:fs';
import { defineConfig, type Plugin } from 'vitest/config';

/** `import code from './x.wgsl'` gives the file's text, as esbuild's text loader does for the bundle. */
function wgsl(): Plugin {
  return {
    name: 'wgsl-text',
    load(id) {
      if (!id.endsWith('.wgsl')) return null;
      return `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`;
    },
  };
}

export default defineConfig({
  plugins: [wgsl()],
  test: {
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: { XDG_RUNTIME_DIR: '/tmp' },
    projects: [
      {
        plugins: [wgsl()],
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: ['test/browser/**'],
          pool: 'forks',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          env: { XDG_RUNTIME_DIR: '/tmp' },
        },
      },
      {
        plugins: [wgsl()],
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 300_000,
          env: { XDG_RUNTIME_DIR: '/tmp' },
        },
      },
    ],
  },
});
