/** Node-only entry: WebGPU through the `webgpu` package, file-system weight sources. */
export * from '../index.js';
export { nodeGPU, createNodeRuntime } from './gpu.js';
export { fileSource } from './fs-source.js';
export { folderModelFiles, bundledModelDir, bundledTokenizer, resolveModelPath, cfmStageFromPath, loadModelFromPath, packageRoot } from './model-folder.js';
