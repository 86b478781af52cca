import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CheckpointError } from '../../src/runtime/errors.js';
import { bytesSource, type ByteSource } from '../../src/io/byte-source.js';
import { ZipArchive } from '../../src/io/zip.js';
import { openCheckpoint } from '../../src/io/checkpoint.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { cat, storedZip } from './torch-zip.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const MALFORMED = `${FIXTURES}malformed/ckpt/`;

async function expectRefused(p: Promise<unknown>, message: string | RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  if (typeof message === 'string') expect((err as Error).message).toContain(message);
  else expect((err as Error).message).toMatch(message);
}

function patch(b: Uint8Array, at: number, bytes: number[]): Uint8Array {
  const c = b.slice();
  c.set(bytes, at);
  return c;
}

const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

describe('ZipArchive', () => {
  const records = [
    { name: 'a/data.pkl', data: enc.encode('hello') },
    { name: 'a/data/0', data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) },
    { name: 'a/empty', data: new Uint8Array(0) },
  ];

  it('reads stored records at the offsets given by the local headers (aligned with extra padding)', async () => {
    const zip = await ZipArchive.open(bytesSource(storedZip(records, { align: 64 }), 't.zip'));
    expect(zip.entries.map((e) => e.name)).toEqual(['a/data.pkl', 'a/data/0', 'a/empty']);
    expect(dec.decode(await zip.read(zip.entry('a/data.pkl')!))).toBe('hello');
    const e = zip.entry('a/data/0')!;
    expect((await zip.dataOffset(e)) % 64).toBe(0);
    expect([...(await zip.read(e, 2, 3))]).toEqual([3, 4, 5]);
    expect((await zip.read(zip.entry('a/empty')!)).byteLength).toBe(0);
    expect(zip.entry('nope')).toBeUndefined();
  });

  it('reads ZIP64 end records and extra fields', async () => {
    const zip = await ZipArchive.open(bytesSource(storedZip(records, { zip64: true }), 't64.zip'));
    expect(zip.entries.map((e) => [e.name, e.size])).toEqual([['a/data.pkl', 5], ['a/data/0', 8], ['a/empty', 0]]);
    expect([...(await zip.read(zip.entry('a/data/0')!))]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('finds the end record behind a comment that itself contains the signature', async () => {
    const fake = cat(u32(0x06054b50), new Uint8Array(30));
    const zip = await ZipArchive.open(bytesSource(storedZip(records, { comment: fake }), 'c.zip'));
    expect(dec.decode(await zip.read(zip.entry('a/data.pkl')!))).toBe('hello');
  });

  it('reads only the end of the file and the central directory when opening', async () => {
    const bytes = storedZip([{ name: 'big', data: new Uint8Array(200_000) }, ...records]);
    const reads: [number, number][] = [];
    const inner = bytesSource(bytes, 'count.zip');
    const src: ByteSource = { name: inner.name, size: inner.size, read: (o, n, s) => (reads.push([o, n]), inner.read(o, n, s)) };
    const zip = await ZipArchive.open(src);
    expect(reads.reduce((s, r) => s + r[1], 0)).toBeLessThan(70_000);
    reads.length = 0;
    await zip.read(zip.entry('a/data/0')!, 4, 2);
    expect(reads.at(-1)).toEqual([(await zip.dataOffset(zip.entry('a/data/0')!)) + 4, 2]);
  });

  it('refuses compressed and encrypted records', async () => {
    await expectRefused(ZipArchive.open(bytesSource(storedZip([{ name: 'x', data: new Uint8Array(4), method: 8 }]), 'd.zip')), "record 'x' is compressed (method 8, deflate)");
    await expectRefused(ZipArchive.open(bytesSource(storedZip([{ name: 'x', data: new Uint8Array(4), method: 12 }]), 'b.zip')), 'is compressed (method 12)');
    await expectRefused(ZipArchive.open(bytesSource(storedZip([{ name: 'x', data: new Uint8Array(4), flags: 1 }]), 'e.zip')), "record 'x' is encrypted");
  });

  it('refuses broken end records and directories', async () => {
    const good = storedZip(records);
    const eocd = good.length - 22;
    await expectRefused(ZipArchive.open(bytesSource(new Uint8Array(10), 's.zip')), 'too small');
    await expectRefused(ZipArchive.open(bytesSource(good.subarray(0, good.length - 1), 't.zip')), 'no end-of-central-directory record');
    await expectRefused(ZipArchive.open(bytesSource(new Uint8Array(100), 'z.zip')), 'not a zip archive');
    await expectRefused(ZipArchive.open(bytesSource(cat([0x80, 0x02, 0x8a, 0x0a], new Uint8Array(60)), 'legacy.pt')), 'legacy (pre-1.6, non-zip)');
    // central directory offset moved past the end record
    await expectRefused(ZipArchive.open(bytesSource(patch(good, eocd + 16, u32(eocd)), 'o.zip')), 'runs past the end-of-central-directory record');
    // more records claimed than the directory can hold
    await expectRefused(ZipArchive.open(bytesSource(patch(good, eocd + 8, [200, 0, 200, 0]), 'n.zip')), 'cannot hold 200 records');
    // multi-disk
    await expectRefused(ZipArchive.open(bytesSource(patch(good, eocd + 4, [1, 0]), 'm.zip')), 'multi-disk');
    // the limit on entries
    await expectRefused(ZipArchive.open(bytesSource(good, 'l.zip'), { maxEntries: 2 }), 'more than the limit of 2');
    // a record's local header offset beyond the directory
    const cdAt = new DataView(good.buffer).getUint32(eocd + 16, true);
    await expectRefused(ZipArchive.open(bytesSource(patch(good, cdAt + 42, u32(0x7ffffff0)), 'h.zip')), "record 'a/data.pkl': local header offset 2147483632 is out of range");
    // duplicate names
    await expectRefused(ZipArchive.open(bytesSource(storedZip([records[0]!, records[0]!]), 'dup.zip')), 'appears twice');
  });

  it('checks the local header when a record is read', async () => {
    const good = storedZip(records, { align: 1 });
    const zip0 = await ZipArchive.open(bytesSource(good, 'ok.zip'));
    const off = zip0.entry('a/data/0')!.localHeaderOffset;
    const zip1 = await ZipArchive.open(bytesSource(patch(good, off, [0, 0, 0, 0]), 'sig.zip'));
    await expectRefused(zip1.read(zip1.entry('a/data/0')!), 'no local file header');
    const zip2 = await ZipArchive.open(bytesSource(patch(good, off + 26, [3, 0]), 'name.zip'));
    await expectRefused(zip2.read(zip2.entry('a/data/0')!), 'local header names a different record');
    const zip3 = await ZipArchive.open(bytesSource(patch(good, off + 28, [0xff, 0xff]), 'extra.zip'));
    await expectRefused(zip3.read(zip3.entry('a/data/0')!), 'runs past the end of the file');
    await expectRefused(zip0.read(zip0.entry('a/data/0')!, 6, 3), 'outside the record');
  });

  it('gives the documented error for every committed malformed checkpoint', async () => {
    const manifest = JSON.parse(readFileSync(`${MALFORMED}manifest.json`, 'utf8')) as { file: string; phase: 'ok' | 'open' | 'read'; message: string }[];
    expect(manifest.length).toBeGreaterThanOrEqual(8);
    for (const m of manifest) {
      const src = bytesSource(readFileSync(MALFORMED + m.file), m.file);
      if (m.phase === 'open') {
        await expectRefused(openCheckpoint(src), m.message);
        continue;
      }
      const ckpt = await openCheckpoint(src);
      expect(ckpt.keys()).toEqual(['w', 'b']);
      if (m.phase === 'read') {
        await expectRefused(ckpt.read('w'), m.message);
        continue;
      }
      expect([...((await ckpt.read('w')).data as Float32Array)]).toEqual([0, 1, 2, 3, 4, 5]);
      expect([...((await ckpt.read('b')).data as Float32Array)]).toEqual([6, 7, 8]);
    }
  });
});
