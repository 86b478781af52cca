/**
 * CLIP byte-level BPE tokenizer with SD-1.5 conventions: `[49406] + BPE(clean(text)) + [49407]`, truncated to 77
 * (last id forced to 49407) and padded with 49407. Reference: OpenAI CLIP `simple_tokenizer.py` (also open_clip
 * `tokenizer.py`, transformers `CLIPTokenizer`); the rules are restated in docs REFERENCE.md §8.1.
 *
 * Text cleaning follows the reference order: an ftfy-like fix, `html.unescape` twice, strip, whitespace runs → one
 * space, lower-case. The ftfy part implements the fixes that change CLIP prompts in practice (see `ftfyLike`); rare
 * ftfy heuristics (e.g. restoring a 0xA0 byte turned into a space, other legacy code pages than windows-1252) are not.
 */
import { ArgumentError, ConfigError } from '../runtime/errors.js';

export const CLIP_CONTEXT_LENGTH = 77;
export const CLIP_BOS_ID = 49406;
export const CLIP_EOS_ID = 49407;

/** Merges used by CLIP: 49152 − 256 − 2 lines after the header of bpe_simple_vocab_16e6.txt. */
const CLIP_MERGES = 48_894;
/** Text tokens that survive truncation (two slots hold the start and end ids). */
const MAX_TEXT_TOKENS = CLIP_CONTEXT_LENGTH - 2;
/** Raw text is cleaned in pieces of about this many chars, cut at whitespace (see `textTokens`). */
const CHUNK_CHARS = 8192;
/** Fixed-point passes of the ftfy-like fix; ftfy loops until nothing changes, nested escapes rarely need more. */
const MAX_FIX_PASSES = 8;
const BPE_CACHE_MAX = 20_000;
/**
 * A run of more combining marks than this (each ≥ 2 UTF-8 bytes, so ≥ 128 tokens) cannot fit the context, and
 * NFC reorders such runs in quadratic time; only this many of the run are processed.
 */
const MAX_MARK_RUN = 2048;
const LONG_MARK_RUN = new RegExp(`\\p{M}{${MAX_MARK_RUN + 1}}`, 'u');

export interface EncodeOptions {
  /** Receives the truncation warning; default `console.warn`. */
  onWarning?: (msg: string) => void;
}

export interface Encoded {
  /** [77] token ids, padded with 49407. */
  ids: Int32Array;
  /** Ids before padding, including the start and end ids (≤ 77). */
  numTokens: number;
  /** The text did not fit and its tail was dropped. */
  truncated: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Byte ↔ unicode table (GPT-2 `bytes_to_unicode`): printable Latin-1 bytes stand for themselves, the 68 others map
// to U+0100 + n in byte order. Dict order (printable first) is also the order of the first 256 vocabulary ids.

function bytesToUnicode(): { order: number[]; char: string[] } {
  const order: number[] = [];
  const isPrintable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  for (let b = 0; b < 256; b++) if (isPrintable(b)) order.push(b);
  const char: string[] = new Array(256);
  for (const b of order) char[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!isPrintable(b)) {
      order.push(b);
      char[b] = String.fromCharCode(256 + n++);
    }
  }
  return { order, char };
}
const BYTE_TABLE = bytesToUnicode();

// ---------------------------------------------------------------------------------------------------------------
// Text cleaning

/** Python's `str.isspace()` set: what the reference's `\s+` collapse and `strip()` remove. */
const PY_SPACE = '\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACE_RUNS = new RegExp(`[${PY_SPACE}]+`, 'g');
const PY_SPACE_EDGES = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/**
 * The reference pre-split. `[^\s…]` is spelled with Python's whitespace set because JavaScript's `\s` also
 * matches U+FEFF, which an escaped `&#xfeff;` can put back into the text.
 */
const PRE_SPLIT = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${PY_SPACE}\\p{L}\\p{N}]+`,
  'giu',
);

const LONE_SURROGATE = /\p{Cs}/gu;
const TERMINAL_ESCAPE = /\x1b\[[0-9;]*[a-zA-Z]/g;
/** ftfy's "control characters not suitable for text" (tab, LF, FF, CR and bidi marks stay). */
const CONTROL_CHARS = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/gu;
const LIGATURES = /[\u0132\u0133\ufb00-\ufb06]/g;
/** Halfwidth/fullwidth forms and U+3000: replaced by their NFKC form, as ftfy's width fix does. */
const WIDTH_FORMS = /[\u3000\uff01-\uffef]/g;
const SINGLE_QUOTES = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTES = /[\u201c-\u201f]/g;
const LINE_BREAKS = /\r\n|[\r\u2028\u2029\x85]/g;

/** windows-1252 bytes 0x80–0x9F; the five undefined ones read as the Latin-1 control (ftfy's "sloppy" codec). */
const CP1252_HIGH = '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';
const CHAR_TO_BYTE = new Map<string, number>();
for (let b = 0x80; b < 0x100; b++) CHAR_TO_BYTE.set(String.fromCharCode(b), b);
for (let i = 0; i < 32; i++) CHAR_TO_BYTE.set(CP1252_HIGH[i]!, 0x80 + i);
const CONT = `[\\x80-\\xbf${CP1252_HIGH.replace(/[\x80-\x9f]/g, '')}]`;
/** A UTF-8 sequence whose bytes were read as windows-1252 / Latin-1 ("schÃ¶n" for "schön"). */
const MOJIBAKE = new RegExp(`[\\xc2-\\xdf]${CONT}|[\\xe0-\\xef]${CONT}{2}|[\\xf0-\\xf4]${CONT}{3}`, 'g');
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });

function fixMojibake(s: string): string {
  return s.replace(MOJIBAKE, (m) => {
    const bytes = new Uint8Array(m.length);
    for (let i = 0; i < m.length; i++) bytes[i] = CHAR_TO_BYTE.get(m[i]!)!;
    try {
      return UTF8_STRICT.decode(bytes);
    } catch {
      return m;
    }
  });
}

// HTML named references: the HTML 4 set plus the legacy names that need no ';' (the full HTML5 table has 2,231
// names, almost none of which occur in prompts; unknown names are left as text, as Python leaves them).
const ENTITY_TABLE =
  'AElig:c6 AMP:26 Aacute:c1 Acirc:c2 Agrave:c0 Alpha:391 Aring:c5 Atilde:c3 Auml:c4 Beta:392 COPY:a9 Ccedil:c7 ' +
  'Chi:3a7 Dagger:2021 Delta:394 ETH:d0 Eacute:c9 Ecirc:ca Egrave:c8 Epsilon:395 Eta:397 Euml:cb GT:3e Gamma:393 ' +
  'Iacute:cd Icirc:ce Igrave:cc Iota:399 Iuml:cf Kappa:39a LT:3c Lambda:39b Mu:39c Ntilde:d1 Nu:39d OElig:152 ' +
  'Oacute:d3 Ocirc:d4 Ograve:d2 Omega:3a9 Omicron:39f Oslash:d8 Otilde:d5 Ouml:d6 Phi:3a6 Pi:3a0 Prime:2033 ' +
  'Psi:3a8 QUOT:22 REG:ae Rho:3a1 Scaron:160 Sigma:3a3 THORN:de Tau:3a4 Theta:398 Uacute:da Ucirc:db Ugrave:d9 ' +
  'Upsilon:3a5 Uuml:dc Xi:39e Yacute:dd Yuml:178 Zeta:396 aacute:e1 acirc:e2 acute:b4 aelig:e6 agrave:e0 ' +
  'alefsym:2135 alpha:3b1 amp:26 and:2227 ang:2220 apos:27 aring:e5 asymp:2248 atilde:e3 auml:e4 bdquo:201e ' +
  'beta:3b2 brvbar:a6 bull:2022 cap:2229 ccedil:e7 cedil:b8 cent:a2 chi:3c7 circ:2c6 clubs:2663 cong:2245 copy:a9 ' +
  'crarr:21b5 cup:222a curren:a4 dArr:21d3 dagger:2020 darr:2193 deg:b0 delta:3b4 diams:2666 divide:f7 eacute:e9 ' +
  'ecirc:ea egrave:e8 empty:2205 emsp:2003 ensp:2002 epsilon:3b5 equiv:2261 eta:3b7 eth:f0 euml:eb euro:20ac ' +
  'exist:2203 fnof:192 forall:2200 frac12:bd frac14:bc frac34:be frasl:2044 gamma:3b3 ge:2265 gt:3e hArr:21d4 ' +
  'harr:2194 hearts:2665 hellip:2026 iacute:ed icirc:ee iexcl:a1 igrave:ec image:2111 infin:221e int:222b ' +
  'iota:3b9 iquest:bf isin:2208 iuml:ef kappa:3ba lArr:21d0 lambda:3bb lang:27e8 laquo:ab larr:2190 lceil:2308 ' +
  'ldquo:201c le:2264 lfloor:230a lowast:2217 loz:25ca lrm:200e lsaquo:2039 lsquo:2018 lt:3c macr:af mdash:2014 ' +
  'micro:b5 middot:b7 minus:2212 mu:3bc nabla:2207 nbsp:a0 ndash:2013 ne:2260 ni:220b not:ac notin:2209 nsub:2284 ' +
  'ntilde:f1 nu:3bd oacute:f3 ocirc:f4 oelig:153 ograve:f2 oline:203e omega:3c9 omicron:3bf oplus:2295 or:2228 ' +
  'ordf:aa ordm:ba oslash:f8 otilde:f5 otimes:2297 ouml:f6 para:b6 part:2202 permil:2030 perp:22a5 phi:3c6 pi:3c0 ' +
  'piv:3d6 plusmn:b1 pound:a3 prime:2032 prod:220f prop:221d psi:3c8 quot:22 rArr:21d2 radic:221a rang:27e9 ' +
  'raquo:bb rarr:2192 rceil:2309 rdquo:201d real:211c reg:ae rfloor:230b rho:3c1 rlm:200f rsaquo:203a rsquo:2019 ' +
  'sbquo:201a scaron:161 sdot:22c5 sect:a7 shy:ad sigma:3c3 sigmaf:3c2 sim:223c spades:2660 sub:2282 sube:2286 ' +
  'sum:2211 sup:2283 sup1:b9 sup2:b2 sup3:b3 supe:2287 szlig:df tau:3c4 there4:2234 theta:3b8 thetasym:3d1 ' +
  'thinsp:2009 thorn:fe tilde:2dc times:d7 trade:2122 uArr:21d1 uacute:fa uarr:2191 ucirc:fb ugrave:f9 uml:a8 ' +
  'upsih:3d2 upsilon:3c5 uuml:fc weierp:2118 xi:3be yacute:fd yen:a5 yuml:ff zeta:3b6 zwj:200d zwnj:200c ';
const LEGACY_ENTITIES =
  'AElig AMP Aacute Acirc Agrave Aring Atilde Auml COPY Ccedil ETH Eacute Ecirc Egrave Euml GT Iacute Icirc ' +
  'Igrave Iuml LT Ntilde Oacute Ocirc Ograve Oslash Otilde Ouml QUOT REG THORN Uacute Ucirc Ugrave Uuml Yacute ' +
  'aacute acirc acute aelig agrave amp aring atilde auml brvbar ccedil cedil cent copy curren deg divide eacute ' +
  'ecirc egrave eth euml frac12 frac14 frac34 gt iacute icirc iexcl igrave iquest iuml laquo lt macr micro middot ' +
  'nbsp not ntilde oacute ocirc ograve ordf ordm oslash otilde ouml para plusmn pound quot raquo reg sect shy ' +
  'sup1 sup2 sup3 szlig thorn times uacute ucirc ugrave uml uuml yacute yen yuml ';
const ENTITIES = new Map<string, string>();
for (const e of ENTITY_TABLE.trim().split(' ')) {
  const [name, hex] = e.split(':') as [string, string];
  ENTITIES.set(name + ';', String.fromCodePoint(parseInt(hex, 16)));
}
for (const name of LEGACY_ENTITIES.trim().split(' ')) ENTITIES.set(name, ENTITIES.get(name + ';')!);

/** Python `html.unescape`'s reference pattern: numeric refs, or up to 32 name chars, `;` optional. */
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;
/** ftfy only decodes complete references (with `;`). */
const CHARREF_STRICT = /&(#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]{0,31};)/g;

function numericCharref(ref: string): string {
  const hex = ref[1] === 'x' || ref[1] === 'X';
  const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '').replace(/^0+(?=.)/, '');
  // Longer digit strings are above U+10FFFF whatever they say; parse only what can be a code point.
  const num = digits.length > 8 ? Infinity : parseInt(digits, hex ? 16 : 10);
  if (num === 0) return '\ufffd';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return CP1252_HIGH[num - 0x80]!;
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  const invalid =
    (num >= 0x1 && num <= 0x8) || num === 0xb || (num >= 0xe && num <= 0x1f) || num === 0x7f ||
    (num >= 0xfdd0 && num <= 0xfdef) || (num & 0xfffe) === 0xfffe;
  return invalid ? '' : String.fromCodePoint(num);
}

/** Python's `html.unescape`: exact names first, then the longest legacy prefix (`&ampx` → `&x`). */
function htmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF, (m, ref: string) => {
    if (ref[0] === '#') return numericCharref(ref);
    const exact = ENTITIES.get(ref);
    if (exact !== undefined) return exact;
    const chars = Array.from(ref);
    for (let x = chars.length - 1; x > 1; x--) {
      const hit = ENTITIES.get(chars.slice(0, x).join(''));
      if (hit !== undefined) return hit + chars.slice(x).join('');
    }
    return m;
  });
}

function ftfyUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF_STRICT, (m, ref: string) =>
    ref[0] === '#' ? numericCharref(ref) : ENTITIES.get(ref) ?? m,
  );
}

/**
 * The subset of `ftfy.fix_text` that matters for prompts, in ftfy's order and repeated until nothing changes:
 * terminal escapes, windows-1252 mojibake, HTML entities (off when the text has both `<` and `>`), Latin
 * ligatures, character width, curly quotes, line breaks, surrogates, control characters, NFC.
 */
function ftfyLike(s: string, entities: boolean): string {
  for (let pass = 0; pass < MAX_FIX_PASSES; pass++) {
    const before = s;
    s = s.replace(TERMINAL_ESCAPE, '');
    s = fixMojibake(s);
    if (entities) s = ftfyUnescape(s);
    s = s.replace(LIGATURES, (c) => c.normalize('NFKC'));
    s = s.replace(WIDTH_FORMS, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
    s = s.replace(SINGLE_QUOTES, "'").replace(DOUBLE_QUOTES, '"');
    s = s.replace(LINE_BREAKS, '\n');
    s = s.replace(LONE_SURROGATE, '\ufffd');
    s = s.replace(CONTROL_CHARS, '');
    s = s.normalize('NFC');
    if (s === before) break;
  }
  return s;
}

/**
 * The reference's `basic_clean` + `whitespace_clean` + `lower()`. Python lower-cases Σ to σ everywhere while
 * JavaScript applies the final-sigma rule, so Σ is mapped first.
 */
function cleanText(s: string, entities: boolean): string {
  s = ftfyLike(s.replace(LONE_SURROGATE, '\ufffd'), entities);
  s = htmlUnescape(htmlUnescape(s));
  s = s.replace(PY_SPACE_RUNS, ' ').replace(PY_SPACE_EDGES, '');
  return s.replace(/\u03a3/g, '\u03c3').toLowerCase();
}

/** Chars no cleaning step looks across (no entity, mojibake sequence or NFC composition contains them). */
function isCutChar(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c;
}

/** Start of the first line holding both `<` and `>`: from there on ftfy leaves entities alone. */
function htmlLineStart(text: string): number {
  if (!text.includes('<') || !text.includes('>')) return text.length;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const lt = text.indexOf('<', start);
    const gt = text.indexOf('>', start);
    if (lt >= 0 && lt < end && gt >= 0 && gt < end) return start;
    start = end + 1;
  }
  return text.length;
}

// ---------------------------------------------------------------------------------------------------------------

/** A min-heap of non-negative numbers (BPE candidates packed as rank·2²² + position). */
class NumberHeap {
  private a: number[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): number {
    return this.a[0]!;
  }
  push(v: number): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= v) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = v;
  }
  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const c = l + 1 < a.length && a[l + 1]! < a[l]! ? l + 1 : l;
        if (a[c]! >= last) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

const POS_BITS = 2 ** 22;
const PAIR_KEY = 2 ** 20;

interface VocabTables {
  /** Id of each byte's symbol, and of the same symbol with `</w>`. */
  byteId: Int32Array;
  byteEndId: Int32Array;
  /** (left id · 2²⁰ + right id) → merge rank. */
  pairRank: Map<number, number>;
  /** Merge rank → id of the merged symbol. */
  mergedId: Int32Array;
  /** Id → vocabulary string (`</w>` marks a word end). */
  tokens: string[];
  bos: number;
  eos: number;
}

/** CLIP BPE tokenizer (SD-1.5: context 77, pad with `<|endoftext|>`). */
export class CLIPTokenizer {
  private readonly cache = new Map<string, Int32Array>();
  /** Words longer than this (in bytes) split into more tokens than can survive truncation. */
  private readonly longWordBytes: number;

  private constructor(private readonly v: VocabTables) {
    let maxBytes = 1;
    for (const t of v.tokens) maxBytes = Math.max(maxBytes, t.replace(/<\/w>$/, '').length);
    this.longWordBytes = (MAX_TEXT_TOKENS + 1) * maxBytes;
  }

  /** From the gzip'd `bpe_simple_vocab_16e6.txt` (OpenAI CLIP / open_clip). */
  static async fromBpeGz(bytes: Uint8Array): Promise<CLIPTokenizer> {
    const where = 'bpe_simple_vocab_16e6.txt.gz';
    if (!(bytes instanceof Uint8Array)) throw new ArgumentError('CLIPTokenizer.fromBpeGz', 'expected a Uint8Array');
    if (typeof DecompressionStream === 'undefined') throw new ConfigError(where, 'DecompressionStream is not available (Node ≥ 18 or a current browser is needed)');
    let text: string;
    try {
      const stream = new Blob([bytes.slice()]).stream().pipeThrough(new DecompressionStream('gzip'));
      text = await new Response(stream).text();
    } catch (e) {
      throw new ConfigError(where, `not a valid gzip file (${(e as Error).message})`);
    }
    const lines = text.split('\n');
    if (lines.length < CLIP_MERGES + 1) throw new ConfigError(where, `has ${lines.length - 1} merge lines, CLIP needs ${CLIP_MERGES}`);
    const tokens: string[] = [];
    for (const b of BYTE_TABLE.order) tokens.push(BYTE_TABLE.char[b]!);
    for (const b of BYTE_TABLE.order) tokens.push(BYTE_TABLE.char[b]! + '</w>');
    const merges: [string, string][] = [];
    for (let i = 1; i <= CLIP_MERGES; i++) {
      const parts = lines[i]!.split(' ');
      if (parts.length !== 2 || !parts[0] || !parts[1]) throw new ConfigError(where, `line ${i + 1} is not a merge 'a b': ${JSON.stringify(lines[i]!.slice(0, 40))}`);
      merges.push(parts as [string, string]);
      tokens.push(parts[0] + parts[1]);
    }
    tokens.push('<|startoftext|>', '<|endoftext|>');
    const vocab = new Map<string, number>();
    tokens.forEach((t, i) => vocab.set(t, i));
    return new CLIPTokenizer(buildTables(vocab, merges, tokens.length, where));
  }

  /** From Hugging Face `vocab.json` (token → id) and `merges.txt` (`#version` header, then `a b` per line). */
  static fromVocabMerges(vocabJson: string, mergesTxt: string): CLIPTokenizer {
    if (typeof vocabJson !== 'string' || typeof mergesTxt !== 'string') throw new ArgumentError('CLIPTokenizer.fromVocabMerges', 'expected the two file contents as strings');
    let obj: unknown;
    try {
      obj = JSON.parse(vocabJson);
    } catch (e) {
      throw new ConfigError('vocab.json', `invalid JSON (${(e as Error).message})`);
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError('vocab.json', 'expected an object {token: id}');
    const vocab = new Map<string, number>();
    let size = 0;
    for (const [k, id] of Object.entries(obj as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= PAIR_KEY) throw new ConfigError('vocab.json', `id of ${JSON.stringify(k)} is not an integer in [0, ${PAIR_KEY})`);
      vocab.set(k, id);
      size = Math.max(size, id + 1);
    }
    const merges: [string, string][] = [];
    const lines = mergesTxt.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.replace(/\r$/, '');
      if ((i === 0 && line.startsWith('#version')) || line === '') continue;
      const parts = line.split(' ');
      if (parts.length !== 2 || !parts[0] || !parts[1]) throw new ConfigError('merges.txt', `line ${i + 1} is not a merge 'a b': ${JSON.stringify(line.slice(0, 40))}`);
      merges.push(parts as [string, string]);
    }
    return new CLIPTokenizer(buildTables(vocab, merges, size, 'vocab.json'));
  }

  get bosId(): number {
    return this.v.bos;
  }
  get eosId(): number {
    return this.v.eos;
  }

  /** Vocabulary string of an id (`</w>` marks a word end), or undefined. */
  token(id: number): string | undefined {
    return Number.isInteger(id) ? this.v.tokens[id] : undefined;
  }

  /** `[bos] + BPE(text) + [eos]`, truncated to 77 (last id = eos) and padded with eos. */
  encode(text: string, o: EncodeOptions = {}): Encoded {
    if (typeof text !== 'string') throw new ArgumentError('CLIPTokenizer.encode', `text must be a string, got ${text === null ? 'null' : typeof text}`);
    const body = this.textTokens(text, MAX_TEXT_TOKENS + 1);
    const truncated = body.length > MAX_TEXT_TOKENS;
    const n = Math.min(body.length, MAX_TEXT_TOKENS);
    const ids = new Int32Array(CLIP_CONTEXT_LENGTH).fill(this.v.eos);
    ids[0] = this.v.bos;
    for (let i = 0; i < n; i++) ids[i + 1] = body[i]!;
    if (truncated) {
      const warn = o.onWarning ?? ((m: string) => console.warn(m));
      warn(`CLIPTokenizer: the prompt is longer than CLIP's ${CLIP_CONTEXT_LENGTH}-token context and was truncated to its first ${MAX_TEXT_TOKENS} tokens (text starting ${JSON.stringify(text.slice(0, 40))})`);
    }
    return { ids, numTokens: n + 2, truncated };
  }

  /** [B·77] ids for a batch of prompts (row b = `encode(texts[b]).ids`). */
  encodeBatch(texts: string[], o: EncodeOptions = {}): Int32Array {
    if (!Array.isArray(texts)) throw new ArgumentError('CLIPTokenizer.encodeBatch', 'texts must be an array of strings');
    const out = new Int32Array(texts.length * CLIP_CONTEXT_LENGTH);
    texts.forEach((t, b) => out.set(this.encode(t, o).ids, b * CLIP_CONTEXT_LENGTH));
    return out;
  }

  /** Text of the ids, skipping start/end/pad ids; `</w>` becomes a space. Invalid UTF-8 decodes to U+FFFD. */
  decode(ids: ArrayLike<number>): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw new ArgumentError('CLIPTokenizer.decode', 'ids must be an array of token ids');
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id === this.v.bos || id === this.v.eos) continue;
      const t = Number.isInteger(id) ? this.v.tokens[id] : undefined;
      if (t === undefined) throw new ArgumentError('CLIPTokenizer.decode', `id ${id} at position ${i} is not in the vocabulary`);
      s += t;
    }
    const chars = s.replace(/<\/w>/g, ' ');
    const bytes: number[] = [];
    for (const c of chars) bytes.push(c === ' ' ? 0x20 : (BYTE_DECODER.get(c) ?? 0x3f));
    return new TextDecoder().decode(new Uint8Array(bytes)).trim();
  }

  /**
   * The first `limit` text tokens (fewer if the text is shorter). Work is bounded by what can survive
   * truncation without changing any id: the raw text is cleaned in chunks cut at ASCII whitespace, which no
   * cleaning step (entities, mojibake, NFC, line handling) and no pre-token crosses, so each chunk's tokens
   * are exactly the next tokens of the whole text, and processing stops once `limit` tokens are known.
   */
  private textTokens(text: string, limit: number): number[] {
    const out: number[] = [];
    const htmlFrom = htmlLineStart(text);
    let pos = 0;
    while (pos < text.length && out.length < limit) {
      let end = Math.min(text.length, pos + CHUNK_CHARS);
      while (end < text.length && !isCutChar(text.charCodeAt(end))) end++;
      // ftfy's entity switch flips at a line start (after a '\n', itself a cut char).
      if (pos < htmlFrom && htmlFrom < end) end = htmlFrom;
      let raw = text.slice(pos, end);
      const run = LONG_MARK_RUN.exec(raw);
      if (run) {
        raw = raw.slice(0, run.index + MAX_MARK_RUN);
        end = text.length; // the tokens of the kept part already exceed the limit
      }
      const clean = cleanText(raw, pos < htmlFrom);
      for (const m of clean.matchAll(PRE_SPLIT)) {
        const word = m[0];
        if (word === '<|startoftext|>') out.push(this.v.bos);
        else if (word === '<|endoftext|>') out.push(this.v.eos);
        else for (const id of this.bpe(word)) out.push(id);
        if (out.length >= limit) break;
      }
      pos = end;
    }
    return out.slice(0, limit);
  }

  /** BPE of one pre-token, cached. */
  private bpe(word: string): Int32Array {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const ids = this.bpeBytes(new TextEncoder().encode(word));
    if (word.length <= 256) {
      if (this.cache.size >= BPE_CACHE_MAX) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  /**
   * Byte-level BPE: the word is its byte symbols with `</w>` on the last; repeatedly merge every occurrence (left to
   * right) of the lowest-ranked adjacent pair. A word longer than `longWordBytes` yields more tokens than can be
   * kept, so only its head is merged (with no `</w>`, as the word goes on); this cannot touch a text that fits.
   * @internal exposed to tests through `bpeForTest`.
   */
  private bpeBytes(bytes: Uint8Array, clampLong = true): Int32Array {
    const { byteId, byteEndId, pairRank, mergedId } = this.v;
    const long = clampLong && bytes.length > this.longWordBytes;
    const n = long ? 2 * this.longWordBytes : bytes.length;
    const sym = new Int32Array(n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      sym[i] = i === n - 1 && !long ? byteEndId[bytes[i]!]! : byteId[bytes[i]!]!;
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new NumberHeap();
    const pushPair = (i: number): void => {
      const j = next[i]!;
      if (j < 0) return;
      const r = pairRank.get(sym[i]! * PAIR_KEY + sym[j]!);
      if (r !== undefined) heap.push(r * POS_BITS + i);
    };
    for (let i = 0; i + 1 < n; i++) pushPair(i);
    const touched: number[] = [];
    while (heap.size > 0) {
      // All current occurrences of the best pair merge before any pair they create is considered.
      const rank = Math.floor(heap.peek() / POS_BITS);
      touched.length = 0;
      while (heap.size > 0 && Math.floor(heap.peek() / POS_BITS) === rank) {
        const i = heap.pop() - rank * POS_BITS;
        const j = next[i]!;
        if (!alive[i] || j < 0 || pairRank.get(sym[i]! * PAIR_KEY + sym[j]!) !== rank) continue;
        sym[i] = mergedId[rank]!;
        alive[j] = 0;
        next[i] = next[j]!;
        if (next[j]! >= 0) prev[next[j]!] = i;
        touched.push(i);
      }
      for (const i of touched) {
        if (!alive[i]) continue;
        if (prev[i]! >= 0) pushPair(prev[i]!);
        pushPair(i);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0 && i < n; i = next[i]!) out.push(sym[i]!);
    return Int32Array.from(out);
  }

  /** @internal BPE of a UTF-8 word for tests, optionally without the long-word clamp. */
  bpeForTest(word: string, clampLong = true): Int32Array {
    return this.bpeBytes(new TextEncoder().encode(word), clampLong);
  }
}

const BYTE_DECODER = new Map<string, number>();
for (let b = 0; b < 256; b++) BYTE_DECODER.set(BYTE_TABLE.char[b]!, b);

function buildTables(vocab: Map<string, number>, merges: [string, string][], size: number, where: string): VocabTables {
  const idOf = (t: string): number => {
    const id = vocab.get(t);
    if (id === undefined) throw new ConfigError(where, `vocabulary has no entry ${JSON.stringify(t)}`);
    return id;
  };
  const byteId = new Int32Array(256);
  const byteEndId = new Int32Array(256);
  for (let b = 0; b < 256; b++) {
    byteId[b] = idOf(BYTE_TABLE.char[b]!);
    byteEndId[b] = idOf(BYTE_TABLE.char[b]! + '</w>');
  }
  const pairRank = new Map<number, number>();
  const mergedId = new Int32Array(merges.length);
  merges.forEach(([a, b], r) => {
    // A repeated pair takes its last rank, as the reference's dict(zip(merges, ranks)) does.
    pairRank.set(idOf(a) * PAIR_KEY + idOf(b), r);
    mergedId[r] = idOf(a + b);
  });
  const tokens: string[] = new Array(size);
  for (const [t, id] of vocab) tokens[id] = t;
  return { byteId, byteEndId, pairRank, mergedId, tokens, bos: idOf('<|startoftext|>'), eos: idOf('<|endoftext|>') };
}
