/**
 * Layers that own weights, built from a WeightScope with the checkpoint's own sub-keys
 * (`new Conv2d(w.pp('conv1'))` reads `conv1.weight` and `conv1.bias`). Each forward records GPU work
 * through src/ops and returns a new tensor; inputs are never disposed.
 */
import type { WeightScope } from '../io/weights.js';
import { conv2d } from '../ops/conv2d.js';
import { groupNorm } from '../ops/group-norm.js';
import { layerNorm } from '../ops/layer-norm.js';
import { linear, type Activation } from '../ops/matmul.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';

/** torch.nn.Linear: y = x·Wᵀ + b, weight [out, in]. Also accepts Conv1d/Conv2d 1×1 weights ([out, in, 1(, 1)]). */
export class Linear {
  readonly weight: Tensor;
  readonly bias: Tensor | undefined;
  constructor(w: WeightScope, readonly inFeatures: number, readonly outFeatures: number, o: { bias?: boolean } = {}) {
    this.weight = w.getReshaped('weight', [outFeatures, inFeatures]);
    this.bias = o.bias === false ? undefined : w.get('bias', [outFeatures]);
  }

  forward(rt: Runtime, x: Tensor, o: { activation?: Activation; residual?: Tensor } = {}): Tensor {
    return linear(rt, x, this.weight, this.bias, o); // [..., in] -> [..., out]
  }
}

export interface Conv2dOptions {
  kernel?: number;
  stride?: number;
  /** Symmetric padding, or [top, bottom, left, right]. Default kernel/2 (same size for odd kernels). */
  padding?: number | [number, number, number, number];
  bias?: boolean;
}

/** torch.nn.Conv2d, weight [out, in, k, k]. */
export class Conv2d {
  readonly weight: Tensor;
  readonly bias: Tensor | undefined;
  readonly kernel: number;
  readonly stride: number;
  readonly padding: number | [number, number, number, number];
  constructor(w: WeightScope, readonly inChannels: number, readonly outChannels: number, o: Conv2dOptions = {}) {
    this.kernel = o.kernel ?? 3;
    this.stride = o.stride ?? 1;
    this.padding = o.padding ?? Math.floor(this.kernel / 2);
    this.weight = w.getReshaped('weight', [outChannels, inChannels, this.kernel, this.kernel]);
    this.bias = o.bias === false ? undefined : w.get('bias', [outChannels]);
  }

  forward(rt: Runtime, x: Tensor, o: { residual?: Tensor; upsample2x?: boolean } = {}): Tensor {
    return conv2d(rt, x, this.weight, this.bias, { stride: this.stride, padding: this.padding, ...o }); // [N, in, H, W] -> [N, out, H', W']
  }
}

/** torch.nn.GroupNorm (affine). `silu` fuses the activation that follows it in every ResNet block. */
export class GroupNorm {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(w: WeightScope, readonly groups: number, readonly channels: number, readonly eps: number) {
    this.weight = w.get('weight', [channels]);
    this.bias = w.get('bias', [channels]);
  }

  forward(rt: Runtime, x: Tensor, o: { silu?: boolean; scale?: Tensor; shift?: Tensor; stats?: Tensor } = {}): Tensor {
    return groupNorm(rt, x, this.groups, this.weight, this.bias, this.eps, o);
  }
}

/** torch.nn.LayerNorm over the last dimension. */
export class LayerNorm {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(w: WeightScope, readonly dim: number, readonly eps = 1e-5) {
    this.weight = w.get('weight', [dim]);
    this.bias = w.get('bias', [dim]);
  }

  forward(rt: Runtime, x: Tensor): Tensor {
    return layerNorm(rt, x, this.weight, this.bias, this.eps);
  }
}
