export * from './errors.js';
export * from './dtype.js';
export { Tensor, numel } from './tensor.js';
export { Runtime, type Kernel, type RuntimeOptions, type Binding, type OverrideValues } from './runtime.js';
export { createRuntime, type CreateRuntimeOptions } from './gpu.js';
export type { MemoryStats } from './allocator.js';
export { reflectShader, type ShaderLayout, type ParamValues } from './params.js';
