import { BufferAllocator, type Allocation, type MemoryStats } from './allocator.js';
import { f16ArrayToF32, f32ArrayToF16, storageBytes, type DType } from './dtype.js';
import { AbortError, ArgumentError, DeviceLostError, FmBoostError, OutOfMemoryError, ShaderCompileError, ShapeError } from './errors.js';
import { packParams, reflectShader, type ParamValues, type ShaderLayout } from './params.js';
import { numel, Tensor } from './tensor.js';

/** A compiled compute pipeline with its reflected layout. One per (shader, entry point, overrides). */
export interface Kernel {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: ShaderLayout;
  /** The explicit bind-group layout (shared by every kernel with the same binding kinds). */
  readonly bindLayout: BindLayout;
}

/**
 * An explicit bind-group layout made from a reflected shader layout: storage bindings read-only or
 * read-write, the Params uniform with a dynamic offset into the runtime's uniform arena. Kernels whose
 * bindings have the same kinds share it, so they share bind groups too.
 */
export interface BindLayout {
  readonly id: number;
  readonly layout: GPUBindGroupLayout;
  readonly pipelineLayout: GPUPipelineLayout;
}

/** Bind-group cache counters since the runtime was made (for tests and benchmarks). */
export interface BindGroupStats {
  /** Bind groups made (cache misses). */
  created: number;
  /** Dispatches that reused a cached bind group. */
  hits: number;
  /** Dropped because the cache was full (least recently used first). */
  evicted: number;
  /** Dropped because a buffer they bind was destroyed. */
  invalidated: number;
  /** Bind groups held now. */
  size: number;
}

export type OverrideValues = Record<string, number | boolean>;

export interface RuntimeOptions {
  /** Hard cap on GPU bytes this runtime allocates (weights + activations + pool). Default: 4 GiB. */
  memoryBudgetBytes?: number;
  /** Log sink; default console.info. Pass `() => {}` to silence. */
  log?: (msg: string) => void;
  /** Submit recorded work after this many dispatches (bounds encoder memory). Default 512. */
  maxPendingDispatches?: number;
  /**
   * The GPU object the device came from. The runtime holds it for its own lifetime: Node's Dawn binding
   * crashes when that object is garbage-collected while its device is still in use.
   */
  gpu?: GPU;
  /** Acquires a fresh device after loss (createRuntime provides it); enables `restore()`. */
  reacquire?: () => Promise<GPUDevice>;
  /** Most bind groups kept for reuse (least recently used ones are dropped first); 0 makes one per dispatch. Default 8192. */
  maxCachedBindGroups?: number;
}

/** Where a bound resource comes from: a tensor, or a raw buffer (for internal scratch). */
export type Binding = Tensor | GPUBuffer;

/** Bytes of the uniform arena per slice: one Params struct, at WebGPU's required dynamic-offset alignment. */
const UNIFORM_SLICE = 256;
/** The arena holds at most this many slices; a batch that needs more is submitted early. */
const MAX_ARENA_SLICES = 4096;

/**
 * The runtime owns one GPUDevice: tensors, the buffer pool, the pipeline cache and the command stream.
 * Ops record dispatches into one open compute pass; work is submitted on `flush()`, on a read, or every
 * `maxPendingDispatches` dispatches. Only `read()` waits for the GPU.
 */
export class Runtime {
  private alloc!: BufferAllocator;
  private dev!: GPUDevice;
  readonly limits: GPUSupportedLimits;
  /** `shader-f16` is enabled on the device. */
  readonly hasF16: boolean;
  /** `subgroups` is enabled on the device. */
  readonly hasSubgroups: boolean;
  readonly log: (msg: string) => void;
  /** Held so the device's parent object lives as long as the runtime (see RuntimeOptions.gpu). */
  readonly gpu: GPU | undefined;

  private readonly kernels = new Map<string, Kernel>();
  private readonly layouts = new Map<string, ShaderLayout>();
  /** Explicit bind-group layouts by binding kinds (e.g. "rwu"), for the current device. */
  private readonly bindLayouts = new Map<string, BindLayout>();
  private bindLayoutSerial = 0;
  /**
   * Bind groups by (bind layout, bound buffers), least recently used first. The Params uniform is bound at a
   * dynamic offset, so a bind group does not depend on the Params: the pooled buffers recur from step to step
   * and their bind groups are reused. Buffers are named by a never-reused id, so a new buffer that happens
   * to take a freed one's memory never finds the old bind group.
   */
  private readonly bindGroups = new Map<string, { group: GPUBindGroup; buffers: GPUBuffer[] }>();
  /** Cache keys of the bind groups that bind each buffer (to drop them when the buffer is destroyed). */
  private readonly groupsByBuffer = new Map<GPUBuffer, Set<string>>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private bufferSerial = 0;
  private readonly maxBindGroups: number;
  private readonly bgStats = { created: 0, hits: 0, evicted: 0, invalidated: 0 };
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private readonly maxPending: number;
  /**
   * The uniform arena: one buffer of Params slices for the batch being recorded, with its CPU copy. Filled
   * from offset 0 in each batch and uploaded (one writeBuffer) just before the batch is submitted; queue
   * order makes reusing it in the next batch safe.
   */
  private arena: GPUBuffer | null = null;
  private readonly arenaBytes: number;
  private readonly arenaStaging: DataView;
  private uniformOffset = 0;
  private readonly scopes: Set<Tensor>[] = [];
  private lostInfo: GPUDeviceLostInfo | null = null;
  private readonly pendingErrors: Promise<GPUValidationErrorWrapper | GpuOutOfMemory | GPUError | null>[] = [];
  private dispatchCount = 0;
  private lostPromise: Promise<void>;

  private readonly reacquire: (() => Promise<GPUDevice>) | undefined;
  private readonly restoreHooks = new Set<() => Promise<void>>();
  private restoring: Promise<void> | null = null;

  constructor(
    device: GPUDevice,
    readonly adapterInfo: { vendor: string; architecture: string; device: string; description: string; isFallback: boolean },
    options: RuntimeOptions = {},
  ) {
    this.limits = device.limits;
    this.hasF16 = device.features.has('shader-f16');
    this.hasSubgroups = device.features.has('subgroups');
    this.log = options.log ?? ((m) => console.info(m));
    this.gpu = options.gpu;
    this.reacquire = options.reacquire;
    this.maxPending = options.maxPendingDispatches ?? 512;
    const cap = options.maxCachedBindGroups ?? 8192;
    if (!Number.isInteger(cap) || cap < 0) throw new ArgumentError('Runtime', `maxCachedBindGroups must be a whole number ≥ 0, got ${cap}`);
    this.maxBindGroups = cap;
    this.arenaBytes = Math.min(Math.max(1, this.maxPending), MAX_ARENA_SLICES) * UNIFORM_SLICE;
    this.arenaStaging = new DataView(new ArrayBuffer(this.arenaBytes));
    this.lostPromise = this.attach(device, options.memoryBudgetBytes ?? 4 * 2 ** 30);
  }

  /** The current GPUDevice (a new one after `restore()`). */
  get device(): GPUDevice {
    return this.dev;
  }

  /** The buffer allocator of the current device. */
  get allocator(): BufferAllocator {
    return this.alloc;
  }

  private attach(device: GPUDevice, budget: number): Promise<void> {
    this.dev = device;
    const maxBuf = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
    this.alloc = new BufferAllocator(
      device,
      maxBuf,
      budget,
      () => this.flush(),
      (p, bytes, label) => {
        this.pendingErrors.push(p.then((e) => (e ? new GpuOutOfMemory(label, bytes, e.message) : null)));
      },
      (buffer) => this.forgetBuffer(buffer),
    );
    return device.lost.then((info) => {
      if (this.dev !== device) return;
      this.lostInfo = info;
      this.encoder = null;
      this.pass = null;
      this.alloc.abandon();
      this.clearBindGroups();
      if (info.reason !== 'destroyed' || !this.destroyedByUs) this.log(`fmboost: GPU device lost (${info.reason}): ${info.message}`);
    });
  }

  /** True when a lost device can be replaced by `restore()`. */
  get canRestore(): boolean {
    return this.reacquire !== undefined && !this.destroyedByUs;
  }

  /**
   * After device loss: acquires a new device and re-uploads every loaded weight (from its source; URL
   * sources are served by the browser cache when it holds them), so models keep working. Intermediate
   * tensors from before the loss are gone: using one throws DeviceLostError. No-op when not lost.
   */
  restore(): Promise<void> {
    if (!this.lostInfo) return Promise.resolve();
    if (!this.reacquire || this.destroyedByUs) {
      return Promise.reject(new DeviceLostError(this.lostInfo.reason, 'GPU device lost and this runtime cannot re-acquire one (it was destroyed, or made without createRuntime)'));
    }
    this.restoring ??= (async () => {
      try {
        const device = await this.reacquire!();
        this.kernels.clear();
        this.clearBindGroups();
        this.bindLayouts.clear();
        this.arena?.destroy();
        this.arena = null;
        this.uniformOffset = 0;
        this.pending = 0;
        this.pendingErrors.length = 0;
        const budget = this.alloc.budgetBytes;
        this.lostInfo = null;
        this.lostPromise = this.attach(device, budget);
        for (const hook of this.restoreHooks) await hook();
        this.log(`fmboost: GPU device restored; ${this.restoreHooks.size} weight set(s) re-uploaded`);
      } finally {
        this.restoring = null;
      }
    })();
    return this.restoring;
  }

  /** Registers work to redo on a new device after `restore()` (weight re-uploads). Returns an unregister function. */
  onRestore(hook: () => Promise<void>): () => void {
    this.restoreHooks.add(hook);
    return () => this.restoreHooks.delete(hook);
  }

  /** @internal Gives a persistent tensor a new buffer on the current device holding `data` (used by restore hooks). */
  reupload(t: Tensor, data: Float32Array | Uint16Array): void {
    const a = t.allocation as Allocation;
    const fresh = this.alloc.alloc(a.bytes, t.label, false);
    const bytes = data.byteLength % 4 === 0 ? data : padTo4(data);
    this.dev.queue.writeBuffer(fresh.buffer, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
    a.buffer = fresh.buffer;
    a.owner = fresh.owner;
  }

  private destroyedByUs = false;

  /** Short description of the adapter, e.g. "google swiftshader (fallback)". */
  get adapterName(): string {
    const a = this.adapterInfo;
    return [a.vendor, a.architecture, a.device || a.description].filter(Boolean).join(' ') + (a.isFallback ? ' (fallback)' : '');
  }

  /** True once the device is lost; every further GPU call throws DeviceLostError. */
  get isLost(): boolean {
    return this.lostInfo !== null;
  }

  /**
   * False for allocation-only measurements (bench/vae-memory.ts --allocation-only): every dispatch is still
   * validated and recorded (pipeline, bind group, Params) and every tensor allocated as usual, but its
   * workgroups are not launched, so the results are undefined. Copies and clears still run. Default true.
   */
  executeDispatches = true;

  /** Total dispatches recorded since creation (for benchmarks: dispatches per network call). */
  get dispatches(): number {
    return this.dispatchCount;
  }

  /** ArgumentError when `t` was made by another runtime (another device: its buffer cannot be bound here). */
  assertOwn(t: Tensor, where: string): void {
    if (t.rt !== this) throw new ArgumentError(where, `tensor '${t.label}' belongs to another runtime (GPU device); copy it through the CPU (read, then upload)`);
  }

  /** Throws DeviceLostError if the device was lost. */
  assertAlive(): void {
    if (this.lostInfo) throw new DeviceLostError(this.lostInfo.reason, `GPU device lost: ${this.lostInfo.message || this.lostInfo.reason}`);
  }

  // ---------------------------------------------------------------- kernels

  /** Reflected layout of a WGSL source (cached by label). */
  shaderLayout(label: string, code: string): ShaderLayout {
    let l = this.layouts.get(label);
    if (!l) this.layouts.set(label, (l = reflectShader(label, code)));
    return l;
  }

  /**
   * The pipeline for `code` with the given override constants, compiled once and cached.
   * `stem` names the shader file; only overrides the module declares may be passed.
   */
  kernel(stem: string, code: string, constants: OverrideValues = {}, entryPoint = 'main'): Kernel {
    const keys = Object.keys(constants).sort();
    const key = `${stem}:${entryPoint}:${keys.map((k) => `${k}=${+constants[k]!}`).join(',')}`;
    const hit = this.kernels.get(key);
    if (hit) return hit;
    this.assertAlive();
    const layout = this.shaderLayout(stem, code);
    for (const k of keys) {
      if (!layout.overrides.has(k)) throw new ShaderCompileError(stem, `override '${k}' is not declared by the shader`);
    }
    if (!layout.entryPoints.includes(entryPoint)) throw new ShaderCompileError(stem, `no compute entry point '${entryPoint}'`);
    if (layout.params && layout.params.size > UNIFORM_SLICE) {
      throw new ShaderCompileError(stem, `Params is ${layout.params.size} bytes; at most ${UNIFORM_SLICE} are supported`);
    }
    const label = `${stem}${entryPoint === 'main' ? '' : '.' + entryPoint}${keys.length ? `[${keys.map((k) => `${k}=${+constants[k]!}`).join(',')}]` : ''}`;
    const module = this.device.createShaderModule({ label, code });
    const numeric: Record<string, number> = {};
    for (const k of keys) numeric[k] = +constants[k]!;
    this.device.pushErrorScope('validation');
    const bindLayout = this.bindLayoutFor(layout);
    const pipeline = this.device.createComputePipeline({
      label,
      layout: bindLayout.pipelineLayout,
      compute: { module, entryPoint, constants: numeric },
    });
    const err = this.device.popErrorScope();
    this.pendingErrors.push(
      err.then(async (e) => {
        if (!e) return null;
        const info = await module.getCompilationInfo();
        const msgs = info.messages.map((m) => `${m.type} ${m.lineNum}:${m.linePos} ${m.message}`).join('\n');
        return new GPUValidationErrorWrapper(label, `${e.message}${msgs ? '\n' + msgs : ''}`);
      }),
    );
    const k: Kernel = { label, pipeline, layout, bindLayout };
    this.kernels.set(key, k);
    return k;
  }

  /** Bind-group cache counters (for tests and benchmarks: hits across repeated calls). */
  get bindGroupStats(): BindGroupStats {
    return { ...this.bgStats, size: this.bindGroups.size };
  }

  /** Number of compiled pipelines (for tests: pipelines are compiled once). */
  get kernelCount(): number {
    return this.kernels.size;
  }

  /**
   * Records one dispatch. `bindings` are the shader's storage bindings in binding order; `params` fills
   * its `Params` uniform (every field required). `workgroups` must each be ≤ maxComputeWorkgroupsPerDimension.
   */
  dispatch(kernel: Kernel, bindings: readonly Binding[], params: ParamValues | null, workgroups: readonly [number, number?, number?]): void {
    this.assertAlive();
    const { layout, label } = kernel;
    if (bindings.length !== layout.storage.length) {
      throw new ShapeError(label, `expects ${layout.storage.length} storage bindings, got ${bindings.length}`);
    }
    const [x, y = 1, z = 1] = workgroups;
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) throw new ShapeError(label, `dispatch (${x}, ${y}, ${z}) exceeds ${maxWg} workgroups per dimension`);
    if (x === 0 || y === 0 || z === 0) return;
    const buffers: GPUBuffer[] = new Array(bindings.length);
    let key = `${kernel.bindLayout.id}:`;
    for (let i = 0; i < bindings.length; i++) {
      const b = bindings[i]!;
      if (b instanceof Tensor) this.assertOwn(b, label);
      const buffer = b instanceof Tensor ? b.buffer : b;
      buffers[i] = buffer;
      key += `${this.bufferId(buffer)},`;
    }
    let offset = -1;
    if (layout.params) {
      if (!params) throw new ShapeError(label, 'Params values are required');
      if (this.uniformOffset + UNIFORM_SLICE > this.arenaBytes) this.flush();
      offset = this.uniformOffset;
      packParams(label, layout.params, params, this.arenaStaging, offset);
      this.uniformOffset += UNIFORM_SLICE;
    }
    const bindGroup = this.bindGroupFor(kernel, key, buffers);
    const pass = this.openPass();
    pass.setPipeline(kernel.pipeline);
    if (offset >= 0) pass.setBindGroup(0, bindGroup, [offset]);
    else pass.setBindGroup(0, bindGroup);
    if (this.executeDispatches) pass.dispatchWorkgroups(x, y, z);
    this.dispatchCount++;
    if (++this.pending >= this.maxPending) this.flush();
  }

  /**
   * Splits `n` workgroups into a 2-D grid within the per-dimension limit. Kernels rebuild the linear id
   * as `wid.x + wid.y * num_workgroups.x` and return when it is ≥ n.
   */
  grid(n: number): [number, number, number] {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (n <= max) return [Math.max(1, n), 1, 1];
    const y = Math.ceil(n / max);
    return [Math.ceil(n / y), y, 1];
  }

  // ---------------------------------------------------------------- tensors

  /** An uninitialised tensor from the pool. */
  empty(shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    this.assertAlive();
    checkShape(shape, label);
    const a = this.allocator.alloc(storageBytes(numel(shape), dtype), label);
    return this.adopt(new Tensor(this, [...shape], dtype, a, label));
  }

  /** A tensor of zeros. */
  zeros(shape: readonly number[], dtype: DType = 'f32', label = 'zeros'): Tensor {
    const t = this.empty(shape, dtype, label);
    this.encoderForCopy().clearBuffer(t.buffer, 0, Math.ceil(t.byteLength / 4) * 4);
    return t;
  }

  /**
   * Uploads values. f32 data for dtype 'f32'; for 'f16' either float values (converted) or raw f16 bits
   * (Uint16Array). `persistent` tensors (weights) bypass the pool.
   */
  upload(
    data: Float32Array | Uint16Array | ArrayLike<number>,
    shape: readonly number[],
    opts: { dtype?: DType; label?: string; persistent?: boolean } = {},
  ): Tensor {
    this.assertAlive();
    const dtype = opts.dtype ?? 'f32';
    const label = opts.label ?? 'upload';
    checkShape(shape, label);
    const n = numel(shape);
    if (data.length !== n) throw new ShapeError(`upload(${label})`, `${data.length} values for shape [${shape}] (${n} elements)`);
    let bytes: ArrayBufferView;
    if (dtype === 'f32') bytes = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    else bytes = data instanceof Uint16Array ? data : f32ArrayToF16(data);
    const a = this.allocator.alloc(storageBytes(n, dtype), label, !opts.persistent);
    // A pooled buffer may still be read by recorded-but-unsubmitted work: writeBuffer runs at once in
    // queue order, so submit that work first.
    if (this.pending > 0) this.flush();
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(a.buffer, 0, padded.buffer, padded.byteOffset, padded.byteLength);
    return this.adopt(new Tensor(this, [...shape], dtype, a, label));
  }

  /** Copies `src` into a new tensor (same dtype). */
  clone(src: Tensor, label = src.label): Tensor {
    this.assertOwn(src, 'clone');
    const t = this.empty(src.shape, src.dtype, label);
    this.encoderForCopy().copyBufferToBuffer(src.buffer, 0, t.buffer, 0, Math.ceil(src.byteLength / 4) * 4);
    return t;
  }

  /** Copies `bytes` between tensors' buffers at byte offsets (multiples of 4). */
  copy(src: Tensor, srcOffset: number, dst: Tensor, dstOffset: number, bytes: number): void {
    this.assertOwn(src, 'copy');
    this.assertOwn(dst, 'copy');
    this.encoderForCopy().copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
  }

  /** Reads a tensor back as float32 (f16 storage is decoded). Submits pending work and waits for it. */
  async read(t: Tensor): Promise<Float32Array> {
    this.assertAlive();
    this.assertOwn(t, 'read');
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    const staging = this.device.createBuffer({ label: `read(${t.label})`, size: Math.max(4, bytes), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.encoderForCopy().copyBufferToBuffer(t.buffer, 0, staging, 0, bytes);
    this.flush();
    try {
      await Promise.race([staging.mapAsync(GPUMapMode.READ), this.lostPromise]);
      this.assertAlive();
    } catch (e) {
      staging.destroy();
      this.assertAlive();
      throw new FmBoostError(`read(${t.label}) failed: ${(e as Error).message}`, { cause: e });
    }
    const raw = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    await this.checkErrors();
    if (t.dtype === 'f32') return new Float32Array(raw, 0, t.numel);
    return f16ArrayToF32(new Uint16Array(raw, 0, t.numel));
  }

  /** Submits recorded work and waits until the GPU has finished it; surfaces deferred GPU errors. */
  async sync(): Promise<void> {
    this.assertAlive();
    this.flush();
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.lostPromise]);
    this.assertAlive();
    await this.checkErrors();
  }

  /** Submits recorded work (does not wait). */
  flush(): void {
    if (!this.encoder || this.lostInfo) return;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    // Uniforms of this batch: one writeBuffer, queued before the submit that reads them. Reusing the arena
    // in the next batch is safe: that batch's writeBuffer is ordered after this submit.
    if (this.uniformOffset > 0) this.device.queue.writeBuffer(this.uniformArena(), 0, this.arenaStaging.buffer, 0, this.uniformOffset);
    this.uniformOffset = 0;
    const cb = this.encoder.finish();
    this.encoder = null;
    this.pending = 0;
    this.device.queue.submit([cb]);
  }

  // ---------------------------------------------------------------- lifetime

  /**
   * Runs `fn`, then disposes every tensor created inside it except those reachable from its result
   * (tensors, arrays and plain objects are searched). Nested scopes are allowed.
   */
  scope<R>(fn: () => R): R {
    this.scopes.push(new Set());
    let result: R;
    try {
      result = fn();
    } catch (e) {
      for (const t of this.scopes.pop()!) t.dispose();
      throw e;
    }
    if (result instanceof Promise) {
      this.scopes.pop();
      throw new FmBoostError('Runtime.scope: the function returned a Promise; use scopeAsync');
    }
    this.closeScope(result);
    return result;
  }

  /** Async variant of `scope`: only one async scope should be open per runtime at a time. */
  async scopeAsync<R>(fn: () => Promise<R>): Promise<R> {
    const set = new Set<Tensor>();
    this.scopes.push(set);
    let result: R;
    try {
      result = await fn();
    } catch (e) {
      this.removeScope(set);
      for (const t of set) t.dispose();
      throw e;
    }
    this.removeScope(set);
    const keep = new Set<Tensor>();
    collectTensors(result, keep);
    for (const t of set) if (!keep.has(t)) t.dispose();
    const parent = this.scopes[this.scopes.length - 1];
    if (parent) for (const t of keep) parent.add(t);
    return result;
  }

  /** Removes a tensor from the enclosing scopes, so it outlives them (like tf.keep). */
  keep<T extends Tensor>(t: T): T {
    for (const s of this.scopes) s.delete(t);
    return t;
  }

  /** @internal registers a new tensor in the innermost scope. */
  adopt(t: Tensor): Tensor {
    this.scopes[this.scopes.length - 1]?.add(t);
    return t;
  }

  /** @internal */
  release(t: Tensor): void {
    for (const s of this.scopes) s.delete(t);
    if (this.lostInfo) return;
    this.allocator.release(t.allocation as Allocation);
  }

  memory(): MemoryStats {
    return this.allocator.stats();
  }

  /** Submits pending work and destroys the device (final: the runtime cannot be restored). */
  destroy(): void {
    this.destroyedByUs = true;
    this.flush();
    this.allocator.trim();
    this.clearBindGroups();
    this.arena?.destroy();
    this.arena = null;
    this.device.destroy();
  }

  // ---------------------------------------------------------------- internals

  /** The uniform arena buffer of the current device (made on first use). */
  private uniformArena(): GPUBuffer {
    this.arena ??= this.device.createBuffer({ label: 'uniforms', size: this.arenaBytes, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    return this.arena;
  }

  /** The explicit layout for a shader's binding kinds, shared by every kernel with the same kinds. */
  private bindLayoutFor(layout: ShaderLayout): BindLayout {
    const kinds: string[] = [];
    for (const s of layout.storage) kinds[s.binding] = s.readOnly ? 'r' : 'w';
    if (layout.params) kinds[layout.params.binding] = 'u';
    const sig = kinds.join('');
    let l = this.bindLayouts.get(sig);
    if (l) return l;
    const entries: GPUBindGroupLayoutEntry[] = kinds.map((k, binding) => ({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: k === 'u' ? { type: 'uniform', hasDynamicOffset: true } : { type: k === 'r' ? 'read-only-storage' : 'storage' },
    }));
    const bgl = this.device.createBindGroupLayout({ label: `fmboost.bind[${sig}]`, entries });
    l = { id: ++this.bindLayoutSerial, layout: bgl, pipelineLayout: this.device.createPipelineLayout({ label: `fmboost.layout[${sig}]`, bindGroupLayouts: [bgl] }) };
    this.bindLayouts.set(sig, l);
    return l;
  }

  /** A never-reused number for a buffer (bind-group cache keys). */
  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = ++this.bufferSerial));
    return id;
  }

  /** The cached bind group for `key` (made on a miss), marked most recently used. */
  private bindGroupFor(kernel: Kernel, key: string, buffers: GPUBuffer[]): GPUBindGroup {
    const hit = this.bindGroups.get(key);
    if (hit) {
      this.bgStats.hits++;
      this.bindGroups.delete(key);
      this.bindGroups.set(key, hit);
      return hit.group;
    }
    const { layout } = kernel;
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({ binding: layout.storage[i]!.binding, resource: { buffer } }));
    if (layout.params) entries.push({ binding: layout.params.binding, resource: { buffer: this.uniformArena(), offset: 0, size: UNIFORM_SLICE } });
    const group = this.device.createBindGroup({ label: kernel.label, layout: kernel.bindLayout.layout, entries });
    this.bgStats.created++;
    if (this.maxBindGroups === 0) return group;
    if (this.bindGroups.size >= this.maxBindGroups) {
      const oldest = this.bindGroups.keys().next().value as string;
      this.dropBindGroup(oldest);
      this.bgStats.evicted++;
    }
    this.bindGroups.set(key, { group, buffers });
    for (const b of buffers) {
      let set = this.groupsByBuffer.get(b);
      if (!set) this.groupsByBuffer.set(b, (set = new Set()));
      set.add(key);
    }
    return group;
  }

  private dropBindGroup(key: string): void {
    const e = this.bindGroups.get(key);
    if (!e) return;
    this.bindGroups.delete(key);
    for (const b of e.buffers) {
      const set = this.groupsByBuffer.get(b);
      if (!set) continue;
      set.delete(key);
      if (!set.size) this.groupsByBuffer.delete(b);
    }
  }

  /** Drops every cached bind group that binds `buffer` (called just before the buffer is destroyed). */
  private forgetBuffer(buffer: GPUBuffer): void {
    const keys = this.groupsByBuffer.get(buffer);
    if (!keys) return;
    for (const k of [...keys]) {
      this.dropBindGroup(k);
      this.bgStats.invalidated++;
    }
    this.groupsByBuffer.delete(buffer);
  }

  private clearBindGroups(): void {
    this.bindGroups.clear();
    this.groupsByBuffer.clear();
  }

  private openPass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'fmboost' });
    if (!this.pass) this.pass = this.encoder.beginComputePass({ label: 'fmboost.pass' });
    return this.pass;
  }

  /** The encoder with no compute pass open, for copies and clears. */
  private encoderForCopy(): GPUCommandEncoder {
    this.assertAlive();
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'fmboost' });
    this.pending++;
    return this.encoder;
  }

  private async checkErrors(): Promise<void> {
    if (!this.pendingErrors.length) return;
    const errs = await Promise.all(this.pendingErrors.splice(0));
    const oom = errs.find((e) => e instanceof GpuOutOfMemory) as GpuOutOfMemory | undefined;
    if (oom) {
      throw new OutOfMemoryError(oom.bytes, Math.max(0, this.allocator.budgetBytes - this.allocator.stats().liveBytes), `the GPU could not allocate '${oom.label}' (${oom.detail})`);
    }
    const bad = errs.find((e) => e instanceof GPUValidationErrorWrapper) as GPUValidationErrorWrapper | undefined;
    if (bad) throw new ShaderCompileError(bad.label, bad.detail);
  }

  // ---------------------------------------------------------------- jobs

  private jobTail: Promise<unknown> = Promise.resolve();

  /**
   * Runs `job` when every job queued before it has finished (FIFO). Public pipeline entry points run
   * through here, so two generations started at once on one runtime queue instead of sharing scopes and
   * the command stream. An abort while waiting rejects with AbortError without running the job.
   */
  exclusive<T>(where: string, job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const prev = this.jobTail;
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    this.jobTail = prev.then(() => done);
    return (async () => {
      try {
        await waitOrAbort(prev, signal, where);
        if (this.lostInfo && this.canRestore) await this.restore();
        this.assertAlive();
        return await job();
      } finally {
        release();
      }
    })();
  }

  private closeScope(result: unknown): void {
    const set = this.scopes.pop()!;
    const keep = new Set<Tensor>();
    collectTensors(result, keep);
    for (const t of set) if (!keep.has(t)) t.dispose();
    const parent = this.scopes[this.scopes.length - 1];
    if (parent) for (const t of keep) if (set.has(t)) parent.add(t);
  }

  private removeScope(set: Set<Tensor>): void {
    const i = this.scopes.lastIndexOf(set);
    if (i >= 0) this.scopes.splice(i, 1);
  }
}

class GpuOutOfMemory {
  constructor(readonly label: string, readonly bytes: number, readonly detail: string) {}
}

/** Resolves when `p` settles; rejects with AbortError as soon as `signal` aborts. */
function waitOrAbort(p: Promise<unknown>, signal: AbortSignal | undefined, where: string): Promise<void> {
  if (!signal) return p.then(() => undefined, () => undefined);
  if (signal.aborted) return Promise.reject(new AbortError(where));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(new AbortError(where));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
    );
  });
}

class GPUValidationErrorWrapper {
  constructor(readonly label: string, readonly detail: string) {}
  get message(): string {
    return this.detail;
  }
}

function collectTensors(v: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 6 || v === null || typeof v !== 'object') return;
  if (v instanceof Tensor) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collectTensors(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collectTensors(x, out, depth + 1);
}

function checkShape(shape: readonly number[], label: string): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ShapeError(label, `invalid shape [${shape}]`);
  }
}

function padTo4(v: ArrayBufferView): Uint8Array {
  const out = new Uint8Array(Math.ceil(v.byteLength / 4) * 4);
  out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  return out;
}

export { OutOfMemoryError };
