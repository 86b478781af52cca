/**
 * Writes test/fixtures/malformed/: one tiny corrupt safetensors file per fault the reader must name, plus
 * manifest.json (file → phase 'open' | 'read', expected message fragment). The files are committed; rerun
 * only to change the corpus:
 *   npx esbuild scripts/make-malformed.ts --bundle --platform=node --format=esm --outfile=/tmp/mm.mjs && node /tmp/mm.mjs
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';

const DIR = 'test/fixtures/malformed/';

interface Case {
  file: string;
  phase: 'open' | 'read';
  message: string;
  bytes: Uint8Array;
}

/** prefix (8-byte LE length, or an explicit value) + header text/bytes + data bytes. */
function st(header: string | Uint8Array, dataBytes = 0, declared?: bigint): Uint8Array {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  for (let i = 0; i < dataBytes; i++) out[8 + h.byteLength + i] = (i * 37) & 0xff;
  return out;
}

const ok = (extra: Record<string, unknown>): string => JSON.stringify({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });

const cases: Case[] = [
  { file: 'short.safetensors', phase: 'open', message: 'shorter than the 8-byte header length', bytes: new Uint8Array([1, 0, 0, 0, 0]) },
  { file: 'header_past_end.safetensors', phase: 'open', message: 'runs past the end of the file', bytes: st('{}', 0, 1000n) },
  { file: 'header_absurd.safetensors', phase: 'open', message: 'is absurd', bytes: st('{}', 0, 1n << 40n) },
  { file: 'header_too_short.safetensors', phase: 'open', message: 'too short for a JSON object', bytes: st('', 4) },
  { file: 'header_not_utf8.safetensors', phase: 'open', message: 'not valid UTF-8', bytes: st(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])) },
  { file: 'header_not_json.safetensors', phase: 'open', message: 'not valid JSON', bytes: st('{"a": {"dtype": "F32",') },
  { file: 'header_array.safetensors', phase: 'open', message: 'not a JSON object (got an array)', bytes: st('[1, 2, 3]') },
  { file: 'header_null.safetensors', phase: 'open', message: 'not a JSON object (got null)', bytes: st('null') },
  { file: 'entry_not_object.safetensors', phase: 'open', message: "tensor 'a': entry is number", bytes: st('{"a": 5}') },
  { file: 'missing_dtype.safetensors', phase: 'open', message: "tensor 'a': missing dtype", bytes: st('{"a": {"shape": [2], "data_offsets": [0, 8]}}', 8) },
  { file: 'missing_shape.safetensors', phase: 'open', message: "tensor 'a': missing shape", bytes: st('{"a": {"dtype": "F32", "data_offsets": [0, 8]}}', 8) },
  { file: 'missing_offsets.safetensors', phase: 'open', message: "tensor 'a': missing data_offsets", bytes: st('{"a": {"dtype": "F32", "shape": [2]}}', 8) },
  { file: 'dtype_not_string.safetensors', phase: 'open', message: 'dtype is number, not a string', bytes: st('{"a": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}}', 8) },
  { file: 'shape_not_array.safetensors', phase: 'open', message: 'shape is string, not an array', bytes: st('{"a": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}', 8) },
  { file: 'shape_negative.safetensors', phase: 'open', message: 'not a non-negative integer', bytes: st('{"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}', 8) },
  { file: 'shape_fraction.safetensors', phase: 'open', message: 'not a non-negative integer', bytes: st('{"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 8]}}', 8) },
  { file: 'shape_string_dim.safetensors', phase: 'open', message: 'not a non-negative integer', bytes: st('{"a": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}', 8) },
  { file: 'offsets_wrong_length.safetensors', phase: 'open', message: 'not [begin, end]', bytes: st('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}', 8) },
  { file: 'offsets_negative.safetensors', phase: 'open', message: 'are not non-negative integers', bytes: st('{"a": {"dtype": "F32", "shape": [0], "data_offsets": [-4, 0]}}', 8) },
  { file: 'offsets_fraction.safetensors', phase: 'open', message: 'are not non-negative integers', bytes: st('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 7.5]}}', 8) },
  { file: 'offsets_end_before_begin.safetensors', phase: 'open', message: 'end 4 is before begin 8', bytes: st('{"a": {"dtype": "U8", "shape": [4], "data_offsets": [8, 4]}}', 8) },
  { file: 'offsets_out_of_range.safetensors', phase: 'open', message: 'run past the end of the data', bytes: st('{"a": {"dtype": "F32", "shape": [250], "data_offsets": [0, 1000]}}', 8) },
  { file: 'overlap.safetensors', phase: 'open', message: 'overlap', bytes: st('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}', 12) },
  { file: 'size_mismatch.safetensors', phase: 'open', message: 'is 12 bytes but data_offsets [0, 8] span 8', bytes: st('{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', 8) },
  { file: 'metadata_not_object.safetensors', phase: 'open', message: '__metadata__ is not an object of strings', bytes: st(ok({ __metadata__: 'x' }), 8) },
  { file: 'metadata_not_strings.safetensors', phase: 'open', message: "__metadata__['format'] is number, not a string", bytes: st(ok({ __metadata__: { format: 1 } }), 8) },
  { file: 'unknown_dtype.safetensors', phase: 'read', message: 'dtype X9 is not supported (F32, F16, BF16', bytes: st('{"a": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}', 8) },
  { file: 'unsupported_f64.safetensors', phase: 'read', message: 'dtype F64 is not supported (F32, F16, BF16', bytes: st('{"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}', 8) },
];

mkdirSync(DIR, { recursive: true });
for (const f of readdirSync(DIR)) if (f.endsWith('.safetensors')) rmSync(DIR + f);
for (const c of cases) writeFileSync(DIR + c.file, c.bytes);
const manifest = cases.map(({ file, phase, message }) => ({ file, phase, message }));
writeFileSync(DIR + 'manifest.json', JSON.stringify(manifest, null, 2) + '\n');
console.log(`wrote ${cases.length} files to ${DIR}`);
