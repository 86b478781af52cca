import { existsSync } from 'node:fs';
import { createRuntime, type CreateRuntimeOptions } from '../runtime/gpu.js';
import type { Runtime } from '../runtime/runtime.js';
import { WebGPUUnavailableError } from '../runtime/errors.js';

const SWIFTSHADER_ICDS = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib64/chromium/vk_swiftshader_icd.json'];

/**
 * Node's WebGPU from the `webgpu` package (Dawn). With no GPU device node on the machine (no /dev/dri,
 * no /dev/nvidia0) and no VK_ICD_FILENAMES set, Vulkan is pointed at SwiftShader (shipped with Debian's
 * Chromium) so the library runs on the CPU. Set FMBOOST_ADAPTER=swiftshader to force that.
 */
export async function nodeGPU(): Promise<GPU> {
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
  const forced = process.env.FMBOOST_ADAPTER === 'swiftshader';
  const hasGpuNode = existsSync('/dev/dri') || existsSync('/dev/nvidia0');
  if ((forced || !hasGpuNode) && !process.env.VK_ICD_FILENAMES) {
    const icd = SWIFTSHADER_ICDS.find((p) => existsSync(p));
    if (icd) process.env.VK_ICD_FILENAMES = icd;
  }
  let mod: { create: (opts: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    throw new WebGPUUnavailableError(`the 'webgpu' package could not be loaded (npm install webgpu): ${(e as Error).message}`, { cause: e });
  }
  Object.assign(globalThis, mod.globals);
  return mod.create([]);
}

/** createRuntime() for Node: Dawn through the `webgpu` package, SwiftShader on GPU-less machines. */
export async function createNodeRuntime(options: Omit<CreateRuntimeOptions, 'gpu'> = {}): Promise<Runtime> {
  return createRuntime({ ...options, gpu: await nodeGPU() });
}
