/**
 * Random-access byte sources for weight files: in-memory bytes, Blobs/Files, and HTTP(S) URLs read with
 * Range requests. Readers ask for exactly the bytes they need, so a multi-GB file is never held whole.
 * (Node files: `fileSource` in src/node/fs-source.ts.)
 */
import { AbortError, ArgumentError, FmBoostError, IOError, fmtBytes, throwIfAborted } from '../runtime/errors.js';

export interface ByteSource {
  /** File name or URL, used in error messages. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes starting at `offset` (`offset + length ≤ size`). The result may share memory
   * with the source (bytesSource): treat it as read-only.
   */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
}

/** Throws IOError unless [offset, offset + length) lies inside a source of `size` bytes. */
export function checkRange(name: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new IOError(name, `read of ${length} bytes at offset ${offset} is outside the source (${size} bytes)`);
  }
}

/** A source over bytes already in memory (no copy). */
export function bytesSource(data: ArrayBuffer | Uint8Array, name = 'bytes'): ByteSource {
  if (!(data instanceof ArrayBuffer) && !(data instanceof Uint8Array)) {
    throw new ArgumentError('bytesSource', 'data must be an ArrayBuffer or a Uint8Array');
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  return {
    name,
    size: bytes.byteLength,
    async read(offset, length, signal) {
      throwIfAborted(signal, name);
      checkRange(name, bytes.byteLength, offset, length);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** A source over a Blob (or a File from an `<input>` / drag-and-drop); reads slices lazily. */
export function blobSource(blob: Blob, name?: string): ByteSource {
  if (typeof Blob === 'undefined' || !(blob instanceof Blob)) throw new ArgumentError('blobSource', 'expected a Blob or File');
  const label = name ?? ((blob as Partial<File>).name || 'blob');
  return {
    name: label,
    size: blob.size,
    async read(offset, length, signal) {
      throwIfAborted(signal, label);
      checkRange(label, blob.size, offset, length);
      let buf: ArrayBuffer;
      try {
        buf = await blob.slice(offset, offset + length).arrayBuffer();
      } catch (e) {
        throw new IOError(label, `reading ${length} bytes at offset ${offset} failed: ${errText(e)}`, { cause: e });
      }
      throwIfAborted(signal, label);
      if (buf.byteLength !== length) throw new IOError(label, `short read: ${buf.byteLength} of ${length} bytes at offset ${offset}`);
      return new Uint8Array(buf);
    },
  };
}

export interface UrlSourceOptions {
  /** fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
  /** Aborts the size probe and every later read. */
  signal?: AbortSignal;
  /** Called after each completed read with the bytes loaded so far and the source size. */
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
  /**
   * A server that ignores Range and answers 200 with the whole body is accepted up to this size (the body
   * is kept in memory); larger files fail with IOError. Default 8 MiB.
   */
  maxWholeBodyBytes?: number;
}

const DEFAULT_MAX_WHOLE_BODY = 8 * 2 ** 20;

/**
 * A source over an HTTP(S) URL. The size comes from HEAD (or, failing that, a `bytes=0-0` Range GET);
 * every read is one `Range: bytes=a-b` request that must be answered with 206.
 */
export async function urlSource(url: string, o: UrlSourceOptions = {}): Promise<ByteSource> {
  if (typeof url !== 'string' || url === '') throw new ArgumentError('urlSource', 'url must be a non-empty string');
  const doFetch = o.fetch ?? globalThis.fetch;
  if (typeof doFetch !== 'function') throw new ArgumentError('urlSource', 'no fetch available; pass options.fetch');
  const maxWhole = o.maxWholeBodyBytes ?? DEFAULT_MAX_WHOLE_BODY;
  const headers = o.headers ?? {};

  const request = async (init: RequestInit, signal: AbortSignal | undefined, what: string): Promise<Response> => {
    throwIfAborted(signal, url);
    try {
      return await doFetch(url, { ...init, headers: { ...headers, ...(init.headers as Record<string, string> | undefined) }, signal });
    } catch (e) {
      if (signal?.aborted || isAbort(e)) throw new AbortError(url);
      throw new IOError(url, `${what} failed: ${errText(e)}`, { cause: e });
    }
  };

  // Whole body held in memory: only for small files from servers without Range support.
  let whole: Uint8Array | null = null;
  let size = -1;

  const head = await request({ method: 'HEAD' }, o.signal, 'HEAD').catch((e: unknown) => {
    if (e instanceof AbortError) throw e;
    return null; // some servers refuse HEAD; fall back to a Range probe
  });
  if (head && head.ok) {
    const len = parseLength(head.headers.get('content-length'));
    // A compressed transfer's Content-Length is not the file size.
    const enc = head.headers.get('content-encoding');
    if (len !== null && (!enc || enc === 'identity')) size = len;
  } else if (head && (head.status === 404 || head.status === 401 || head.status === 403 || head.status === 410)) {
    throw new IOError(url, `HEAD answered ${head.status} ${head.statusText}`.trim());
  }
  if (size < 0) {
    const res = await request({ headers: { Range: 'bytes=0-0' } }, o.signal, 'size probe');
    if (res.status === 206) {
      const total = parseContentRangeTotal(res.headers.get('content-range'));
      await discard(res);
      if (total === null) throw new IOError(url, 'server answered the Range probe without a Content-Range total; the file size is unknown');
      size = total;
    } else if (res.status === 200) {
      whole = await takeWholeBody(url, res, maxWhole, o.signal);
      size = whole.byteLength;
    } else {
      await discard(res);
      throw new IOError(url, `size probe answered ${res.status} ${res.statusText}`.trim());
    }
  }

  let loaded = 0;
  const progress = (n: number): void => {
    loaded += n;
    o.onProgress?.(Math.min(loaded, size), size);
  };
  if (whole) progress(whole.byteLength);

  return {
    name: url,
    size,
    async read(offset, length, signal) {
      checkRange(url, size, offset, length);
      const sig = anySignal(o.signal, signal);
      throwIfAborted(sig, url);
      if (whole) return whole.subarray(offset, offset + length);
      if (length === 0) return new Uint8Array(0);
      const res = await request({ headers: { Range: `bytes=${offset}-${offset + length - 1}` } }, sig, `Range read at ${offset}`);
      if (res.status === 200) {
        // The server ignored Range and is sending the whole file.
        if (size > maxWhole) {
          await discard(res);
          throw new IOError(url, `server does not support HTTP Range requests (answered 200 with the whole ${fmtBytes(size)} file); serve it from a host that honours Range, or download it and use a File/Blob`);
        }
        whole = await takeWholeBody(url, res, maxWhole, sig);
        if (whole.byteLength !== size) throw new IOError(url, `file changed size (${size} → ${whole.byteLength} bytes)`);
        progress(whole.byteLength);
        return whole.subarray(offset, offset + length);
      }
      if (res.status !== 206) {
        await discard(res);
        throw new IOError(url, `Range read of ${length} bytes at offset ${offset} answered ${res.status} ${res.statusText}`.trim());
      }
      const start = parseContentRangeStart(res.headers.get('content-range'));
      if (start !== null && start !== offset) {
        await discard(res);
        throw new IOError(url, `server answered Range bytes=${offset}-… with bytes starting at ${start}`);
      }
      let buf: ArrayBuffer;
      try {
        buf = await res.arrayBuffer();
      } catch (e) {
        if (sig?.aborted || isAbort(e)) throw new AbortError(url);
        throw new IOError(url, `reading the body of a Range response failed: ${errText(e)}`, { cause: e });
      }
      if (buf.byteLength !== length) {
        throw new IOError(url, `Range read at offset ${offset} returned ${buf.byteLength} bytes, expected ${length}`);
      }
      progress(length);
      return new Uint8Array(buf);
    },
  };
}

async function takeWholeBody(url: string, res: Response, maxWhole: number, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const declared = parseLength(res.headers.get('content-length'));
  if (declared !== null && declared > maxWhole) {
    await discard(res);
    throw new IOError(url, `server does not support HTTP Range requests (answered 200 with the whole ${fmtBytes(declared)} file); serve it from a host that honours Range, or download it and use a File/Blob`);
  }
  // Read incrementally so an undeclared huge body is cut off at the limit instead of filling memory.
  const reader = res.body?.getReader();
  if (!reader) return new Uint8Array(await res.arrayBuffer());
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      throwIfAborted(signal, url);
      const { done, value } = await reader.read();
      if (done) break;
      n += value.byteLength;
      if (n > maxWhole) {
        await reader.cancel().catch(() => {});
        throw new IOError(url, `server does not support HTTP Range requests (answered 200 with a body over ${fmtBytes(maxWhole)}); serve it from a host that honours Range, or download it and use a File/Blob`);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof FmBoostError) throw e;
    if (signal?.aborted || isAbort(e)) throw new AbortError(url);
    throw new IOError(url, `reading the response body failed: ${errText(e)}`, { cause: e });
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // the connection is closed either way
  }
}

function parseLength(v: string | null): number | null {
  if (v === null || !/^\s*\d+\s*$/.test(v)) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

function parseContentRangeTotal(v: string | null): number | null {
  const m = v && /^\s*bytes\s+(?:\d+-\d+|\*)\/(\d+)\s*$/i.exec(v);
  if (!m) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}

function parseContentRangeStart(v: string | null): number | null {
  const m = v && /^\s*bytes\s+(\d+)-\d+/i.exec(v);
  return m ? Number(m[1]) : null;
}

function anySignal(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  if (!a) return b;
  if (!b) return a;
  const any = (AbortSignal as unknown as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any([a, b]);
  const c = new AbortController();
  const stop = (): void => c.abort();
  if (a.aborted || b.aborted) c.abort();
  a.addEventListener('abort', stop, { once: true });
  b.addEventListener('abort', stop, { once: true });
  return c.signal;
}

function isAbort(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'AbortError';
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
