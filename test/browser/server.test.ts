/**
 * The harness's static server: the library's URL byte source relies on its Range behaviour, and tests on
 * its byte counters, so both are pinned here (Node fetch, no browser needed).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRange, REPO_ROOT, startStaticServer, type StaticServer } from './harness.js';

const FILE = '/test/fixtures/ops.io.safetensors';

describe('harness static server', () => {
  let s: StaticServer;
  const whole = readFileSync(join(REPO_ROOT, FILE));

  beforeAll(async () => {
    s = await startStaticServer();
  });
  afterAll(() => s?.close());

  it('parses single byte ranges', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual([0, 9]);
    expect(parseRange('bytes=90-', 100)).toEqual([90, 99]);
    expect(parseRange('bytes=95-200', 100)).toEqual([95, 99]);
    expect(parseRange('bytes=-10', 100)).toEqual([90, 99]);
    expect(parseRange('bytes=-500', 100)).toEqual([0, 99]);
    expect(parseRange('bytes=100-', 100)).toBeNull();
    expect(parseRange('bytes=5-4', 100)).toBeNull();
    expect(parseRange('bytes=-0', 100)).toBeNull();
    expect(parseRange('bytes=0-1,5-6', 100)).toBeNull();
    expect(parseRange('items=0-1', 100)).toBeNull();
  });

  it('serves whole files with their MIME type and no content encoding', async () => {
    const res = await fetch(s.origin + FILE);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('content-encoding')).toBeNull();
    expect(Buffer.from(await res.arrayBuffer()).equals(whole)).toBe(true);
    const gz = await fetch(s.origin + '/test/fixtures/bpe_simple_vocab_16e6.txt.gz');
    expect(gz.headers.get('content-type')).toBe('application/octet-stream');
    expect(gz.headers.get('content-encoding')).toBeNull();
    const gzBytes = new Uint8Array(await gz.arrayBuffer());
    expect([gzBytes[0], gzBytes[1]]).toEqual([0x1f, 0x8b]);
    expect((await fetch(s.origin + '/test/browser/index.html')).headers.get('content-type')).toMatch(/^text\/html/);
    expect((await fetch(s.origin + '/package.json')).headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('answers Range requests with 206 and Content-Range, 416 when unsatisfiable', async () => {
    const res = await fetch(s.origin + FILE, { headers: { Range: 'bytes=8-27' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 8-27/${whole.length}`);
    expect(res.headers.get('content-length')).toBe('20');
    expect(Buffer.from(await res.arrayBuffer()).equals(whole.subarray(8, 28))).toBe(true);

    const tail = await fetch(s.origin + FILE, { headers: { Range: 'bytes=-16' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(whole.subarray(whole.length - 16))).toBe(true);

    const past = await fetch(s.origin + FILE, { headers: { Range: `bytes=${whole.length}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${whole.length}`);
    await past.arrayBuffer();
  });

  it('counts body bytes per path until reset', async () => {
    s.resetCounters();
    await (await fetch(s.origin + FILE, { headers: { Range: 'bytes=0-7' } })).arrayBuffer();
    await (await fetch(s.origin + FILE, { headers: { Range: 'bytes=100-199' } })).arrayBuffer();
    await (await fetch(s.origin + FILE, { method: 'HEAD' })).arrayBuffer();
    expect(s.bytesServed(FILE)).toBe(108);
    expect(s.requests(FILE)).toEqual(['bytes=0-7', 'bytes=100-199', '']);
    expect(s.bytesServed()).toBe(108);
    s.resetCounters();
    expect(s.bytesServed(FILE)).toBe(0);
  });

  it('refuses paths outside the repository and reports missing files', async () => {
    expect((await fetch(s.origin + '/%2e%2e/%2e%2e/etc/passwd')).status).toBeGreaterThanOrEqual(400);
    expect((await fetch(s.origin + '/no/such/file.js')).status).toBe(404);
  });
});
