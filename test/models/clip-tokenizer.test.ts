import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLIPTokenizer } from '../../src/models/clip-tokenizer.js';
import { ArgumentError, ConfigError } from '../../src/runtime/errors.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { rng } from '../helpers/random.js';

interface Case {
  text: string;
  input_ids: number[];
  num_tokens: number;
  truncated: boolean;
  bpe_tokens: string[];
}
const fixture = JSON.parse(readFileSync(FIXTURES + 'tokenizer.json', 'utf8')) as { cases: Case[] };

let tok: CLIPTokenizer;
beforeAll(async () => {
  tok = await CLIPTokenizer.fromBpeGz(new Uint8Array(readFileSync(new URL('../../weights/tokenizer/bpe_simple_vocab_16e6.txt.gz', import.meta.url))));
});

const quiet = { onWarning: () => {} };

/** Ids of text that is already clean (lower-case, single spaces): pre-split + BPE only, no cleaning. */
function idsOfCleanText(t: CLIPTokenizer, s: string): number[] {
  const out = [49406];
  const re = /[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;
  for (const m of s.toLowerCase().matchAll(re)) out.push(...t.bpeForTest(m[0]));
  out.push(49407);
  return out;
}

describe('CLIPTokenizer: reference ids', () => {
  it('matches every case of tokenizer.json (ids, count, truncation)', () => {
    expect(fixture.cases.length).toBeGreaterThanOrEqual(15);
    for (const c of fixture.cases) {
      const warnings: string[] = [];
      const r = tok.encode(c.text, { onWarning: (m) => warnings.push(m) });
      expect(Array.from(r.ids), JSON.stringify(c.text)).toEqual(c.input_ids);
      expect(r.numTokens, c.text).toBe(c.num_tokens);
      expect(r.truncated, c.text).toBe(c.truncated);
      expect(warnings.length, c.text).toBe(c.truncated ? 1 : 0);
      if (c.truncated) expect(warnings[0]).toMatch(/truncated/);
    }
  });

  it('matches REFERENCE.md §8.3', () => {
    const table: [string, number[]][] = [
      ['a photo of a cat', [49406, 320, 1125, 539, 320, 2368, 49407]],
      ['A photograph of an astronaut riding a horse', [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]],
      ["Hello, World!!  isn't it 3.14?", [49406, 3306, 267, 1002, 748, 2923, 713, 585, 274, 269, 272, 275, 286, 49407]],
      ['', [49406, 49407]],
      ['café naïve 東京', [49406, 15304, 1097, 35689, 563, 48338, 21078, 361, 49407]],
    ];
    for (const [text, ids] of table) {
      const r = tok.encode(text);
      expect(Array.from(r.ids.slice(0, ids.length)), text).toEqual(ids);
      expect(Array.from(r.ids.slice(ids.length)).every((v) => v === 49407)).toBe(true);
    }
    expect(tok.bpeForTest('!')[0]).toBe(256); // '!</w>'
    expect(tok.token(0)).toBe('!');
    expect(tok.token(320)).toBe('a</w>');
    expect(tok.token(512)).toBe('in'); // first merge 'i n'
    expect(tok.token(49406)).toBe('<|startoftext|>');
  });

  it('truncation keeps 75 text tokens and forces the end id; the default warning goes to console.warn', () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i % 10}`).join(' ');
    const warn = console.warn;
    const seen: unknown[] = [];
    console.warn = (m: unknown) => seen.push(m);
    try {
      const r = tok.encode(words);
      expect(r.truncated).toBe(true);
      expect(r.numTokens).toBe(77);
      expect(r.ids[76]).toBe(49407);
      expect(r.ids[75]).not.toBe(49407);
    } finally {
      console.warn = warn;
    }
    expect(seen.length).toBe(1);
    expect(String(seen[0])).toMatch(/truncated/);
  });
});

describe('CLIPTokenizer: cleaning', () => {
  it('unescapes HTML like Python html.unescape applied twice', () => {
    // Expected strings produced by Python: html.unescape(html.unescape(text)).
    const cases: [string, string][] = [
      ['&ampx &amp &lt3 &notit; &notin; &#65;&#x42;&#X63; &#0; &#128; &#x80; &#xD800; &#1114112; &#99999999999; &#1; &#127;', '&x & <3 ¬it; ∉ ABc \ufffd € € \ufffd \ufffd \ufffd  '],
      ['&AMP;amp; &amp;lt;b&amp;gt; &frac12 &frac12x &sup2; &eacute &Eacute; &nbsp;x&thinsp;y', '& <b> ½ ½x ² é É  x y'],
      ['a<b> &amp;amp;amp; c', 'a<b> &amp; c'],
      ['&unknownentity; &; &# &#x; &;x', '&unknownentity; &; &# &#x; &;x'],
    ];
    for (const [raw, unescaped] of cases) {
      const clean = unescaped.replace(/[\s\u00a0]+/gu, ' ').trim();
      const want = idsOfCleanText(tok, clean);
      expect(Array.from(tok.encode(raw, quiet).ids.slice(0, want.length)), raw).toEqual(want);
    }
  });

  it('applies the ftfy-like fixes: mojibake, quotes, ligatures, width, controls, NFC, surrogates, Σ', () => {
    const same = (a: string, b: string): void => expect(Array.from(tok.encode(a).ids), JSON.stringify(a)).toEqual(Array.from(tok.encode(b).ids));
    same('schÃ¶n', 'schön');
    same('â€œquotedâ€\u009d', '"quoted"');
    same('\ufb01ne \ufb02ow', 'fine flow');
    same('\uff21\uff22\uff23\u3000x', 'ABC x');
    same('a\u0000b\u001bc\ufeffd', 'abcd');
    same('\x1b[31mred\x1b[0m', 'red');
    same('e\u0301', 'é');
    same('\ud800x\udc00', '\ufffdx\ufffd');
    same('ΟΔΟΣ', 'οδοσ');
    same('a\r\nb\u2028c\u0085d', 'a b c d');
    // Python's whitespace set: U+001F is removed by ftfy, U+00A0 and U+2003 collapse like spaces.
    same('a\u00a0\u2003b', 'a b');
  });

  it('is exact across chunk boundaries: long whitespace, entities and marks around the cut', () => {
    const pad = ' '.repeat(20_000);
    expect(Array.from(tok.encode(pad + 'a photo of a cat' + pad).ids)).toEqual(Array.from(tok.encode('a photo of a cat').ids));
    const head = 'x '.repeat(4090) + '&amp;lt;'; // crosses the first 8192-char chunk
    const r = tok.encode(head + ' tail', quiet);
    expect(r.truncated).toBe(true);
    const short = tok.encode('x '.repeat(80), quiet);
    expect(Array.from(r.ids)).toEqual(Array.from(short.ids));
    // 40 words separated by long runs of mixed whitespace fit in the context and must all survive.
    const words = Array.from({ length: 40 }, (_, i) => `cat${i % 7}`);
    const spaced = words.join('\n \t'.repeat(300));
    expect(Array.from(tok.encode(spaced).ids)).toEqual(Array.from(tok.encode(words.join(' ')).ids));
  });

  it('clamps huge words without changing their first 76 tokens', () => {
    const u = rng(7);
    for (const alphabet of ['ab', 'abcdefgh', 'etaoin shrdlu'.replace(' ', ''), '.,!?-']) {
      const word = Array.from({ length: 6000 }, () => alphabet[Math.floor(u() * alphabet.length)]).join('');
      const full = tok.bpeForTest(word, false);
      const clamped = tok.bpeForTest(word, true);
      expect(full.length).toBeGreaterThan(76);
      expect(Array.from(clamped.slice(0, 76)), alphabet).toEqual(Array.from(full.slice(0, 76)));
    }
  });
});

describe('CLIPTokenizer: API', () => {
  it('decodes ids back to the cleaned text', () => {
    for (const s of ['a photo of a cat', 'café naïve 東京']) expect(tok.decode(tok.encode(s).ids)).toBe(s);
    // Every pre-token ends a word, so the reference decoding separates punctuation and digits.
    expect(tok.decode(tok.encode('Hello, World!! 3.14').ids)).toBe('hello , world !! 3 . 1 4');
    expect(() => tok.decode([1, 2, 99999])).toThrow(ArgumentError);
  });

  it('encodeBatch lays rows out as [B, 77]', () => {
    const b = tok.encodeBatch(['a photo of a cat', '']);
    expect(b.length).toBe(154);
    expect(Array.from(b.slice(77, 79))).toEqual([49406, 49407]);
    expect(Array.from(b.slice(0, 77))).toEqual(Array.from(tok.encode('a photo of a cat').ids));
    expect(() => tok.encodeBatch('x' as unknown as string[])).toThrow(ArgumentError);
  });

  it('fromVocabMerges (Hugging Face files) gives the same ids', async () => {
    const gz = new Uint8Array(readFileSync(FIXTURES + 'bpe_simple_vocab_16e6.txt.gz'));
    const text = await new Response(new Blob([gz.slice()]).stream().pipeThrough(new DecompressionStream('gzip'))).text();
    const merges = text.split('\n').slice(1, 48_895);
    const vocab: Record<string, number> = {};
    const tokens: string[] = [];
    for (let id = 0; id < 512; id++) tokens.push(tok.token(id)!);
    tokens.push(...merges.map((m) => m.replace(' ', '')), '<|startoftext|>', '<|endoftext|>');
    tokens.forEach((t, i) => (vocab[t] = i));
    const hf = CLIPTokenizer.fromVocabMerges(JSON.stringify(vocab), '#version: 0.2\n' + merges.join('\n') + '\n');
    for (const c of fixture.cases) expect(Array.from(hf.encode(c.text, quiet).ids), c.text).toEqual(c.input_ids);
    expect(() => CLIPTokenizer.fromVocabMerges('{', '')).toThrow(ConfigError);
    expect(() => CLIPTokenizer.fromVocabMerges('{"a": 0}', '')).toThrow(ConfigError);
    expect(() => CLIPTokenizer.fromVocabMerges(JSON.stringify(vocab), 'a b c\n')).toThrow(ConfigError);
  });

  it('rejects bad input with typed errors', async () => {
    for (const bad of [undefined, null, 3, {}, ['a'], new String('a')]) {
      expect(() => tok.encode(bad as unknown as string)).toThrow(ArgumentError);
    }
    await expect(CLIPTokenizer.fromBpeGz(new Uint8Array([1, 2, 3]))).rejects.toThrow(ConfigError);
    await expect(CLIPTokenizer.fromBpeGz('x' as unknown as Uint8Array)).rejects.toThrow(ArgumentError);
  });
});

describe('CLIPTokenizer: fuzz', () => {
  /** A random code point from every plane, with surrogates, controls, marks and ASCII weighted up. */
  function randomChar(u: () => number): string {
    const k = u();
    if (k < 0.3) return String.fromCharCode(0x20 + Math.floor(u() * 95));
    if (k < 0.4) return String.fromCharCode(Math.floor(u() * 0x20));
    if (k < 0.5) return String.fromCharCode(0xd800 + Math.floor(u() * 0x800)); // lone surrogate halves
    if (k < 0.6) return String.fromCharCode(0x300 + Math.floor(u() * 0x70)); // combining marks
    if (k < 0.7) return ['&amp;', '&#x', '&lt', ';', '<', '>', 'Ã', '\u0080', 'â€', 'Σ', '\u3000', '\ufb01'][Math.floor(u() * 12)]!;
    if (k < 0.85) return String.fromCodePoint(Math.floor(u() * 0x10000));
    return String.fromCodePoint(Math.floor(u() * 0x110000));
  }

  function check(r: ReturnType<CLIPTokenizer['encode']>): void {
    let ok = r.ids.length === 77 && r.ids[0] === 49406 && r.numTokens >= 2 && r.numTokens <= 77;
    ok &&= r.ids[r.numTokens - 1] === 49407 && (!r.truncated || r.numTokens === 77);
    for (let i = 0; i < 77 && ok; i++) ok = r.ids[i]! >= 0 && r.ids[i]! < 49408 && (i < r.numTokens || r.ids[i] === 49407);
    if (!ok) expect.fail(`invalid result ${JSON.stringify({ ids: Array.from(r.ids), n: r.numTokens, t: r.truncated })}`);
  }

  it('10,000 random strings give a valid 77-id result, each within a time bound', () => {
    const u = rng(2024);
    let slowest = 0;
    for (let n = 0; n < 10_000; n++) {
      const len = u() < 0.9 ? Math.floor(u() * 64) : Math.floor(u() * 2000);
      let s = '';
      for (let i = 0; i < len; i++) s += randomChar(u);
      const t0 = performance.now();
      const r = tok.encode(s, quiet);
      slowest = Math.max(slowest, performance.now() - t0);
      check(r);
    }
    expect(slowest).toBeLessThan(250);
  });

  it('huge strings (up to ~1 MB) finish quickly', () => {
    const u = rng(99);
    const mb = 1 << 20;
    let mixed = '';
    while (mixed.length < mb) mixed += randomChar(u);
    const huge = [
      'a'.repeat(mb),
      '!'.repeat(mb),
      ' '.repeat(mb),
      '\u0301'.repeat(mb),
      'e' + '\u0301\u0316'.repeat(mb / 2),
      '&amp;'.repeat(mb / 5),
      'Ã¶'.repeat(mb / 2),
      '7'.repeat(mb),
      '\ud800'.repeat(mb),
      '🐱'.repeat(mb / 2),
      'a photo of a cat '.repeat(mb / 17),
      mixed,
    ];
    for (const s of huge) {
      const t0 = performance.now();
      const r = tok.encode(s, quiet);
      const ms = performance.now() - t0;
      check(r);
      expect(ms, `${JSON.stringify(s.slice(0, 8))}… took ${ms.toFixed(0)} ms`).toBeLessThan(3000);
    }
  });
});
