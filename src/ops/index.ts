/** Op re-exports: one line per op file. */
export { scaledDotProductAttention, multiHeadAttention, type AttentionOptions } from './attention.js';
export { fmboostAttention } from './fmboost-attention.js';
export { groupNorm, groupNormMoments, groupNormStatsFromMoments, type GroupNormOptions, type Region } from './group-norm.js';
export { layerNorm } from './layer-norm.js';
export { softmax } from './softmax.js';
export { add, mul, addPerChannel, scale, axpby, silu, gelu, geluTanh, quickGelu, geglu, concat, transpose } from './elementwise.js';
export { upsampleNearest2x, interpolateBilinear } from './resize.js';
export { timestepEmbedding, guidanceEmbedding, type TimestepEmbeddingOptions } from './embedding.js';
export { countNonFinite, assertFinite } from './check-finite.js';
export { matmul, linear, gemmTiles, describeTiles, ACTIVATIONS, ACTIVATION_WGSL, type Activation, type MatmulOptions, type GemmTiles } from './matmul.js';
export { conv2d, type Conv2dOptions } from './conv2d.js';
