/** Node-only: weight files on disk as ByteSources. */
import { open, stat } from 'node:fs/promises';
import { IOError, throwIfAborted } from '../runtime/errors.js';
import { checkRange, type ByteSource } from '../io/byte-source.js';

/**
 * A file read at offsets. The handle is opened per read and closed at once, so a source that is simply
 * dropped leaks no descriptor; loadWeights reads in large coalesced runs, so opens are few.
 */
export async function fileSource(path: string): Promise<ByteSource> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new IOError(path, 'is not a regular file');
    size = st.size;
  } catch (e) {
    if (e instanceof IOError) throw e;
    throw new IOError(path, fsText(e), { cause: e });
  }
  return {
    name: path,
    size,
    async read(offset, length, signal) {
      throwIfAborted(signal, path);
      checkRange(path, size, offset, length);
      const out = new Uint8Array(length);
      let fh;
      try {
        fh = await open(path, 'r');
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(out, got, length - got, offset + got);
          if (bytesRead === 0) throw new IOError(path, `file ended at ${offset + got} bytes while reading ${length} at ${offset} (it shrank after opening)`);
          got += bytesRead;
        }
      } catch (e) {
        if (e instanceof IOError) throw e;
        throw new IOError(path, fsText(e), { cause: e });
      } finally {
        await fh?.close().catch(() => {});
      }
      throwIfAborted(signal, path);
      return out;
    },
  };
}

function fsText(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return e instanceof Error ? e.message : String(e);
}
