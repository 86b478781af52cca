/**
 * Compiles every shaders/*.wgsl on the device (Tint through Dawn) and checks its reflected layout: the
 * cheap guard against WGSL drift, failing with `file:line:col message`.
 *
 * Conventions this test reads from the files:
 * - A snippet (a helper concatenated in front of kernels by their dispatcher) has `// snippet` as its
 *   first line, or no @compute entry point. Alone it is only required to parse: errors about names it
 *   leaves to its consumer ("unresolved …") are accepted, any other error fails.
 * - A kernel that its dispatcher prefixes with snippets names them in a header line
 *   `// prefix: activation.wgsl[, other.wgsl]`, in concatenation order; it is compiled as that concatenation.
 * - A kernel with a subgroup section (src/ops/subgroups.ts) is compiled twice, as its dispatchers use it: the
 *   portable text before the section line alone, and subgroups.wgsl + the whole file where the device has
 *   `subgroups`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { SUBGROUP_SECTION } from '../src/ops/subgroups.js';
import { reflectShader } from '../src/runtime/params.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { testRuntime } from './helpers/device.js';

const SHADERS = fileURLToPath(new URL('../shaders/', import.meta.url));

const onDisk = new Map<string, string>(
  (existsSync(SHADERS) ? readdirSync(SHADERS) : [])
    .filter((f) => f.endsWith('.wgsl'))
    .sort()
    .map((f) => [f, readFileSync(SHADERS + f, 'utf8')]),
);

export function isSnippet(code: string): boolean {
  const first = code.split('\n').find((l) => l.trim() !== '') ?? '';
  return /^\s*\/\/\s*snippet\b/i.test(first) || !/@compute\b/.test(stripComments(code));
}

/** Snippet files named by `// prefix:` header lines, in order. */
export function prefixesOf(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(/^\s*\/\/\s*prefix:\s*(.+)$/gm)) out.push(...m[1]!.split(/[\s,]+/).filter(Boolean));
  return out;
}

function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
}

/** Overrides declared without a default: a pipeline cannot be created without the dispatcher's values. */
function overridesWithoutDefault(code: string): string[] {
  return [...stripComments(code).matchAll(/\boverride\s+(\w+)\s*(?::\s*[\w<>]+\s*)?;/g)].map((m) => m[1]!);
}

interface Part {
  file: string;
  lines: number;
}

/** Maps a line of the concatenated source back to `file:line`. */
function locate(parts: Part[], line: number, col: number): string {
  let l = line;
  for (const p of parts) {
    if (l <= p.lines) return `${p.file}:${l}:${col}`;
    l -= p.lines;
  }
  return `${parts[parts.length - 1]!.file}:${line}:${col}`;
}

/** Every problem of one shader file as `file:line:col message` (or `file: message`); empty when clean. */
export async function checkShader(device: GPUDevice, files: ReadonlyMap<string, string>, file: string): Promise<string[]> {
  const code = files.get(file)!;
  const at = code.indexOf(SUBGROUP_SECTION);
  if (at < 0) return checkSource(device, files, file, code, []);
  const portable = await checkSource(device, files, file, code.slice(0, at), []);
  const sg = device.features.has('subgroups') ? await checkSource(device, files, file, code, ['subgroups.wgsl']) : [];
  return [...portable.map((p) => `(portable) ${p}`), ...sg.map((p) => `(subgroups) ${p}`)];
}

async function checkSource(device: GPUDevice, files: ReadonlyMap<string, string>, file: string, code: string, before: string[]): Promise<string[]> {
  const problems: string[] = [];
  const snippet = isSnippet(code);
  const parts: Part[] = [];
  const sources: string[] = [];
  for (const p of [...before, ...prefixesOf(code)]) {
    const pc = files.get(p);
    if (pc === undefined) problems.push(`${file}: prefix '${p}' is not a file in shaders/`);
    else {
      sources.push(pc);
      parts.push({ file: p, lines: pc.split('\n').length });
    }
  }
  sources.push(code);
  parts.push({ file, lines: code.split('\n').length });
  const full = sources.join('\n');

  // The scope keeps a failed module from being reported as an uncaptured error; getCompilationInfo has it all.
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: file, code: full });
  await device.popErrorScope();
  const info = await module.getCompilationInfo();
  for (const m of info.messages) {
    if (m.type !== 'error') continue;
    // A snippet's free names belong to its consumers; it parsed if Tint got as far as resolving them.
    if (snippet && /\bunresolved\b/.test(m.message)) continue;
    problems.push(`${locate(parts, m.lineNum, m.linePos)} ${m.message}`);
  }
  if (snippet || problems.length) return problems;

  try {
    const r = new WgslReflect(full);
    const groups = [...r.storage, ...r.uniforms].filter((b) => b.group !== 0).map((b) => `${b.name}@group(${b.group})`);
    if (groups.length) problems.push(`${file}: the runtime binds group 0 only; found ${groups.join(', ')}`);
    if (!r.entry.compute.length) problems.push(`${file}: no @compute entry point`);
    const layout = reflectShader(file, full);
    if (layout.params && !layout.params.fields.length) problems.push(`${file}: Params has no fields`);
  } catch (e) {
    problems.push(`${file}: ${(e as Error).message}`);
  }
  if (problems.length) return problems;

  // Pipeline creation checks what a module alone does not: workgroup size and storage against the device limits.
  if (overridesWithoutDefault(full).length === 0) {
    for (const entryPoint of new WgslReflect(full).entry.compute.map((e) => e.name)) {
      device.pushErrorScope('validation');
      device.createComputePipeline({ label: `${file}:${entryPoint}`, layout: 'auto', compute: { module, entryPoint } });
      const err = await device.popErrorScope();
      if (err) problems.push(`${file}: pipeline '${entryPoint}': ${err.message}`);
    }
  }
  return problems;
}

describe('shaders/*.wgsl', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  // Also keeps this suite non-empty in a checkout that has no kernels yet.
  it('shaders/ holds only kebab-case .wgsl files', () => {
    const names = existsSync(SHADERS) ? readdirSync(SHADERS) : [];
    expect(names.filter((f) => !/^[a-z0-9]+(-[a-z0-9]+)*\.wgsl$/.test(f))).toEqual([]);
  });

  it.each([...onDisk.keys()])('%s compiles, binds 0..n-1 in group 0, Params of 4-byte scalars', async (file) => {
    const problems = await checkShader(rt.device, onDisk, file);
    expect(problems, problems.join('\n')).toEqual([]);
  });
});

// The checker itself must be able to fail: each control below is a shader it has to reject.
describe('shader checker controls', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await testRuntime();
  });

  const KERNEL = (body: string, head = '') => `${head}
struct Params { N: u32, alpha: f32, }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= params.N) { return; }
  ${body}
}
`;
  const check = (files: Record<string, string>, file: string) => checkShader(rt.device, new Map(Object.entries(files)), file);

  it('accepts a clean kernel', async () => {
    expect(await check({ 'ok.wgsl': KERNEL('y[g.x] = params.alpha * x[g.x];') }, 'ok.wgsl')).toEqual([]);
  });

  it('reports a type error as file:line:col', async () => {
    const problems = await check({ 'bad.wgsl': KERNEL('y[g.x] = params.N * x[g.x];') }, 'bad.wgsl');
    expect(problems.length).toBe(1);
    expect(problems[0]).toMatch(/^bad\.wgsl:9:\d+ /);
  });

  it('maps errors in a prefixed kernel back to its own lines', async () => {
    const files = {
      'act.wgsl': '// snippet\nfn act(v: f32) -> f32 { return v / (1.0 + exp(-v)); }\n',
      'k.wgsl': KERNEL('y[g.x] = act(x[g.x]) + undefinedName;', '// prefix: act.wgsl'),
    };
    expect(await check(files, 'act.wgsl')).toEqual([]);
    const problems = await check(files, 'k.wgsl');
    expect(problems.length).toBe(1);
    expect(problems[0]).toMatch(/^k\.wgsl:9:\d+ .*undefinedName/);
    expect(await check({ ...files, 'k.wgsl': KERNEL('y[g.x] = act(x[g.x]);', '// prefix: act.wgsl') }, 'k.wgsl')).toEqual([]);
    expect(await check({ 'k.wgsl': files['k.wgsl'] }, 'k.wgsl')).toContain(`k.wgsl: prefix 'act.wgsl' is not a file in shaders/`);
  });

  it('lets a snippet leave names to its consumer but not break the syntax', async () => {
    expect(await check({ 's.wgsl': '// snippet\nfn f(i: u32) -> f32 { return x[i] * params.alpha; }\n' }, 's.wgsl')).toEqual([]);
    const problems = await check({ 's.wgsl': '// snippet\nfn f(v: f32) -> f32 { return v * ; }\n' }, 's.wgsl');
    expect(problems.length).toBe(1);
    expect(problems[0]).toMatch(/^s\.wgsl:2:\d+ /);
  });

  it('rejects binding gaps, other bind groups and non-scalar Params fields', async () => {
    const gap = KERNEL('y[g.x] = x[g.x];').replace('@binding(2) var<uniform>', '@binding(3) var<uniform>');
    expect((await check({ 'gap.wgsl': gap }, 'gap.wgsl')).join()).toMatch(/0\.\.n-1/);
    const group = KERNEL('y[g.x] = x[g.x];').replace('@group(0) @binding(1)', '@group(1) @binding(1)');
    expect((await check({ 'grp.wgsl': group }, 'grp.wgsl')).join()).toMatch(/group 0 only/);
    const vec = KERNEL('y[g.x] = x[g.x] * params.alpha.x;').replace('alpha: f32', 'alpha: vec2f');
    expect((await check({ 'vec.wgsl': vec }, 'vec.wgsl')).join()).toMatch(/only u32\/i32\/f32/);
  });

  it('rejects a kernel over the device workgroup limits at pipeline creation', async () => {
    const big = KERNEL('y[g.x] = x[g.x];').replace('@workgroup_size(64)', '@workgroup_size(4096)');
    expect((await check({ 'big.wgsl': big }, 'big.wgsl')).join()).toMatch(/big\.wgsl: pipeline 'main'/);
  });
});
