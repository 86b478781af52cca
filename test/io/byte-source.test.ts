import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { blobSource, bytesSource, urlSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { fileSource } from '../../src/node/fs-source.js';
import { AbortError, IOError } from '../../src/runtime/errors.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { randn } from '../helpers/random.js';

interface Served {
  method: string;
  range: string | undefined;
  bytes: number;
}

interface ServerMode {
  range: boolean;
  head: boolean;
}

/** A local HTTP server over fixed files that counts the body bytes it sends. */
class TestServer {
  private server!: Server;
  readonly log: Served[] = [];
  readonly files = new Map<string, { data: Uint8Array; mode: ServerMode }>();
  base = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((ok) => this.server.close(() => ok()));
  }

  bytesServed(): number {
    return this.log.reduce((a, s) => a + s.bytes, 0);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const f = this.files.get(req.url ?? '');
    const range = req.headers.range;
    const entry: Served = { method: req.method ?? '', range, bytes: 0 };
    this.log.push(entry);
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    const size = f.data.byteLength;
    if (req.method === 'HEAD') {
      if (!f.mode.head) res.writeHead(405).end();
      else res.writeHead(200, { 'Content-Length': String(size), 'Accept-Ranges': f.mode.range ? 'bytes' : 'none' }).end();
      return;
    }
    const m = range && f.mode.range ? /^bytes=(\d+)-(\d+)$/.exec(range) : null;
    if (m) {
      const a = Number(m[1]);
      const b = Math.min(Number(m[2]), size - 1);
      if (a >= size || b < a) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      const body = f.data.subarray(a, b + 1);
      entry.bytes = body.byteLength;
      res.writeHead(206, { 'Content-Length': String(body.byteLength), 'Content-Range': `bytes ${a}-${b}/${size}` });
      res.end(body);
      return;
    }
    res.writeHead(200, { 'Content-Length': String(size) });
    // Count what actually left the server: a client that gives up early closes the socket.
    let sent = 0;
    const chunk = 64 * 1024;
    const pump = (): void => {
      while (sent < size) {
        const part = f.data.subarray(sent, Math.min(size, sent + chunk));
        sent += part.byteLength;
        entry.bytes = sent;
        if (!res.write(part)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    res.on('close', () => res.removeAllListeners('drain'));
    pump();
  }
}

// Four 64 KiB tensors: reading one of them must not fetch the others.
const tensors = ['a', 'b', 'c', 'd'].map((name, i) => ({ name, tensor: { dtype: 'f32' as const, shape: [128, 128], data: randn(128 * 128, 100 + i) } }));
const multi = writeSafetensors(tensors);
const small = writeSafetensors([{ name: 'x', tensor: { dtype: 'f32', shape: [16], data: randn(16, 5) } }]);
const bigNoRange = new Uint8Array(9 * 2 ** 20);
bigNoRange.set(multi);

const srv = new TestServer();
beforeAll(async () => {
  srv.files.set('/multi.safetensors', { data: multi, mode: { range: true, head: true } });
  srv.files.set('/nohead.safetensors', { data: multi, mode: { range: true, head: false } });
  srv.files.set('/norange-small.safetensors', { data: small, mode: { range: false, head: true } });
  srv.files.set('/norange-big.bin', { data: bigNoRange, mode: { range: false, head: true } });
  srv.files.set('/norange-nohead-big.bin', { data: bigNoRange, mode: { range: false, head: false } });
  await srv.start();
});
afterAll(() => srv.stop());

describe('urlSource', () => {
  test('reading one tensor of a multi-tensor file fetches only the header and that tensor', async () => {
    srv.log.length = 0;
    const progress: [number, number][] = [];
    const src = await urlSource(`${srv.base}/multi.safetensors`, { onProgress: (l, t) => progress.push([l, t]) });
    expect(src.size).toBe(multi.byteLength);
    const f = await SafetensorsFile.open(src);
    const t = await f.read('c');
    expect(Array.from(t.data as Float32Array)).toEqual(Array.from(tensors[2]!.tensor.data));
    const info = f.tensorInfo('c');
    expect(srv.bytesServed()).toBe(f.dataOffset + (info.end - info.begin));
    expect(srv.bytesServed()).toBeLessThan(multi.byteLength / 3);
    // Every GET was a Range request answered with exactly what was asked.
    const gets = srv.log.filter((s) => s.method === 'GET');
    expect(gets.every((s) => s.range !== undefined)).toBe(true);
    expect(gets.map((s) => s.range)).toContain(`bytes=${info.begin}-${info.end - 1}`);
    expect(progress[progress.length - 1]).toEqual([srv.bytesServed(), multi.byteLength]);
  });

  test('adjacent tensors read through readMany are coalesced into one Range request', async () => {
    const f = await SafetensorsFile.open(await urlSource(`${srv.base}/multi.safetensors`));
    srv.log.length = 0;
    const got: string[] = [];
    for await (const [k] of f.readMany(['a', 'b', 'c', 'd'])) got.push(k);
    expect(got).toEqual(['a', 'b', 'c', 'd']);
    expect(srv.log.length).toBe(1);
    expect(srv.bytesServed()).toBe(multi.byteLength - f.dataOffset);
  });

  test('a server that refuses HEAD: the size comes from a 0-0 Range probe', async () => {
    srv.log.length = 0;
    const src = await urlSource(`${srv.base}/nohead.safetensors`);
    expect(src.size).toBe(multi.byteLength);
    expect(srv.log.map((s) => s.range)).toContain('bytes=0-0');
    const f = await SafetensorsFile.open(src);
    expect(f.keys()).toEqual(['a', 'b', 'c', 'd']);
  });

  test('a server without Range support is an IOError for a big file', async () => {
    const src = await urlSource(`${srv.base}/norange-big.bin`);
    const err = await src.read(0, 8).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IOError);
    expect((err as Error).message).toMatch(/does not support HTTP Range/);
    await expect(urlSource(`${srv.base}/norange-nohead-big.bin`)).rejects.toThrow(/does not support HTTP Range/);
  });

  test('a server without Range support still works for a small file (body kept, one GET)', async () => {
    srv.log.length = 0;
    const f = await SafetensorsFile.open(await urlSource(`${srv.base}/norange-small.safetensors`));
    const x = await f.read('x');
    expect((x.data as Float32Array).length).toBe(16);
    expect(srv.log.filter((s) => s.method === 'GET').length).toBe(1);
  });

  test('the whole-body limit is configurable', async () => {
    const src = await urlSource(`${srv.base}/norange-small.safetensors`, { maxWholeBodyBytes: 64 });
    await expect(src.read(0, 8)).rejects.toThrow(IOError);
  });

  test('404 is an IOError naming the URL; out-of-range reads are IOErrors', async () => {
    await expect(urlSource(`${srv.base}/missing.safetensors`)).rejects.toThrow(new RegExp(`${srv.base}/missing.safetensors.*404`));
    const src = await urlSource(`${srv.base}/multi.safetensors`);
    await expect(src.read(src.size - 4, 8)).rejects.toThrow(IOError);
    await expect(src.read(-1, 2)).rejects.toThrow(IOError);
  });

  test('an unreachable host is an IOError', async () => {
    // Port 9 on loopback: connection refused, quickly.
    await expect(urlSource('http://127.0.0.1:9/x')).rejects.toThrow(IOError);
  });

  test('an aborted signal is an AbortError', async () => {
    const ac = new AbortController();
    const src = await urlSource(`${srv.base}/multi.safetensors`, { signal: ac.signal });
    ac.abort();
    await expect(src.read(0, 8)).rejects.toThrow(AbortError);
    const per = new AbortController();
    per.abort();
    const src2 = await urlSource(`${srv.base}/multi.safetensors`);
    await expect(src2.read(0, 8, per.signal)).rejects.toThrow(AbortError);
  });

  test('custom fetch and headers are used', async () => {
    const seen: string[] = [];
    const f: typeof fetch = (input, init) => {
      seen.push(new Headers(init?.headers).get('authorization') ?? '');
      return fetch(input, init);
    };
    const src = await urlSource(`${srv.base}/multi.safetensors`, { fetch: f, headers: { Authorization: 'Bearer t' } });
    await src.read(0, 8);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.every((h) => h === 'Bearer t')).toBe(true);
  });
});

describe('bytesSource / blobSource / fileSource', () => {
  test('bytesSource reads slices; bad ranges are IOErrors', async () => {
    const s = bytesSource(Uint8Array.from([1, 2, 3, 4, 5]), 'five');
    expect(s.size).toBe(5);
    expect(Array.from(await s.read(1, 3))).toEqual([2, 3, 4]);
    expect(Array.from(await s.read(5, 0))).toEqual([]);
    await expect(s.read(3, 3)).rejects.toThrow(/five: read of 3 bytes at offset 3 is outside the source/);
    await expect(s.read(0.5, 1)).rejects.toThrow(IOError);
    const ab = bytesSource(new Uint8Array([9, 8]).buffer);
    expect(Array.from(await ab.read(0, 2))).toEqual([9, 8]);
  });

  test('blobSource reads slices of a Blob and takes a File name', async () => {
    const blob = new Blob([multi]);
    const s = blobSource(blob, 'm.safetensors');
    const f = await SafetensorsFile.open(s);
    expect(Array.from((await f.read('d')).data as Float32Array)).toEqual(Array.from(tensors[3]!.tensor.data));
    await expect(s.read(s.size, 1)).rejects.toThrow(IOError);
    if (typeof File !== 'undefined') expect(blobSource(new File([small], 'w.safetensors')).name).toBe('w.safetensors');
  });

  test('fileSource reads at offsets; missing files and directories are IOErrors', async () => {
    const s = await fileSource(FIXTURES + 'vae.safetensors');
    expect(s.size).toBeGreaterThan(1000);
    const head = await s.read(0, 8);
    expect(head.byteLength).toBe(8);
    await expect(s.read(s.size - 2, 4)).rejects.toThrow(IOError);
    await expect(fileSource(FIXTURES + 'nope.safetensors')).rejects.toThrow(/nope\.safetensors: no such file/);
    await expect(fileSource(FIXTURES)).rejects.toThrow(/not a regular file/);
  });
});
