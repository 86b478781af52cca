export { UNet2DConditionModel, TimestepEmbedding, type UNetForwardOptions, type UNetLoadOptions } from './model.js';
export { UNet2DConditionConfig, checkUNetConfig, type DownBlockType, type UpBlockType } from './config.js';
export { ResnetBlock2D, Attention, BasicTransformerBlock, Transformer2DModel, Downsample2D, Upsample2D } from './blocks.js';
