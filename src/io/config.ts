/**
 * JSON config files (diffusers/transformers config.json, the CFM config): size-guarded reading and
 * field-by-field validation, so a wrong or truncated config fails with the field's name, not deep in a model.
 */
import { ConfigError, fmtBytes } from '../runtime/errors.js';
import type { ByteSource } from './byte-source.js';

/** Configs are small; anything bigger is the wrong file (e.g. weights passed as a config). */
export const MAX_CONFIG_BYTES = 16 * 2 ** 20;

/** Reads and parses a JSON file; ConfigError when it is too big or not JSON. */
export async function readJson(src: ByteSource, maxBytes = MAX_CONFIG_BYTES, signal?: AbortSignal): Promise<unknown> {
  if (src.size > maxBytes) throw new ConfigError(src.name, `is ${fmtBytes(src.size)}, over the ${fmtBytes(maxBytes)} limit for a config file`);
  const bytes = await src.read(0, src.size, signal);
  return parseJson(src.name, bytes);
}

/** Parses JSON text or UTF-8 bytes; ConfigError naming `file` on failure. */
export function parseJson(file: string, input: string | Uint8Array): unknown {
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input); // drops a BOM
    } catch {
      throw new ConfigError(file, 'is not valid UTF-8');
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, `is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** What a field must hold. `optional-*` also accepts a missing field or null (→ undefined). */
export type FieldKind =
  | 'number' | 'integer' | 'string' | 'boolean' | 'number[]' | 'integer[]' | 'string[]' | 'boolean[]' | 'object'
  | 'optional-number' | 'optional-integer' | 'optional-string' | 'optional-boolean'
  | 'optional-number[]' | 'optional-integer[]' | 'optional-string[]' | 'optional-boolean[]' | 'optional-object';

type Base = 'number' | 'integer' | 'string' | 'boolean' | 'object';

/**
 * Checks `obj` against `spec` and returns a new object with just the spec'd fields (extra fields are
 * ignored: configs carry many). ConfigError naming `file` and the field on any mismatch.
 */
export function expectFields<T>(file: string, obj: unknown, spec: { [K in keyof T]-?: FieldKind }): T {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ConfigError(file, `expected a JSON object, got ${describe(obj)}`);
  }
  const src = obj as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [field, kind] of Object.entries(spec) as [string, FieldKind][]) {
    const optional = kind.startsWith('optional-');
    const k = (optional ? kind.slice('optional-'.length) : kind) as `${Base}` | `${Base}[]`;
    const has = Object.prototype.hasOwnProperty.call(src, field);
    const v = has ? src[field] : undefined;
    if (v === undefined || v === null) {
      if (optional) {
        out[field] = undefined;
        continue;
      }
      throw new ConfigError(file, `field '${field}' is ${has ? 'null' : 'missing'} (expected ${k})`);
    }
    if (k.endsWith('[]')) {
      const el = k.slice(0, -2) as Base;
      if (!Array.isArray(v)) throw new ConfigError(file, `field '${field}' must be ${k}, got ${describe(v)}`);
      v.forEach((x, i) => {
        if (!isKind(x, el)) throw new ConfigError(file, `field '${field}[${i}]' must be ${el}, got ${describe(x)}`);
      });
      out[field] = [...v];
    } else {
      if (!isKind(v, k as Base)) throw new ConfigError(file, `field '${field}' must be ${k}, got ${describe(v)}`);
      out[field] = v;
    }
  }
  return out as T;
}

function isKind(v: unknown, k: Base): boolean {
  switch (k) {
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'integer': return typeof v === 'number' && Number.isSafeInteger(v);
    case 'string': return typeof v === 'string';
    case 'boolean': return typeof v === 'boolean';
    case 'object': return typeof v === 'object' && v !== null && !Array.isArray(v);
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeof v;
}
