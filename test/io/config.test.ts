import { describe, expect, test } from 'vitest';
import { bytesSource } from '../../src/io/byte-source.js';
import { expectFields, parseJson, readJson } from '../../src/io/config.js';
import { fileSource } from '../../src/node/fs-source.js';
import { ConfigError } from '../../src/runtime/errors.js';
import { FIXTURES } from '../helpers/fixtures.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

interface VaeCfg {
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  norm_num_groups: number;
  scaling_factor: number | undefined;
  act_fn: string;
  force_upcast: boolean | undefined;
  down_block_types: string[];
}

describe('config', () => {
  test('reads and validates a real fixture config', async () => {
    const raw = await readJson(await fileSource(FIXTURES + 'vae.config.json'));
    const cfg = expectFields<VaeCfg>('vae.config.json', raw, {
      block_out_channels: 'integer[]',
      layers_per_block: 'integer',
      latent_channels: 'integer',
      norm_num_groups: 'integer',
      scaling_factor: 'optional-number',
      act_fn: 'string',
      force_upcast: 'optional-boolean',
      down_block_types: 'string[]',
    });
    expect(cfg.block_out_channels).toEqual([16, 32]);
    expect(cfg.latent_channels).toBe(4);
    expect(cfg.norm_num_groups).toBe(8);
    expect(Object.keys(cfg).sort()).toEqual(['act_fn', 'block_out_channels', 'down_block_types', 'force_upcast', 'latent_channels', 'layers_per_block', 'norm_num_groups', 'scaling_factor']);
  });

  test('bad JSON, bad UTF-8 and oversized files are ConfigErrors naming the file', async () => {
    await expect(readJson(bytesSource(enc('{"a": 1,'), 'cfg.json'))).rejects.toThrow(/config 'cfg.json': is not valid JSON/);
    await expect(readJson(bytesSource(new Uint8Array([0x7b, 0xff, 0x7d]), 'u.json'))).rejects.toThrow(/config 'u.json': is not valid UTF-8/);
    await expect(readJson(bytesSource(new Uint8Array(100), 'big.json'), 64)).rejects.toThrow(/config 'big.json': is 100 B, over the 64 B limit/);
    // A BOM is not an error.
    expect(await readJson(bytesSource(new Uint8Array([0xef, 0xbb, 0xbf, ...enc('{"x": 2}')]), 'bom.json'))).toEqual({ x: 2 });
    expect(() => parseJson('s.json', 'nope')).toThrow(ConfigError);
  });

  test('each field mismatch is a ConfigError naming the field', () => {
    const spec = { a: 'number', b: 'integer[]', c: 'optional-string', d: 'boolean', e: 'object' } as const;
    type T = { a: number; b: number[]; c: string | undefined; d: boolean; e: object };
    const good = { a: 1.5, b: [1, 2], d: true, e: {}, extra: 'ignored' };
    expect(expectFields<T>('f.json', good, spec)).toEqual({ a: 1.5, b: [1, 2], c: undefined, d: true, e: {} });
    expect(expectFields<T>('f.json', { ...good, c: null }, spec).c).toBeUndefined();
    const cases: [unknown, RegExp][] = [
      [{ ...good, a: '1' }, /field 'a' must be number, got the string "1"/],
      [{ ...good, a: NaN }, /field 'a' must be number/],
      [{ ...good, b: [1, 2.5] }, /field 'b\[1\]' must be integer, got number 2.5/],
      [{ ...good, b: 3 }, /field 'b' must be integer\[\], got number 3/],
      [{ ...good, c: 4 }, /field 'c' must be string/],
      [{ a: 1, b: [], e: {} }, /field 'd' is missing/],
      [{ ...good, d: null }, /field 'd' is null/],
      [{ ...good, e: [] }, /field 'e' must be object, got an array/],
      [[1], /expected a JSON object, got an array/],
      [null, /expected a JSON object, got null/],
    ];
    for (const [obj, re] of cases) {
      let err: unknown;
      try {
        expectFields<T>('f.json', obj, spec);
      } catch (e) {
        err = e;
      }
      expect(err, String(re)).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(re);
      expect((err as ConfigError).file).toBe('f.json');
    }
  });
});
