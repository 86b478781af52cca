/**
 * fmboost-webgpu: "Boosting Latent Diffusion with Flow Matching" (arXiv 2312.07360) on WebGPU.
 * This is the one public entry point for browsers and Node (Node-only helpers: `fmboost-webgpu/node`).
 */
export * from './runtime/index.js';
export * from './io/index.js';
export { openCheckpoint, Checkpoint, cfmWeightsFromCheckpoint, convertCheckpoint, PrefixedTensorSource, CFM_EMA_PREFIX, CFM_ONLINE_PREFIX, type CheckpointOptions, type ConvertOptions } from './io/checkpoint.js';
export { unpickle, PyDict, PyGlobal, PyObject, TorchStorage, TorchTensor, DEFAULT_PICKLE_LIMITS, type PyValue, type PickleLimits, type StorageDType } from './io/pickle.js';
export { CLIPTokenizer, CLIP_CONTEXT_LENGTH, CLIP_BOS_ID, CLIP_EOS_ID, type EncodeOptions, type Encoded } from './models/clip-tokenizer.js';
export * from './pipelines/schedulers/index.js';
export { randn, philox4x32, NOISE_STREAM } from './pipelines/random.js';
export { flowTimeGrid, forwardDiffusionAlphaBar, integrateFixedGrid, ODE_EVALS_PER_STEP, type OdeMethod, type StateOps, type IntegrateOptions } from './pipelines/flow-schedule.js';
export { scaledDotProductAttention, multiHeadAttention, fmboostAttention, type AttentionOptions } from './ops/index.js';
export {
  groupNorm, groupNormMoments, groupNormStatsFromMoments, layerNorm, softmax,
  add, mul, addPerChannel, scale, axpby, silu, gelu, geluTanh, quickGelu, geglu, concat, transpose,
  upsampleNearest2x, interpolateBilinear, timestepEmbedding, guidanceEmbedding,
  type GroupNormOptions, type Region, type TimestepEmbeddingOptions,
} from './ops/index.js';
export { CLIPTextModel, CLIPTextConfig, CLIPEncoderLayer, TokenEmbedding, TOKEN_CHUNK_BYTES, type CLIPForwardOptions, type CLIPLoadOptions } from './models/clip-text-encoder.js';
export { UNet2DConditionModel, UNet2DConditionConfig, type UNetForwardOptions, type UNetLoadOptions, type DownBlockType, type UpBlockType } from './models/unet-2d-condition/index.js';
export { unetKeyRenamer, clipTextKeyRenamer } from './models/keys.js';
export { textToLatent, VAE_SCALE_FACTOR, type TextToLatentModels, type TextToLatentOptions, type StepTensors } from './pipelines/text-to-latent.js';
export { CfmUNet, CfmUNetConfig, CfmCondition, parseCfmUNetConfig, checkCfmConfig, cfmKeyRenamer, type CfmForwardOptions, type CfmLoadOptions } from './models/cfm-unet.js';
export { sampleFlow, lincomb, flowNfe, type SampleFlowOptions } from './pipelines/flow-matching.js';
export {
  qSample, boost, cascade, decodeToImage, toRgba, quantize, upscaleImage, rgbaToFloat, DEFAULT_NOISING_STEP,
  type BoostModels, type BoostOptions, type BoostProgress, type UpscaleCommon, type UpsampleMode, type CascadeStage, type CascadeOptions,
  type DecodedImage, type RgbaImage, type UpscaleImageOptions,
} from './pipelines/boost.js';
export { hiresFix, type HiresFixModels, type HiresFixOptions } from './pipelines/hires-fix.js';
export {
  FMBoostPipeline, BASE_SIZE, OUTPUT_SIZES,
  type OutputSize, type GenerateStage, type FMBoostLoadOptions, type GenerateOptions, type GenerateResult, type CfmRunOptions,
  type HiresFixRunOptions, type RgbaResult, type UpscaleOptions,
} from './pipelines/fmboost-pipeline.js';
export {
  loadModelSet, loadCfmStage, urlModelFiles, fileListModelFiles, bytesModelFiles, cachedUrlSource, clearModelCache, MODEL_CACHE_NAME,
  bundledTinyModelUrl, bundledTokenizerUrl,
  type ModelFiles, type ModelInput, type ModelSet, type CfmStageInput, type LoadedCfmStage, type LoadModelSetOptions, type LoadProgress,
  type UrlModelFilesOptions, type PathedFile, type SingleFileConfig, type SingleFileComponentConfigs,
} from './pipelines/model-source.js';
export { matmul, linear, conv2d, type Activation, type MatmulOptions, type Conv2dOptions } from './ops/index.js';
/** Subgroup kernels are the default where the device has `subgroups`; `setSubgroupKernels(rt, false)` forces the portable ones. */
export { setSubgroupKernels, subgroupKernels } from './ops/subgroups.js';
/** GEMM/conv multiply f16 operands (f32 accumulation) where the device has `shader-f16`; `setF16Compute(rt, false)` keeps f32. */
export { setF16Compute, f16Compute } from './ops/gemm-compute.js';
export { AutoencoderKL, DEFAULT_MAX_TILE_BYTES, type AutoencoderKLLoadOptions, type TilingOptions, type TilingPlan, type TilingReport, type VaeRunOptions } from './models/vae/model.js';
export { AutoencoderKLConfig, parseAutoencoderKLConfig } from './models/vae/config.js';
export { vaeKeyRenamer, detectVaeDialect, type VaeKeyDialect } from './models/keys.js';
