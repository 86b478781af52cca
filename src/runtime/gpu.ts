import { WebGPUUnavailableError } from './errors.js';
import { Runtime, type RuntimeOptions } from './runtime.js';

export interface CreateRuntimeOptions extends RuntimeOptions {
  /** The GPU entry point: `navigator.gpu` in browsers (the default), the `webgpu` package's `create()` in Node. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /**
   * Ask for the adapter's larger buffer limits (default true). Everything also works under WebGPU's
   * defaults (128 MiB per binding); larger limits only allow larger untiled work.
   */
  requestHigherLimits?: boolean;
  /** Enable `shader-f16` when the adapter has it (default true). */
  useF16?: boolean;
}

/**
 * Acquires an adapter and a device and returns a Runtime. Logs which adapter is used. Throws
 * WebGPUUnavailableError when there is no WebGPU or no adapter.
 */
export async function createRuntime(options: CreateRuntimeOptions = {}): Promise<Runtime> {
  const gpu = options.gpu ?? (typeof navigator !== 'undefined' ? (navigator as Navigator & { gpu?: GPU }).gpu : undefined);
  if (!gpu) {
    throw new WebGPUUnavailableError(
      'WebGPU is not available: use a browser with WebGPU enabled, or pass { gpu } from the `webgpu` package in Node (see fmboost-webgpu/node).',
    );
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  } catch (e) {
    throw new WebGPUUnavailableError(`requestAdapter failed: ${(e as Error).message}`, { cause: e });
  }
  if (!adapter) throw new WebGPUUnavailableError('no WebGPU adapter was found (no GPU, and no software fallback such as SwiftShader)');

  const features: GPUFeatureName[] = [];
  if (options.useF16 !== false && adapter.features.has('shader-f16')) features.push('shader-f16');
  if (adapter.features.has('subgroups')) features.push('subgroups' as GPUFeatureName);
  if (adapter.features.has('timestamp-query')) features.push('timestamp-query');

  const limits: Record<string, number> = {};
  if (options.requestHigherLimits !== false) {
    limits.maxStorageBufferBindingSize = adapter.limits.maxStorageBufferBindingSize;
    limits.maxBufferSize = adapter.limits.maxBufferSize;
    limits.maxComputeWorkgroupStorageSize = adapter.limits.maxComputeWorkgroupStorageSize;
    limits.maxComputeInvocationsPerWorkgroup = adapter.limits.maxComputeInvocationsPerWorkgroup;
    limits.maxStorageBuffersPerShaderStage = adapter.limits.maxStorageBuffersPerShaderStage;
  }
  const device = await requestDevice(adapter, features, limits);
  // After device loss the adapter may be unusable: ask the GPU for a new one, same features and limits.
  const reacquire = async (): Promise<GPUDevice> => {
    const a = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
    if (!a) throw new WebGPUUnavailableError('no WebGPU adapter is available to replace the lost device');
    return requestDevice(a, features, limits);
  };
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const adapterInfo = {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    isFallback: Boolean((info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter),
  };
  let rt: Runtime;
  try {
    rt = new Runtime(device, adapterInfo, { ...options, gpu, reacquire });
  } catch (e) {
    device.destroy();
    throw e;
  }
  rt.log(
    `fmboost: WebGPU adapter ${rt.adapterName || 'unknown'}; max binding ${Math.round(device.limits.maxStorageBufferBindingSize / 2 ** 20)} MiB; ` +
      `features ${features.join(', ') || 'none'}`,
  );
  return rt;
}

async function requestDevice(adapter: GPUAdapter, features: GPUFeatureName[], limits: Record<string, number>): Promise<GPUDevice> {
  try {
    return await adapter.requestDevice({ requiredFeatures: features, requiredLimits: limits, label: 'fmboost' });
  } catch {
    // Some adapters advertise limits they then refuse: fall back to the defaults.
    try {
      return await adapter.requestDevice({ requiredFeatures: features, label: 'fmboost' });
    } catch (e) {
      throw new WebGPUUnavailableError(`requestDevice failed: ${(e as Error).message}`, { cause: e });
    }
  }
}
