/**
 * Minimal ZIP reader for PyTorch checkpoints (torch.save's zip format). It reads the end-of-central-directory
 * record (ZIP64 when a count, size or offset needs it), the central directory, and each record's local header
 * on first use. Only STORED records are supported: torch never compresses, and decompressing would need a
 * codec in the browser bundle. Every offset and size is checked against the source before it is read, and
 * every failure is a CheckpointError naming the file and the record.
 *
 * Layout references: PKWARE APPNOTE.TXT §4.3 (records), §4.4.3.2 (ZIP64 extra field, 0x0001).
 */
import { CheckpointError, throwIfAborted } from '../runtime/errors.js';
import type { ByteSource } from './byte-source.js';

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored; anything else is refused when the archive is opened. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  /** Offset of the local file header. */
  readonly localHeaderOffset: number;
  /** Length of the name in bytes, which the local header must repeat. */
  readonly nameLength: number;
}

export interface ZipLimits {
  /** Most entries the central directory may list. */
  maxEntries: number;
  /** Largest central directory read into memory, bytes. */
  maxCentralDirectoryBytes: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = { maxEntries: 1 << 20, maxCentralDirectoryBytes: 256 * 2 ** 20 };

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_MIN = 56;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
/** The EOCD may be followed by a comment of at most 65,535 bytes. */
const MAX_COMMENT = 0xffff;

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** An opened archive: the central directory in memory, record bytes read on demand. */
export class ZipArchive {
  private readonly byName = new Map<string, ZipEntry>();
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly source: ByteSource,
    readonly entries: readonly ZipEntry[],
  ) {
    for (const e of entries) {
      // Later duplicates would be ambiguous (a reader picking a different one than torch could be fooled).
      if (this.byName.has(e.name)) throw this.error(`record '${e.name}' appears twice in the central directory`);
      this.byName.set(e.name, e);
    }
  }

  /** Reads the central directory of `source`. */
  static async open(source: ByteSource, limits: Partial<ZipLimits> = {}, signal?: AbortSignal): Promise<ZipArchive> {
    const lim = { ...DEFAULT_ZIP_LIMITS, ...limits };
    const err = (detail: string): CheckpointError => new CheckpointError(source.name, detail);
    const size = source.size;
    if (!Number.isSafeInteger(size) || size < EOCD_SIZE) throw err(`not a zip archive: ${size} bytes is too small for an end-of-central-directory record`);

    const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
    const tailStart = size - tailLen;
    const tail = await readExact(source, tailStart, tailLen, signal);
    const tv = view(tail);
    // The record whose comment ends exactly at the end of the file wins, so a signature inside a comment is
    // not mistaken for it; failing that (bytes appended after the archive), the last one that fits.
    let at = -1;
    for (const exact of [true, false]) {
      for (let i = tailLen - EOCD_SIZE; i >= 0 && at < 0; i--) {
        if (tv.getUint32(i, true) !== SIG_EOCD) continue;
        const end = i + EOCD_SIZE + tv.getUint16(i + 20, true);
        if (exact ? end === tailLen : end <= tailLen) at = i;
      }
      if (at >= 0) break;
    }
    if (at < 0) {
      const head = await readExact(source, 0, Math.min(4, size), signal);
      if (head[0] === 0x80 && head[1] !== undefined && head[1] <= 5) {
        throw err('this is a legacy (pre-1.6, non-zip) torch.save file, which is not supported; re-save it with a current PyTorch or convert it to safetensors');
      }
      throw err('not a zip archive: no end-of-central-directory record');
    }
    const eocdOffset = tailStart + at;
    const diskNo = tv.getUint16(at + 4, true);
    const cdDisk = tv.getUint16(at + 6, true);
    let count: number = tv.getUint16(at + 10, true);
    const countOnDisk = tv.getUint16(at + 8, true);
    let cdSize: number = tv.getUint32(at + 12, true);
    let cdOffset: number = tv.getUint32(at + 16, true);

    if (count === 0xffff || countOnDisk === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      if (eocdOffset < ZIP64_LOCATOR_SIZE) throw err('ZIP64 end-of-central-directory locator is missing');
      const loc = view(await readExact(source, eocdOffset - ZIP64_LOCATOR_SIZE, ZIP64_LOCATOR_SIZE, signal));
      if (loc.getUint32(0, true) !== SIG_ZIP64_LOCATOR) throw err('ZIP64 end-of-central-directory locator is missing');
      const z64Offset = u64(loc, 8, () => err('ZIP64 end-of-central-directory offset is out of range'));
      if (z64Offset + ZIP64_EOCD_MIN > eocdOffset - ZIP64_LOCATOR_SIZE) throw err(`ZIP64 end-of-central-directory offset ${z64Offset} is out of range`);
      const z = view(await readExact(source, z64Offset, ZIP64_EOCD_MIN, signal));
      if (z.getUint32(0, true) !== SIG_ZIP64_EOCD) throw err(`no ZIP64 end-of-central-directory record at offset ${z64Offset}`);
      if (z.getUint32(16, true) !== 0 || z.getUint32(20, true) !== 0) throw err('multi-disk archives are not supported');
      const range = (): CheckpointError => err('ZIP64 end-of-central-directory field is out of range');
      count = u64(z, 32, range);
      cdSize = u64(z, 40, range);
      cdOffset = u64(z, 48, range);
    } else if (diskNo !== 0 || cdDisk !== 0 || countOnDisk !== count) {
      throw err('multi-disk archives are not supported');
    }

    if (count > lim.maxEntries) throw err(`central directory lists ${count} records, more than the limit of ${lim.maxEntries}`);
    if (cdSize > lim.maxCentralDirectoryBytes) throw err(`central directory of ${cdSize} bytes exceeds the limit of ${lim.maxCentralDirectoryBytes}`);
    if (cdOffset + cdSize > eocdOffset) throw err(`central directory (offset ${cdOffset}, ${cdSize} bytes) runs past the end-of-central-directory record at ${eocdOffset}`);
    if (count * CENTRAL_SIZE > cdSize) throw err(`central directory of ${cdSize} bytes cannot hold ${count} records`);

    const cd = await readExact(source, cdOffset, cdSize, signal);
    const cv = view(cd);
    const entries: ZipEntry[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      throwIfAborted(signal, source.name);
      if (p + CENTRAL_SIZE > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) throw err(`central directory record ${i} is malformed (at offset ${cdOffset + p})`);
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      let compressedSize: number = cv.getUint32(p + 20, true);
      let usize: number = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      const disk = cv.getUint16(p + 34, true);
      let localHeaderOffset: number = cv.getUint32(p + 42, true);
      const end = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
      if (end > cdSize) throw err(`central directory record ${i} runs past the directory`);
      const name = utf8.decode(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));
      const where = `record '${name}'`;

      // ZIP64 extra field: 8-byte values present only for the fields saturated above, in this order.
      if (usize === 0xffffffff || compressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
        let q = p + CENTRAL_SIZE + nameLen;
        const qEnd = q + extraLen;
        let found = false;
        while (q + 4 <= qEnd) {
          const id = cv.getUint16(q, true);
          const len = cv.getUint16(q + 2, true);
          if (q + 4 + len > qEnd) break;
          if (id === 0x0001) {
            let r = q + 4;
            const rEnd = r + len;
            const next = (): number => {
              if (r + 8 > rEnd) throw err(`${where}: ZIP64 extra field is too short`);
              const v = u64(cv, r, () => err(`${where}: ZIP64 size or offset is out of range`));
              r += 8;
              return v;
            };
            if (usize === 0xffffffff) usize = next();
            if (compressedSize === 0xffffffff) compressedSize = next();
            if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
            found = true;
            break;
          }
          q += 4 + len;
        }
        if (!found) throw err(`${where}: a size or offset needs ZIP64 but the record has no ZIP64 extra field`);
      }
      if (disk !== 0 && disk !== 0xffff) throw err(`${where}: multi-disk archives are not supported`);
      if (flags & 1) throw err(`${where} is encrypted, which is not supported`);
      if (method !== 0) {
        throw err(`${where} is compressed (method ${method}${method === 8 ? ', deflate' : ''}); only stored (uncompressed) records are supported, as torch.save writes them`);
      }
      if (compressedSize !== usize) throw err(`${where}: stored record has compressed size ${compressedSize} ≠ size ${usize}`);
      if (localHeaderOffset + LOCAL_SIZE > cdOffset) throw err(`${where}: local header offset ${localHeaderOffset} is out of range`);
      entries.push({ name, method, compressedSize, size: usize, localHeaderOffset, nameLength: nameLen });
      p = end;
    }
    return new ZipArchive(source, entries);
  }

  /** The entry named `name`, or undefined. */
  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** Absolute offset of a record's data, from its local header (read once, then cached). */
  async dataOffset(entry: ZipEntry, signal?: AbortSignal): Promise<number> {
    const hit = this.dataOffsets.get(entry.name);
    if (hit !== undefined) return hit;
    const where = `record '${entry.name}'`;
    if (entry.localHeaderOffset + LOCAL_SIZE > this.source.size) throw this.error(`${where}: local header offset ${entry.localHeaderOffset} is out of range`);
    const h = view(await readExact(this.source, entry.localHeaderOffset, LOCAL_SIZE, signal));
    if (h.getUint32(0, true) !== SIG_LOCAL) throw this.error(`${where}: no local file header at offset ${entry.localHeaderOffset}`);
    if (h.getUint16(8, true) !== entry.method) throw this.error(`${where}: local header and central directory disagree on the compression method`);
    const nameLen = h.getUint16(26, true);
    const extraLen = h.getUint16(28, true);
    if (nameLen !== entry.nameLength) throw this.error(`${where}: local header names a different record`);
    const off = entry.localHeaderOffset + LOCAL_SIZE + nameLen + extraLen;
    if (off + entry.size > this.source.size) {
      throw this.error(`${where}: data (offset ${off}, ${entry.size} bytes) runs past the end of the file (${this.source.size} bytes)`);
    }
    this.dataOffsets.set(entry.name, off);
    return off;
  }

  /** `length` bytes of a record starting at `offset` within the record. */
  async read(entry: ZipEntry, offset = 0, length = entry.size - offset, signal?: AbortSignal): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > entry.size) {
      throw this.error(`record '${entry.name}': read of ${length} bytes at ${offset} is outside the record (${entry.size} bytes)`);
    }
    const base = await this.dataOffset(entry, signal);
    return readExact(this.source, base + offset, length, signal);
  }

  private error(detail: string): CheckpointError {
    return new CheckpointError(this.source.name, detail);
  }
}

async function readExact(src: ByteSource, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
  if (offset < 0 || length < 0 || offset + length > src.size) {
    throw new CheckpointError(src.name, `read of ${length} bytes at offset ${offset} is outside the file (${src.size} bytes)`);
  }
  const b = await src.read(offset, length, signal);
  if (b.byteLength !== length) throw new CheckpointError(src.name, `short read: ${b.byteLength} of ${length} bytes at offset ${offset}`);
  return b;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Little-endian u64 as a safe integer; `onRange` builds the error for values past 2^53. */
function u64(v: DataView, at: number, onRange: () => Error): number {
  const lo = v.getUint32(at, true);
  const hi = v.getUint32(at + 4, true);
  if (hi >= 0x200000) throw onRange();
  return hi * 0x100000000 + lo;
}
