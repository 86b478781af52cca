import subgroupsWgsl from '../../shaders/subgroups.wgsl';
import { ArgumentError } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';

/**
 * Shaders with a subgroup variant keep its entry points after this line; the portable variant is the text
 * before it (so it compiles without the `subgroups` feature), the subgroup variant is the
 * `shaders/subgroups.wgsl` snippet (the `enable` directive) followed by the whole file.
 */
export const SUBGROUP_SECTION = '// ---- subgroup entry points';

const disabled = new WeakSet<Runtime>();

/** Whether ops with a subgroup variant (group norm, layer norm, softmax) use it on this runtime. */
export function subgroupKernels(rt: Runtime): boolean {
  return rt.hasSubgroups && !disabled.has(rt);
}

/**
 * Chooses between the subgroup kernels (the default where the device has `subgroups`) and the portable
 * ones, for this runtime. Turning them on where `rt.hasSubgroups` is false is an ArgumentError.
 */
export function setSubgroupKernels(rt: Runtime, on: boolean): void {
  if (typeof on !== 'boolean') throw new ArgumentError('setSubgroupKernels', `on must be a boolean, got ${String(on)}`);
  if (on && !rt.hasSubgroups) throw new ArgumentError('setSubgroupKernels', 'the device has no `subgroups` feature');
  if (on) disabled.delete(rt);
  else disabled.add(rt);
}

/** The shader text and pipeline-cache stem for one variant of a file with a subgroup section. */
export function shaderVariant(stem: string, code: string, subgroups: boolean): { stem: string; code: string } {
  const at = code.indexOf(SUBGROUP_SECTION);
  if (at < 0) throw new Error(`shader '${stem}' has no subgroup section`);
  return subgroups ? { stem: `${stem}+subgroups`, code: `${subgroupsWgsl}\n${code}` } : { stem, code: code.slice(0, at) };
}
