/**
 * Every error this library throws is an `FmBoostError`. Each subclass names what failed (the op, the
 * shape, the key, the file) and, where there is one, what to do about it. `code` is stable for programs.
 */
export class FmBoostError extends Error {
  readonly code: string = 'FMBOOST_ERROR';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No WebGPU in this environment, or no adapter/device could be obtained. */
export class WebGPUUnavailableError extends FmBoostError {
  override readonly code = 'WEBGPU_UNAVAILABLE';
}

/** The GPU device was lost (driver reset, `device.destroy()`, tab backgrounded too long…). */
export class DeviceLostError extends FmBoostError {
  override readonly code = 'DEVICE_LOST';
  constructor(readonly reason: string, message?: string) {
    super(message ?? `GPU device lost (${reason}). Call runtime.restore() or run again: the runtime re-acquires a device.`);
  }
}

/** An allocation would exceed the caller's budget, a device limit, or the GPU ran out of memory. */
export class OutOfMemoryError extends FmBoostError {
  override readonly code = 'OUT_OF_MEMORY';
  constructor(
    readonly requestedBytes: number,
    readonly availableBytes: number,
    detail: string,
  ) {
    super(
      `out of GPU memory: ${detail} (requested ${fmtBytes(requestedBytes)}, available ${fmtBytes(availableBytes)}). ` +
        'Use a smaller image or batch, tiled decoding, or a larger memory budget.',
    );
  }
}

/** A tensor has the wrong rank, size, dtype, or does not match another operand. */
export class ShapeError extends FmBoostError {
  override readonly code = 'SHAPE';
  constructor(readonly op: string, detail: string) {
    super(`${op}: ${detail}`);
  }
}

/** A public function got an invalid argument (not a shape problem): NaN, unknown option, bad range. */
export class ArgumentError extends FmBoostError {
  override readonly code = 'ARGUMENT';
  constructor(readonly where: string, detail: string) {
    super(`${where}: ${detail}`);
  }
}

/** A weight is missing, unexpected, mis-shaped, of an unsupported dtype or holds NaN/Inf. */
export class WeightError extends FmBoostError {
  override readonly code = 'WEIGHT';
  constructor(readonly key: string, detail: string) {
    super(`weight '${key}': ${detail}`);
  }
}

/** A safetensors file is malformed. */
export class SafetensorsError extends FmBoostError {
  override readonly code = 'SAFETENSORS';
  constructor(readonly file: string, detail: string) {
    super(`safetensors '${file}': ${detail}`);
  }
}

/** A PyTorch checkpoint is malformed or asks to run code (refused, nothing executed). */
export class CheckpointError extends FmBoostError {
  override readonly code = 'CHECKPOINT';
  constructor(readonly file: string, detail: string) {
    super(`checkpoint '${file}': ${detail}`);
  }
}

/** A config file (config.json, model_index.json, CFM yaml-as-json) is malformed or unsupported. */
export class ConfigError extends FmBoostError {
  override readonly code = 'CONFIG';
  constructor(readonly file: string, detail: string) {
    super(`config '${file}': ${detail}`);
  }
}

/** A WGSL shader failed to compile or a pipeline failed validation. */
export class ShaderCompileError extends FmBoostError {
  override readonly code = 'SHADER_COMPILE';
  constructor(readonly label: string, detail: string) {
    super(`shader '${label}': ${detail}`);
  }
}

/** Work was cancelled through an AbortSignal. */
export class AbortError extends FmBoostError {
  override readonly code = 'ABORTED';
  constructor(where: string) {
    super(`${where}: aborted`);
  }
}

/** A stage produced NaN or Inf values. */
export class NumericalError extends FmBoostError {
  override readonly code = 'NUMERICAL';
  constructor(readonly stage: string, detail: string) {
    super(`${stage}: ${detail}`);
  }
}

/** A network fetch or a storage (Cache API / OPFS) operation failed. */
export class IOError extends FmBoostError {
  override readonly code = 'IO';
  constructor(readonly source: string, detail: string, options?: { cause?: unknown }) {
    super(`${source}: ${detail}`, options);
  }
}

/** Throws `AbortError` when the signal is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, where: string): void {
  if (signal?.aborted) throw new AbortError(where);
}

export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
