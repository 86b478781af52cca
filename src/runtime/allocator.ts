import { OutOfMemoryError, fmtBytes } from './errors.js';

/** A GPU buffer owned by the allocator, shared by the tensors (views) that reference it. */
export interface Allocation {
  /** Replaced (with `owner`) when a lost device's weights are re-uploaded to a new one. */
  buffer: GPUBuffer;
  readonly bytes: number;
  refs: number;
  /** Weights and other long-lived buffers are never pooled, only destroyed. */
  readonly pooled: boolean;
  /** The allocator (hence the device) the buffer belongs to. */
  owner: BufferAllocator;
}

export interface MemoryStats {
  /** Bytes of buffers currently held by tensors. */
  liveBytes: number;
  /** Bytes of free buffers kept for reuse. */
  pooledBytes: number;
  /** liveBytes + pooledBytes: what the GPU holds for this runtime. */
  allocatedBytes: number;
  /** Highest allocatedBytes since creation or the last resetPeak(). */
  peakBytes: number;
  /** Highest liveBytes since creation or the last resetPeak(). */
  peakLiveBytes: number;
  /** Number of GPUBuffers that exist (live + pooled). */
  bufferCount: number;
  /** The budget allocations must stay within. */
  budgetBytes: number;
}

const ALIGN = 256;

/**
 * Size-bucketed buffer pool (exact sizes rounded to 256 B) with live/peak accounting and a hard budget.
 * Buffers are STORAGE | COPY_SRC | COPY_DST. Freed buffers go back to the pool; when a new allocation
 * would exceed the budget, pooled buffers are destroyed first, then OutOfMemoryError is thrown.
 *
 * A pooled allocation takes the oldest free buffer of its size (lowest serial), so which buffer it gets
 * depends only on the set of free buffers, not on the order they were freed in: a repeated call (a
 * denoising step) gets the same buffers as the one before, and the runtime's bind groups for them are reused.
 */
export class BufferAllocator {
  /** Free buffers per size, highest serial first (the oldest is popped from the end). */
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly serials = new WeakMap<GPUBuffer, number>();
  private live = 0;
  private pooledBytes = 0;
  private peak = 0;
  private peakLive = 0;
  private count = 0;
  private serial = 0;

  constructor(
    private readonly device: GPUDevice,
    readonly maxBufferBytes: number,
    public budgetBytes: number,
    /** Called before pooled buffers are destroyed, so pending GPU work that uses them is submitted. */
    private readonly beforeDestroy: () => void,
    /** Receives the promise of each new buffer's out-of-memory error scope (checked at the next sync/read). */
    private readonly onScope: (p: Promise<GPUError | null>, bytes: number, label: string) => void = () => {},
    /** Called with each buffer just before it is destroyed (the runtime drops bind groups that reference it). */
    private readonly onDestroy: (buffer: GPUBuffer) => void = () => {},
  ) {}

  /** Allocates `bytes` (rounded up to 256). Throws OutOfMemoryError when over the budget or a device limit. */
  alloc(bytes: number, label: string, pooled = true): Allocation {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    if (size > this.maxBufferBytes) {
      throw new OutOfMemoryError(size, this.maxBufferBytes, `'${label}' needs one buffer of ${fmtBytes(size)}, over the device's ${fmtBytes(this.maxBufferBytes)} binding limit`);
    }
    if (pooled) {
      const list = this.free.get(size);
      const buf = list?.pop();
      if (buf) {
        this.pooledBytes -= size;
        this.live += size;
        this.track();
        return { buffer: buf, bytes: size, refs: 1, pooled, owner: this };
      }
    }
    if (this.live + this.pooledBytes + size > this.budgetBytes) this.trim(this.live + this.pooledBytes + size - this.budgetBytes);
    if (this.live + size > this.budgetBytes) {
      throw new OutOfMemoryError(size, Math.max(0, this.budgetBytes - this.live), `'${label}' does not fit the memory budget of ${fmtBytes(this.budgetBytes)} (${fmtBytes(this.live)} in use)`);
    }
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({
      label: `${label}#${++this.serial}`,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    this.onScope(this.device.popErrorScope(), size, label);
    this.serials.set(buffer, this.serial);
    this.count++;
    this.live += size;
    this.track();
    return { buffer, bytes: size, refs: 1, pooled, owner: this };
  }

  /** Drops one reference; at zero the buffer returns to the pool (or is destroyed if not pooled). */
  release(a: Allocation): void {
    if (a.refs <= 0 || a.owner !== this) return;
    if (--a.refs > 0) return;
    this.live -= a.bytes;
    if (a.pooled) {
      let list = this.free.get(a.bytes);
      if (!list) this.free.set(a.bytes, (list = []));
      // Keep the list sorted by descending serial (binary search for the insertion point).
      const id = this.serials.get(a.buffer) ?? 0;
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((this.serials.get(list[mid]!) ?? 0) > id) lo = mid + 1;
        else hi = mid;
      }
      list.splice(lo, 0, a.buffer);
      this.pooledBytes += a.bytes;
    } else {
      this.beforeDestroy();
      this.onDestroy(a.buffer);
      a.buffer.destroy();
      this.count--;
    }
  }

  /** Destroys pooled buffers until at least `bytes` are freed (all of them when bytes is Infinity). */
  trim(bytes = Infinity): void {
    if (this.pooledBytes === 0) return;
    this.beforeDestroy();
    let freed = 0;
    // Largest first: frees the most with the fewest destroys.
    const sizes = [...this.free.keys()].sort((a, b) => b - a);
    for (const s of sizes) {
      const list = this.free.get(s)!;
      while (list.length && freed < bytes) {
        const b = list.pop()!;
        this.onDestroy(b);
        b.destroy();
        this.count--;
        this.pooledBytes -= s;
        freed += s;
      }
      if (!list.length) this.free.delete(s);
      if (freed >= bytes) break;
    }
  }

  stats(): MemoryStats {
    return {
      liveBytes: this.live,
      pooledBytes: this.pooledBytes,
      allocatedBytes: this.live + this.pooledBytes,
      peakBytes: this.peak,
      peakLiveBytes: this.peakLive,
      bufferCount: this.count,
      budgetBytes: this.budgetBytes,
    };
  }

  resetPeak(): void {
    this.peak = this.live + this.pooledBytes;
    this.peakLive = this.live;
  }

  /** Forgets every buffer (after device loss: they are gone with the device). */
  abandon(): void {
    this.free.clear();
    this.live = 0;
    this.pooledBytes = 0;
    this.count = 0;
  }

  private track(): void {
    this.peak = Math.max(this.peak, this.live + this.pooledBytes);
    this.peakLive = Math.max(this.peakLive, this.live);
  }
}
