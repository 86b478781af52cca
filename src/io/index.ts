export { bytesSource, blobSource, urlSource, type ByteSource, type UrlSourceOptions } from './byte-source.js';
export {
  SafetensorsFile,
  writeSafetensors,
  stDtypeBytes,
  MAX_HEADER_BYTES,
  type StDtype,
  type TensorInfo,
  type HostTensor,
  type TensorSource,
} from './safetensors.js';
export { loadWeights, WeightScope, type LoadWeightsOptions } from './weights.js';
export { readJson, parseJson, expectFields, MAX_CONFIG_BYTES, type FieldKind } from './config.js';
