/**
 * fmboost-webgpu: "Boosting Latent Diffusion with Flow Matching" (arXiv 2312.07360) on WebGPU.
 * This is the one public entry point for browsers and Node (Node-only helpers: `fmboost-webgpu/node`).
 */
export * from './runtime/index.js';
export * from './io/index.js';
