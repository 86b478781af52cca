/**
 * Browser test harness: a static server over the repository root and headless Chromium on SwiftShader
 * (flags from docs/WEBGPU-ON-CPU.md). `npm test` builds dist/ (and dist/test/page.js) before vitest runs.
 */
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const TEST_OUTPUT = join(REPO_ROOT, 'test-output');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--headless=new',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--use-angle=swiftshader',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.wgsl': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  // Served as opaque bytes with no Content-Encoding, so the browser never un-gzips behind the loader's back.
  '.gz': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.ckpt': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

export interface StaticServer {
  /** e.g. http://127.0.0.1:41234 */
  readonly origin: string;
  /** Body bytes sent for `path` (e.g. '/test/fixtures/vae.safetensors') since the last reset; all paths when omitted. */
  bytesServed(path?: string): number;
  /** Requests seen for `path` since the last reset, with their Range header ('' when none). */
  requests(path: string): string[];
  resetCounters(): void;
  close(): Promise<void>;
}

/**
 * Serves `root` on 127.0.0.1 at a random port. Supports GET/HEAD and single `Range: bytes=` requests
 * (206 + Content-Range, 416 when unsatisfiable), which the library's URL byte source relies on.
 */
export async function startStaticServer(root = REPO_ROOT): Promise<StaticServer> {
  const base = resolve(root);
  const bytes = new Map<string, number>();
  const seen = new Map<string, string[]>();

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return end(res, 400);
    }
    const file = resolve(base, '.' + normalize(path));
    res.setHeader('Cache-Control', 'no-store');
    if (file !== base && !file.startsWith(base + sep)) return end(res, 403);
    if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 405);
    let target = file;
    if (existsSync(target) && statSync(target).isDirectory()) target = join(target, 'index.html');
    if (!existsSync(target) || !statSync(target).isFile()) return end(res, 404);
    const size = statSync(target).size;
    const range = req.headers.range ?? '';
    const list = seen.get(path) ?? [];
    list.push(range);
    seen.set(path, list);

    let start = 0;
    let last = size - 1;
    if (range) {
      const r = parseRange(range, size);
      if (!r) {
        res.setHeader('Content-Range', `bytes */${size}`);
        return end(res, 416);
      }
      [start, last] = r;
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${last}/${size}`);
    } else {
      res.statusCode = 200;
    }
    const length = Math.max(0, last - start + 1);
    res.setHeader('Content-Type', MIME[extname(target).toLowerCase()] ?? 'application/octet-stream');
    res.setHeader('Content-Length', length);
    res.setHeader('Accept-Ranges', 'bytes');
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(target, { start, end: last });
    stream.on('data', (chunk) => bytes.set(path, (bytes.get(path) ?? 0) + chunk.length));
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    bytesServed: (path) => (path === undefined ? [...bytes.values()].reduce((a, b) => a + b, 0) : (bytes.get(path) ?? 0)),
    requests: (path) => [...(seen.get(path) ?? [])],
    resetCounters: () => {
      bytes.clear();
      seen.clear();
    },
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

function end(res: ServerResponse, status: number): void {
  res.statusCode = status;
  res.setHeader('Content-Length', 0);
  res.end();
}

/** [first, last] inclusive for a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range; null if unsatisfiable. */
export function parseRange(header: string, size: number): [number, number] | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return null;
    return [Math.max(0, size - n), size - 1];
  }
  const first = Number(m[1]);
  const last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (first >= size || last < first) return null;
  return [first, last];
}

export interface Harness {
  readonly server: StaticServer;
  readonly browser: Browser;
  /** The page opened last (by openPage). */
  readonly page: Page;
  /** Absolute URL of a repository path. */
  url(path: string): string;
  /** Opens `path` (e.g. '/test/browser/index.html') in a new tab and waits for its load event. */
  openPage(path: string): Promise<Page>;
  /** Runs `fn` in the current page (puppeteer's evaluate: `fn` is serialised, so it must not close over Node values). */
  evaluate<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, ...args: A): Promise<Awaited<R>>;
  /** Screenshot of the current page to test-output/<name>.png; returns the file path. */
  screenshot(name: string): Promise<string>;
  /** Page console errors and uncaught exceptions seen so far. */
  readonly pageErrors: string[];
  close(): Promise<void>;
}

/** Starts the static server and Chromium with a fresh profile (removed on close). */
export async function startHarness(): Promise<Harness> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  if (!existsSync(join(REPO_ROOT, 'dist/test/page.js'))) throw new Error('dist/test/page.js is missing: run `npm run build` first (npm test does)');
  const server = await startStaticServer();
  const profile = mkdtempSync(join(tmpdir(), 'fmboost-chromium-'));
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`],
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      protocolTimeout: 600_000,
    });
  } catch (e) {
    await server.close();
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const pageErrors: string[] = [];
  let current: Page | null = null;

  const h: Harness = {
    server,
    browser,
    get page(): Page {
      if (!current) throw new Error('no page is open: call openPage first');
      return current;
    },
    pageErrors,
    url: (path) => server.origin + (path.startsWith('/') ? path : '/' + path),
    async openPage(path) {
      const page = await browser.newPage();
      page.setDefaultTimeout(600_000);
      page.on('console', (msg) => {
        if (msg.type() === 'error') {
          const where = msg.location().url;
          const text = `[page console.error] ${msg.text()}${where ? ` (${where})` : ''}`;
          pageErrors.push(text);
          console.error(text);
        }
      });
      page.on('pageerror', (err) => {
        const text = `[page exception] ${(err as Error).stack ?? String(err)}`;
        pageErrors.push(text);
        console.error(text);
      });
      page.on('requestfailed', (req) => console.error(`[page request failed] ${req.url()}: ${req.failure()?.errorText ?? ''}`));
      const res = await page.goto(h.url(path), { waitUntil: 'load' });
      if (!res || !res.ok()) throw new Error(`GET ${path}: HTTP ${res?.status() ?? 'no response'}`);
      current = page;
      return page;
    },
    evaluate(fn, ...args) {
      return h.page.evaluate(fn as never, ...(args as unknown as never[])) as never;
    },
    async screenshot(name) {
      mkdirSync(TEST_OUTPUT, { recursive: true });
      const file = join(TEST_OUTPUT, `${name.replace(/[^\w.-]+/g, '_')}.png`);
      await h.page.screenshot({ path: file as `${string}.png`, fullPage: true });
      return file;
    },
    async close() {
      try {
        await browser.close();
      } finally {
        await server.close();
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
  return h;
}
