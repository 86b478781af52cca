/**
 * CLIP text encoder, the SD-1.5 conditioning (transformers `CLIPTextModel`; REFERENCE §8.2):
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/clip/modeling_clip.py
 *
 * ids [B, 77] → token + position embeddings → pre-LN layers (causal self-attention, MLP) → final_layer_norm
 * → last_hidden_state [B, 77, D], which the UNet cross-attends to.
 *
 * The token table (49408 × 768 f32 = 152 MB for SD-1.5) is larger than WebGPU's default 128 MiB binding and
 * 256 MiB buffer limits, so it is kept f32 in row chunks of ≤ 64 MiB (`CLIPTextModel.load` splits it) and the
 * rows of a prompt are gathered with buffer-to-buffer copies: no kernel binds the table at all, and the
 * embeddings stay exact in f32 whatever dtype the other weights use.
 */
import { loadWeights, type WeightScope } from '../io/weights.js';
import type { HostTensor, TensorSource } from '../io/safetensors.js';
import { Linear, LayerNorm } from '../nn/layers.js';
import { multiHeadAttention } from '../ops/attention.js';
import { add } from '../ops/elementwise.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../runtime/dtype.js';
import { ArgumentError, ConfigError, ShapeError, WeightError, throwIfAborted } from '../runtime/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { expectFields } from '../io/config.js';
import { clipTextKeyRenamer } from './keys.js';

/** transformers `CLIPTextConfig` (the fields the text tower uses), camelCased. */
export interface CLIPTextConfig {
  vocabSize: number;
  hiddenSize: number;
  /** MLP width (fc1 output). */
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Sequence length the position table covers (77); prompts are padded to it. */
  maxPositionEmbeddings: number;
  hiddenAct: 'quick_gelu' | 'gelu';
  layerNormEps: number;
}

interface CLIPTextConfigJson {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: string;
  layer_norm_eps: number;
}

export const CLIPTextConfig = {
  /** openai/clip-vit-large-patch14 text tower, as SD-1.5 ships it. */
  sd15: Object.freeze({
    vocabSize: 49408,
    hiddenSize: 768,
    intermediateSize: 3072,
    numHiddenLayers: 12,
    numAttentionHeads: 12,
    maxPositionEmbeddings: 77,
    hiddenAct: 'quick_gelu',
    layerNormEps: 1e-5,
  }) as Readonly<CLIPTextConfig>,

  /** A transformers `config.json` (CLIPTextConfig, or a CLIPConfig with `text_config`) → CLIPTextConfig. */
  fromTransformers(json: unknown, file = 'config.json'): CLIPTextConfig {
    const outer = json as { text_config?: unknown } | null;
    const src = outer && typeof outer === 'object' && outer.text_config && typeof outer.text_config === 'object' ? outer.text_config : json;
    const c = expectFields<CLIPTextConfigJson>(file, src, {
      vocab_size: 'integer',
      hidden_size: 'integer',
      intermediate_size: 'integer',
      num_hidden_layers: 'integer',
      num_attention_heads: 'integer',
      max_position_embeddings: 'integer',
      hidden_act: 'string',
      layer_norm_eps: 'number',
    });
    if (c.hidden_act !== 'quick_gelu' && c.hidden_act !== 'gelu') throw new ConfigError(file, `hidden_act '${c.hidden_act}' is not supported (quick_gelu, gelu)`);
    const cfg: CLIPTextConfig = {
      vocabSize: c.vocab_size,
      hiddenSize: c.hidden_size,
      intermediateSize: c.intermediate_size,
      numHiddenLayers: c.num_hidden_layers,
      numAttentionHeads: c.num_attention_heads,
      maxPositionEmbeddings: c.max_position_embeddings,
      hiddenAct: c.hidden_act,
      layerNormEps: c.layer_norm_eps,
    };
    checkConfig(cfg, file);
    return cfg;
  },
};

function checkConfig(c: CLIPTextConfig, where: string): void {
  const pos = (k: keyof CLIPTextConfig): void => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new ConfigError(where, `${k} must be a positive integer, got ${String(v)}`);
  };
  (['vocabSize', 'hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'maxPositionEmbeddings'] as const).forEach(pos);
  if (c.hiddenSize % c.numAttentionHeads !== 0) throw new ConfigError(where, `hiddenSize ${c.hiddenSize} is not divisible by numAttentionHeads ${c.numAttentionHeads}`);
  if (c.hiddenAct !== 'quick_gelu' && c.hiddenAct !== 'gelu') throw new ConfigError(where, `hiddenAct '${String(c.hiddenAct)}' is not supported (quick_gelu, gelu)`);
  if (!(c.layerNormEps > 0 && Number.isFinite(c.layerNormEps))) throw new ConfigError(where, `layerNormEps must be a positive number, got ${c.layerNormEps}`);
}

/** Largest token-table chunk `CLIPTextModel.load` uploads: half the default 128 MiB binding limit. */
export const TOKEN_CHUNK_BYTES = 64 * 2 ** 20;

const TOKEN_KEY = 'text_model.embeddings.token_embedding.weight';
const POSITION_KEY = 'text_model.embeddings.position_embedding.weight';

/**
 * The token table as f32 row chunks [rows, D]; chunk c holds ids [c·rowsPerChunk, (c+1)·rowsPerChunk).
 * A lookup is one buffer copy per token, so no shader ever binds the table.
 */
export class TokenEmbedding {
  readonly rowsPerChunk: number;
  readonly vocabSize: number;
  constructor(readonly chunks: readonly Tensor[], readonly dim: number) {
    if (chunks.length === 0) throw new WeightError(TOKEN_KEY, 'no chunks');
    this.rowsPerChunk = chunks[0]!.shape[0]!;
    chunks.forEach((t, i) => {
      const last = i === chunks.length - 1;
      if (t.dtype !== 'f32') throw new WeightError(TOKEN_KEY, `the token table must be stored f32 (rows are copied into f32 activations), chunk ${i} is ${t.dtype}`);
      if (t.shape.length !== 2 || t.shape[1] !== dim || (last ? t.shape[0]! > this.rowsPerChunk || t.shape[0]! < 1 : t.shape[0] !== this.rowsPerChunk)) {
        throw new WeightError(TOKEN_KEY, `chunk ${i} has shape [${t.shape}]; chunks must be [${this.rowsPerChunk}, ${dim}] (the last may have fewer rows)`);
      }
    });
    this.vocabSize = (chunks.length - 1) * this.rowsPerChunk + chunks[chunks.length - 1]!.shape[0]!;
  }

  /** Row ids[i] of the table into row i of `out` [n, D] (ids already validated). */
  gather(rt: Runtime, ids: Int32Array, out: Tensor): void {
    const rowBytes = this.dim * 4;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const c = Math.floor(id / this.rowsPerChunk);
      rt.copy(this.chunks[c]!, (id - c * this.rowsPerChunk) * rowBytes, out, i * rowBytes, rowBytes);
    }
  }
}

/** One pre-LN encoder layer: x + out_proj(MHA(LN1(x))) with a causal mask, then x + fc2(act(fc1(LN2(x)))). */
export class CLIPEncoderLayer {
  readonly layerNorm1: LayerNorm;
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly outProj: Linear;
  readonly layerNorm2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(w: WeightScope, readonly cfg: CLIPTextConfig) {
    const D = cfg.hiddenSize;
    const F = cfg.intermediateSize;
    this.layerNorm1 = new LayerNorm(w.pp('layer_norm1'), D, cfg.layerNormEps);
    const a = w.pp('self_attn');
    this.qProj = new Linear(a.pp('q_proj'), D, D);
    this.kProj = new Linear(a.pp('k_proj'), D, D);
    this.vProj = new Linear(a.pp('v_proj'), D, D);
    this.outProj = new Linear(a.pp('out_proj'), D, D);
    this.layerNorm2 = new LayerNorm(w.pp('layer_norm2'), D, cfg.layerNormEps);
    this.fc1 = new Linear(w.pp('mlp').pp('fc1'), D, F);
    this.fc2 = new Linear(w.pp('mlp').pp('fc2'), F, D);
  }

  forward(rt: Runtime, x: Tensor): Tensor {
    return rt.scope(() => {
      const h = this.layerNorm1.forward(rt, x); // [B, L, D]
      const q = this.qProj.forward(rt, h);
      const k = this.kProj.forward(rt, h);
      const v = this.vProj.forward(rt, h);
      // Token i attends to j ≤ i; SD-1.5 passes no padding mask, so pad tokens attend like any other.
      const a = multiHeadAttention(rt, q, k, v, this.cfg.numAttentionHeads, { causal: true }); // [B, L, D]
      const x1 = this.outProj.forward(rt, a, { residual: x });
      const m = this.fc1.forward(rt, this.layerNorm2.forward(rt, x1), { activation: this.cfg.hiddenAct }); // [B, L, F]
      return this.fc2.forward(rt, m, { residual: x1 }); // [B, L, D]
    });
  }
}

export interface CLIPForwardOptions {
  /**
   * Receives copies of intermediate outputs under their module names (`text_model.embeddings`,
   * `text_model.encoder.layers.{i}`, before final_layer_norm). The caller owns and disposes them.
   */
  debug?: Map<string, Tensor>;
}

export interface CLIPLoadOptions {
  config?: CLIPTextConfig;
  /** Storage of the weight matrices (the token table is always f32). */
  dtype?: 'auto' | 'f32' | 'f16';
  /** Largest token-table chunk in bytes (default 64 MiB); small values are for tests. */
  maxChunkBytes?: number;
  signal?: AbortSignal;
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/**
 * transformers `CLIPTextModel` (text tower only): `encode(ids [B·L]) → last_hidden_state [B, L, D]`.
 * Keys are the transformers names (`text_model.*`); single-file checkpoints are renamed by `load`.
 */
export class CLIPTextModel {
  readonly tokenEmbedding: TokenEmbedding;
  readonly positionEmbedding: Tensor;
  readonly layers: CLIPEncoderLayer[];
  readonly finalLayerNorm: LayerNorm;
  readonly rt: Runtime;

  /**
   * From loaded weights. The embedding tables must be f32: the token table is `o.tokenChunks` (what `load`
   * uploads) or, when it fits one buffer on this device, `text_model.embeddings.token_embedding.weight` in `w`;
   * the position table is `o.positionEmbedding` or the one in `w`.
   */
  constructor(
    private readonly w: WeightScope,
    readonly config: CLIPTextConfig = CLIPTextConfig.sd15,
    private readonly o: { tokenChunks?: readonly Tensor[]; positionEmbedding?: Tensor; onDispose?: () => void } = {},
  ) {
    checkConfig(config, 'CLIPTextModel');
    const D = config.hiddenSize;
    const tm = w.pp('text_model');
    const emb = tm.pp('embeddings');
    this.tokenEmbedding = new TokenEmbedding(o.tokenChunks ?? [emb.get('token_embedding.weight', [config.vocabSize, D])], D);
    if (this.tokenEmbedding.vocabSize !== config.vocabSize) {
      throw new WeightError(TOKEN_KEY, `the chunks hold ${this.tokenEmbedding.vocabSize} rows, the config says vocabSize ${config.vocabSize}`);
    }
    this.positionEmbedding = o.positionEmbedding ?? emb.get('position_embedding.weight', [config.maxPositionEmbeddings, D]);
    if (this.positionEmbedding.dtype !== 'f32' || this.positionEmbedding.shape.join() !== `${config.maxPositionEmbeddings},${D}`) {
      throw new WeightError(POSITION_KEY, `must be f32 [${config.maxPositionEmbeddings}, ${D}] (rows are copied into f32 activations), got ${this.positionEmbedding.dtype} [${this.positionEmbedding.shape}]`);
    }
    this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => new CLIPEncoderLayer(tm.pp('encoder').pp('layers').pp(i), config));
    this.finalLayerNorm = new LayerNorm(tm.pp('final_layer_norm'), D, config.layerNormEps);
    this.rt = this.positionEmbedding.rt;
  }

  /**
   * Loads from a transformers `text_encoder/model.safetensors` (`text_model.*`) or an SD single-file
   * checkpoint (`cond_stage_model.transformer.text_model.*`; every other key is skipped). The token table
   * is read once on the CPU and uploaded as f32 chunks of ≤ `maxChunkBytes`.
   */
  static async load(rt: Runtime, source: TensorSource, o: CLIPLoadOptions = {}): Promise<CLIPTextModel> {
    const config = o.config ?? CLIPTextConfig.sd15;
    checkConfig(config, 'CLIPTextModel.load');
    const maxChunkBytes = o.maxChunkBytes ?? TOKEN_CHUNK_BYTES;
    const D = config.hiddenSize;
    if (!Number.isSafeInteger(maxChunkBytes) || maxChunkBytes < D * 4) {
      throw new ArgumentError('CLIPTextModel.load', `maxChunkBytes must be an integer ≥ one row (${D * 4} bytes), got ${maxChunkBytes}`);
    }
    const rename = clipTextKeyRenamer(source.keys());
    // The embedding tables stay f32 whatever `dtype` says (their rows are copied, not computed on).
    const srcKey = (key: string, shape: number[]): string => {
      const k = source.keys().find((s) => rename(s) === key);
      if (k === undefined) throw new WeightError(key, `not found in ${source.name}: expected transformers names (text_model.*) or SD single-file names (cond_stage_model.transformer.text_model.*)`);
      const info = source.info(k);
      if (info.shape.join() !== shape.join()) throw new WeightError(key, `expected shape [${shape}], ${source.name} has [${info.shape}]`);
      return k;
    };
    const tableKey = srcKey(TOKEN_KEY, [config.vocabSize, D]);
    const positionKey = srcKey(POSITION_KEY, [config.maxPositionEmbeddings, D]);
    const w = await loadWeights(rt, source, {
      rename,
      filter: (k) => k !== TOKEN_KEY && k !== POSITION_KEY,
      dtype: o.dtype,
      signal: o.signal,
      onProgress: o.onProgress,
    });
    const tables: Tensor[] = [];
    try {
      throwIfAborted(o.signal, 'CLIPTextModel.load');
      const rows = Math.floor(maxChunkBytes / (D * 4));
      const chunks = uploadRowChunks(rt, TOKEN_KEY, await source.read(tableKey, o.signal), rows);
      tables.push(...chunks);
      const [position] = uploadRowChunks(rt, POSITION_KEY, await source.read(positionKey, o.signal), config.maxPositionEmbeddings);
      tables.push(position!);
      // loadWeights re-uploads its tensors after device loss (rt.restore()); these tables need the same.
      const unregister = rt.onRestore(async () => {
        const tok = tableF32(TOKEN_KEY, await source.read(tableKey));
        chunks.forEach((t, i) => {
          if (!t.isDisposed) rt.reupload(t, tok.subarray(i * rows * D, i * rows * D + t.numel));
        });
        if (!position!.isDisposed) rt.reupload(position!, tableF32(POSITION_KEY, await source.read(positionKey)));
      });
      const model = new CLIPTextModel(w, config, { tokenChunks: chunks, positionEmbedding: position, onDispose: unregister });
      w.assertAllUsed('CLIPTextModel');
      return model;
    } catch (e) {
      w.dispose();
      for (const t of tables) t.dispose();
      throw e;
    }
  }

  /** last_hidden_state [B, L, D] for ids [B·L], L = maxPositionEmbeddings (77). */
  encode(ids: Int32Array | readonly number[], o: CLIPForwardOptions = {}): Tensor {
    return this.forward(this.rt, ids, o);
  }

  forward(rt: Runtime, ids: Int32Array | readonly number[], o: CLIPForwardOptions = {}): Tensor {
    const op = 'CLIPTextModel';
    const L = this.config.maxPositionEmbeddings;
    const D = this.config.hiddenSize;
    const V = this.config.vocabSize;
    if (!(ids instanceof Int32Array) && !Array.isArray(ids)) throw new ArgumentError(op, 'ids must be an Int32Array (or an array) of token ids');
    if (ids.length === 0 || ids.length % L !== 0) throw new ShapeError(op, `${ids.length} ids is not a positive multiple of the ${L}-token context`);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new ArgumentError(op, `token id ${String(id)} at index ${i} is outside [0, ${V})`);
    }
    const idArr = ids instanceof Int32Array ? ids : Int32Array.from(ids);
    const B = ids.length / L;
    const capture = (name: string, t: Tensor): void => {
      o.debug?.set(name, rt.keep(rt.clone(t)));
    };
    return rt.scope(() => {
      const tok = rt.empty([B, L, D], 'f32', 'clip.tokens');
      this.tokenEmbedding.gather(rt, idArr, tok);
      const pos = rt.empty([B, L, D], 'f32', 'clip.positions');
      for (let b = 0; b < B; b++) rt.copy(this.positionEmbedding, 0, pos, b * L * D * 4, L * D * 4);
      let x = add(rt, tok, pos); // [B, L, D]
      capture('text_model.embeddings', x);
      this.layers.forEach((layer, i) => {
        x = layer.forward(rt, x);
        capture(`text_model.encoder.layers.${i}`, x);
      });
      return this.finalLayerNorm.forward(rt, x); // [B, L, D]
    });
  }

  /** GPU bytes of the weights, embedding tables included. */
  get bytes(): number {
    const own = [...(this.o.tokenChunks ?? []), ...(this.o.positionEmbedding ? [this.o.positionEmbedding] : [])];
    return this.w.bytes + own.reduce((s, t) => s + t.byteLength, 0);
  }

  dispose(): void {
    this.w.dispose();
    for (const t of this.o.tokenChunks ?? []) t.dispose();
    this.o.positionEmbedding?.dispose();
    this.o.onDispose?.();
  }
}

/** A host table as finite f32 values (f16/bf16 widened). */
function tableF32(key: string, host: HostTensor): Float32Array {
  let data: Float32Array;
  if (host.dtype === 'f32') data = host.data as Float32Array;
  else if (host.dtype === 'f16') data = f16ArrayToF32(host.data as Uint16Array);
  else if (host.dtype === 'bf16') data = bf16ArrayToF32(host.data as Uint16Array);
  else throw new WeightError(key, `dtype ${host.dtype} cannot be a weight (F32, F16, BF16)`);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v - v !== 0) throw new WeightError(key, `holds ${v} at flat index ${i}`);
  }
  return data;
}

/** A [rows, D] host tensor → f32 GPU tensors of ≤ rowsPerChunk rows each (persistent, outside any scope). */
function uploadRowChunks(rt: Runtime, key: string, host: HostTensor, rowsPerChunk: number): Tensor[] {
  const [rows, D] = host.shape as [number, number];
  const data = tableF32(key, host);
  const chunks: Tensor[] = [];
  try {
    for (let r = 0; r < rows; r += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, rows - r);
      chunks.push(rt.keep(rt.upload(data.subarray(r * D, (r + n) * D), [n, D], { label: `${key}[${r}:${r + n}]`, persistent: true })));
    }
  } catch (e) {
    for (const t of chunks) t.dispose();
    throw e;
  }
  return chunks;
}
