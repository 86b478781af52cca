import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseFixture, type FixtureFile, type FixtureTensor } from '../shared/fixture-check.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

const cache = new Map<string, FixtureFile>();

/** Reads every tensor of a fixture safetensors file (cached). */
export function loadFixture(name: string): FixtureFile {
  let hit = cache.get(name);
  if (!hit) {
    const bytes = readFileSync(FIXTURES + name);
    cache.set(name, (hit = parseFixture(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))));
  }
  return hit;
}

/** The FixtureLoader for shared checks in Node. */
export const nodeLoader = async (name: string): Promise<FixtureFile> => loadFixture(name);

/** One tensor of a fixture file; throws if absent. */
export function fx(file: string, key: string): FixtureTensor {
  const t = loadFixture(file).get(key);
  if (!t) throw new Error(`fixture ${file} has no tensor '${key}'`);
  return t;
}

/** Suggested tolerance from tolerances.json: tolerance(group, output). */
export function tolerance(group: string, output: string): { atol: number; rtol: number } {
  const all = JSON.parse(readFileSync(FIXTURES + 'tolerances.json', 'utf8')) as Record<string, Record<string, { atol: number; rtol: number }>>;
  const t = all[group]?.[output];
  if (!t) throw new Error(`tolerances.json has no ${group}/${output}`);
  return { atol: t.atol, rtol: t.rtol };
}
