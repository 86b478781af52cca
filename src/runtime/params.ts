import { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';
import { ShaderCompileError } from './errors.js';

/** One field of a shader's `struct Params`, as reflected from the WGSL source. */
export interface ParamField {
  name: string;
  offset: number;
  type: 'u32' | 'i32' | 'f32';
}

/** What a kernel needs from its WGSL source: binding slots, the Params layout, declared overrides. */
export interface ShaderLayout {
  /** Storage bindings of group 0 in binding order, with their access mode. */
  storage: { name: string; binding: number; readOnly: boolean }[];
  /** The uniform `Params` binding, if the shader has one. */
  params: { binding: number; size: number; fields: ParamField[] } | null;
  /** Names of the module's `override` constants. */
  overrides: Set<string>;
  /** Compute entry points. */
  entryPoints: string[];
}

/** Reads bindings and the `Params` struct layout from WGSL, so no byte offset is ever written by hand. */
export function reflectShader(label: string, code: string): ShaderLayout {
  let r: WgslReflect;
  try {
    r = new WgslReflect(code);
  } catch (e) {
    throw new ShaderCompileError(label, `WGSL reflection failed: ${(e as Error).message}`);
  }
  const storage = r.storage
    .filter((s) => s.group === 0)
    .map((s) => ({ name: s.name, binding: s.binding, readOnly: s.access !== 'read_write' }))
    .sort((a, b) => a.binding - b.binding);
  let params: ShaderLayout['params'] = null;
  const uniforms = r.uniforms.filter((u) => u.group === 0);
  if (uniforms.length > 1) throw new ShaderCompileError(label, 'at most one uniform (Params) binding is supported');
  if (uniforms.length === 1) {
    const u = uniforms[0]!;
    const st = r.structs.find((s) => s.name === u.type.name);
    if (!st) throw new ShaderCompileError(label, `uniform '${u.name}' must be a struct`);
    const fields: ParamField[] = st.members.map((m) => {
      const t = m.type.name;
      if (t !== 'u32' && t !== 'i32' && t !== 'f32') {
        throw new ShaderCompileError(label, `Params field '${m.name}' has type ${t}; only u32/i32/f32 are allowed`);
      }
      return { name: m.name, offset: m.offset, type: t };
    });
    params = { binding: u.binding, size: Math.max(16, Math.ceil(st.size / 16) * 16), fields };
  }
  const all = [...storage.map((s) => s.binding), ...(params ? [params.binding] : [])].sort((a, b) => a - b);
  all.forEach((b, i) => {
    if (b !== i) throw new ShaderCompileError(label, `bindings must be numbered 0..n-1 without gaps (found ${all.join(',')})`);
  });
  return {
    storage,
    params,
    overrides: new Set(r.overrides.map((o) => o.name)),
    entryPoints: r.entry.compute.map((e) => e.name),
  };
}

export type ParamValues = Record<string, number>;

/** Packs `values` into `out` (at byte `offset`) following the reflected layout; every field is required. */
export function packParams(label: string, layout: NonNullable<ShaderLayout['params']>, values: ParamValues, out: DataView, offset: number): void {
  for (const f of layout.fields) {
    const v = values[f.name];
    if (v === undefined) throw new ShaderCompileError(label, `Params field '${f.name}' was not given`);
    const o = offset + f.offset;
    if (f.type === 'f32') out.setFloat32(o, v, true);
    else if (f.type === 'u32') {
      if (!(v >= 0 && v <= 0xffffffff) || !Number.isInteger(v)) throw new ShaderCompileError(label, `Params.${f.name} = ${v} is not a u32`);
      out.setUint32(o, v, true);
    } else {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new ShaderCompileError(label, `Params.${f.name} = ${v} is not an i32`);
      out.setInt32(o, v, true);
    }
  }
  // Every field was given; more keys than fields means one that is not a field (counted, not searched: this
  // runs once per dispatch).
  let given = 0;
  for (const k in values) if (Object.prototype.hasOwnProperty.call(values, k)) given++;
  if (given !== layout.fields.length) {
    const extra = Object.keys(values).find((k) => !layout.fields.some((f) => f.name === k));
    throw new ShaderCompileError(label, `Params has no field '${extra}'`);
  }
}
