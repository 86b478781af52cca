import { describe, expect, test } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { f32ArrayToF16 } from '../../src/runtime/dtype.js';
import { SafetensorsError } from '../../src/runtime/errors.js';
import { randn, rng } from '../helpers/random.js';

const CASES = 12_000;
const PER_CASE_MS = 200;

const base = writeSafetensors(
  [
    { name: 'conv.weight', tensor: { dtype: 'f32', shape: [2, 3, 1, 1], data: randn(6, 11) } },
    { name: 'conv.bias', tensor: { dtype: 'f16', shape: [2], data: f32ArrayToF16(randn(2, 12)) } },
    { name: 'emb', tensor: { dtype: 'bf16', shape: [3], data: Uint16Array.from([0x3f80, 0xc000, 0x4049]) } },
    { name: 'ids', tensor: { dtype: 'i32', shape: [2], data: Int32Array.from([7, 9]) } },
  ],
  { format: 'pt' },
);
const headerLen = Number(new DataView(base.buffer).getBigUint64(0, true));

/** JSON-significant bytes and digits make header mutations hit the validator, not just the JSON parser. */
const INTERESTING = [...'{}[]":,-.0123456789eE \\', 'F', 'U', 'B'].map((c) => c.charCodeAt(0)).concat([0x00, 0xff, 0xc3, 0x80]);

type Mutation = (b: Uint8Array, r: () => number) => Uint8Array;
const int = (r: () => number, n: number): number => Math.floor(r() * n);

const mutations: [string, Mutation][] = [
  ['bit flips', (b, r) => {
    const o = b.slice();
    for (let k = 1 + int(r, 4); k > 0; k--) {
      const i = int(r, o.length);
      o[i]! ^= 1 << int(r, 8);
    }
    return o;
  }],
  ['header byte overwrite', (b, r) => {
    const o = b.slice();
    for (let k = 1 + int(r, 3); k > 0; k--) o[8 + int(r, headerLen)] = r() < 0.7 ? INTERESTING[int(r, INTERESTING.length)]! : int(r, 256);
    return o;
  }],
  ['header digit change', (b, r) => {
    // Pushes offsets/dims to nearby or absurd values while keeping the JSON valid.
    const o = b.slice();
    const digits: number[] = [];
    for (let i = 8; i < 8 + headerLen; i++) if (o[i]! >= 0x30 && o[i]! <= 0x39) digits.push(i);
    o[digits[int(r, digits.length)]!] = 0x30 + int(r, 10);
    return o;
  }],
  ['truncation', (b, r) => b.slice(0, int(r, b.length))],
  ['extension', (b, r) => {
    const o = new Uint8Array(b.length + 1 + int(r, 16));
    o.set(b);
    return o;
  }],
  ['length field', (b, r) => {
    const o = b.slice();
    const dv = new DataView(o.buffer);
    const choices = [0n, 1n, 7n, BigInt(headerLen - 1), BigInt(headerLen + 1), BigInt(o.length), BigInt(o.length - 8), 2n ** 63n, 2n ** 64n - 1n, BigInt(100 * 2 ** 20 + 1), BigInt(int(r, 2 ** 31))];
    dv.setBigUint64(0, choices[int(r, choices.length)]!, true);
    return o;
  }],
  ['header splice', (b, r) => {
    // Deletes a span inside the header and fixes the length, so the JSON is cut in structured places.
    const a = 8 + int(r, headerLen);
    const e = Math.min(8 + headerLen, a + 1 + int(r, 12));
    const o = new Uint8Array(b.length - (e - a));
    o.set(b.subarray(0, a));
    o.set(b.subarray(e), a);
    new DataView(o.buffer).setBigUint64(0, BigInt(headerLen - (e - a)), true);
    return o;
  }],
];

describe('safetensors fuzz', () => {
  test(`${CASES} seeded mutations: parse, or SafetensorsError — nothing else, each within ${PER_CASE_MS} ms`, async () => {
    const r = rng(0x5afe);
    const counts = new Map<string, { parsed: number; rejected: number }>();
    let slowest = 0;
    for (let c = 0; c < CASES; c++) {
      const [kind, mutate] = mutations[c % mutations.length]!;
      const bytes = mutate(base, r);
      const t0 = performance.now();
      let outcome: 'parsed' | 'rejected';
      try {
        const f = await SafetensorsFile.open(bytesSource(bytes, `case${c}`));
        for (const k of f.keys()) {
          try {
            const t = await f.read(k);
            // What parsed must be self-consistent: the data fills the declared shape.
            const n = t.shape.reduce((a, d) => a * d, 1);
            if (t.data.length !== n) throw new Error(`case ${c} (${kind}): '${k}' has ${t.data.length} values for [${t.shape}]`);
          } catch (e) {
            if (!(e instanceof SafetensorsError)) throw e;
          }
        }
        outcome = 'parsed';
      } catch (e) {
        if (!(e instanceof SafetensorsError)) {
          throw new Error(`case ${c} (${kind}): expected SafetensorsError, got ${String(e)}`, { cause: e });
        }
        outcome = 'rejected';
      }
      const ms = performance.now() - t0;
      slowest = Math.max(slowest, ms);
      if (ms > PER_CASE_MS) throw new Error(`case ${c} (${kind}) took ${ms.toFixed(1)} ms`);
      const k = counts.get(kind) ?? { parsed: 0, rejected: 0 };
      k[outcome]++;
      counts.set(kind, k);
    }
    // Every mutation family must produce both outcomes somewhere, or the fuzzer is not exercising the validator.
    for (const [kind, k] of counts) {
      if (kind === 'truncation' || kind === 'length field' || kind === 'header splice') expect(k.rejected, kind).toBeGreaterThan(0);
      else expect(k.parsed + k.rejected, kind).toBeGreaterThan(0);
    }
    const total = [...counts.values()].reduce((a, k) => a + k.parsed + k.rejected, 0);
    expect(total).toBe(CASES);
    const rejected = [...counts.values()].reduce((a, k) => a + k.rejected, 0);
    expect(rejected).toBeGreaterThan(CASES / 4);
    expect(rejected).toBeLessThan(CASES);
    expect(slowest).toBeLessThan(PER_CASE_MS);
  });

  test('the unmutated base file parses (so rejections come from the mutations)', async () => {
    const f = await SafetensorsFile.open(bytesSource(base));
    expect(f.keys()).toEqual(['conv.weight', 'conv.bias', 'emb', 'ids']);
  });
});
