/**
 * The side-by-side benchmark itself, shared by Node (bench/peers.ts) and the browser page (bench/peers/page.ts):
 * the same cases on this project's kernels, tfjs-backend-webgpu and onnxruntime-web's WebGPU EP, on one GPUDevice,
 * with GPU-resident inputs and every timed run ending in a real GPU sync. Each result is checked against a float64
 * CPU reference on sampled output elements, so a fast wrong answer is flagged rather than ranked.
 */
import { conv2d } from '../../src/ops/conv2d.js';
import { groupNorm } from '../../src/ops/group-norm.js';
import { matmul } from '../../src/ops/matmul.js';
import { multiHeadAttention } from '../../src/ops/attention.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import copyWgsl from '../copy.wgsl';
import peakWgsl from '../peak.wgsl';
import { onnxModel, type OnnxGraph } from './onnx.js';

// ------------------------------------------------------------------ cases

export type CaseKind =
  | { kind: 'matmul'; M: number; K: number; N: number }
  | { kind: 'conv'; Cin: number; H: number; W: number; Cout: number }
  | { kind: 'groupnorm'; C: number; H: number; W: number; G: number }
  | { kind: 'attention'; H: number; L: number; D: number };

export interface PeerCase {
  name: string;
  spec: CaseKind;
  /** FLOPs per run (multiply-add = 2), or bytes moved (read + write once) for memory-bound cases. */
  flops?: number;
  bytes?: number;
}

export const CASES: PeerCase[] = [
  { name: 'matmul 1024³', spec: { kind: 'matmul', M: 1024, K: 1024, N: 1024 }, flops: 2 * 1024 ** 3 },
  { name: 'matmul 4096×320×320', spec: { kind: 'matmul', M: 4096, K: 320, N: 320 }, flops: 2 * 4096 * 320 * 320 },
  { name: 'conv3x3 1×128×64×64→128', spec: { kind: 'conv', Cin: 128, H: 64, W: 64, Cout: 128 }, flops: 2 * 128 * 64 * 64 * 128 * 9 },
  { name: 'conv3x3 1×320×32×32→320', spec: { kind: 'conv', Cin: 320, H: 32, W: 32, Cout: 320 }, flops: 2 * 320 * 32 * 32 * 320 * 9 },
  { name: 'conv3x3 1×4×64×64→320', spec: { kind: 'conv', Cin: 4, H: 64, W: 64, Cout: 320 }, flops: 2 * 4 * 64 * 64 * 320 * 9 },
  { name: 'group norm(32)+SiLU 1×512×64×64', spec: { kind: 'groupnorm', C: 512, H: 64, W: 64, G: 32 }, bytes: 2 * 4 * 512 * 64 * 64 },
  { name: 'attention 8 heads × 1024 × 40', spec: { kind: 'attention', H: 8, L: 1024, D: 40 }, flops: 4 * 8 * 1024 * 1024 * 40 },
];

/** Host inputs of a case in this project's layouts (NCHW, token-major [L, H·D]) and a float64 reference per output element. */
export interface CaseData {
  inputs: Record<string, Float32Array>;
  outLen: number;
  ref(i: number): number;
}

function rand(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return v;
}

export function caseData(c: PeerCase): CaseData {
  const s = c.spec;
  switch (s.kind) {
    case 'matmul': {
      const a = rand(s.M * s.K, 1, 1);
      const b = rand(s.K * s.N, 2, 1 / Math.sqrt(s.K));
      return {
        inputs: { a, b },
        outLen: s.M * s.N,
        ref(i) {
          const m = Math.floor(i / s.N);
          const n = i % s.N;
          let acc = 0;
          for (let k = 0; k < s.K; k++) acc += a[m * s.K + k]! * b[k * s.N + n]!;
          return acc;
        },
      };
    }
    case 'conv': {
      const x = rand(s.Cin * s.H * s.W, 3, 1);
      const w = rand(s.Cout * s.Cin * 9, 4, 1 / Math.sqrt(s.Cin * 9));
      const bias = rand(s.Cout, 5, 0.1);
      return {
        inputs: { x, w, bias },
        outLen: s.Cout * s.H * s.W,
        ref(i) {
          const co = Math.floor(i / (s.H * s.W));
          const y = Math.floor(i / s.W) % s.H;
          const xx = i % s.W;
          let acc = bias[co]!;
          for (let ci = 0; ci < s.Cin; ci++)
            for (let ky = 0; ky < 3; ky++)
              for (let kx = 0; kx < 3; kx++) {
                const iy = y + ky - 1;
                const ix = xx + kx - 1;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                acc += x[(ci * s.H + iy) * s.W + ix]! * w[((co * s.Cin + ci) * 3 + ky) * 3 + kx]!;
              }
          return acc;
        },
      };
    }
    case 'groupnorm': {
      const HW = s.H * s.W;
      const x = rand(s.C * HW, 6, 2);
      for (let i = 0; i < x.length; i++) x[i]! += 0.5; // a non-zero mean, as real activations have
      const gamma = rand(s.C, 7, 1).map((g) => 1 + 0.5 * g);
      const beta = rand(s.C, 8, 0.2);
      let stats: Float64Array | null = null;
      const per = (s.C / s.G) * HW;
      return {
        inputs: { x, gamma, beta },
        outLen: s.C * HW,
        ref(i) {
          if (!stats) {
            stats = new Float64Array(2 * s.G);
            for (let g = 0; g < s.G; g++) {
              let m = 0;
              for (let j = 0; j < per; j++) m += x[g * per + j]!;
              m /= per;
              let v = 0;
              for (let j = 0; j < per; j++) v += (x[g * per + j]! - m) ** 2;
              stats[2 * g] = m;
              stats[2 * g + 1] = 1 / Math.sqrt(v / per + 1e-5);
            }
          }
          const c = Math.floor(i / HW);
          const g = Math.floor(i / per);
          const y = (x[i]! - stats[2 * g]!) * stats[2 * g + 1]! * gamma[c]! + beta[c]!;
          return y / (1 + Math.exp(-y));
        },
      };
    }
    case 'attention': {
      const C = s.H * s.D;
      const [q, k, v] = [9, 10, 11].map((seed) => rand(s.L * C, seed, 1.5)) as [Float32Array, Float32Array, Float32Array];
      const rows = new Map<number, Float64Array>();
      const scale = 1 / Math.sqrt(s.D);
      return {
        inputs: { q, k, v },
        outLen: s.L * C,
        ref(i) {
          const r = Math.floor(i / C);
          const h = Math.floor((i % C) / s.D);
          const key = r * s.H + h;
          let out = rows.get(key);
          if (!out) {
            const sc = new Float64Array(s.L);
            let mx = -Infinity;
            for (let j = 0; j < s.L; j++) {
              let a = 0;
              for (let d = 0; d < s.D; d++) a += q[r * C + h * s.D + d]! * k[j * C + h * s.D + d]!;
              sc[j] = a * scale;
              mx = Math.max(mx, sc[j]!);
            }
            let sum = 0;
            for (let j = 0; j < s.L; j++) sum += sc[j] = Math.exp(sc[j]! - mx);
            out = new Float64Array(s.D);
            for (let j = 0; j < s.L; j++) for (let d = 0; d < s.D; d++) out[d]! += (sc[j]! / sum) * v[j * C + h * s.D + d]!;
            rows.set(key, out);
          }
          return out[(i % C) % s.D]!;
        },
      };
    }
  }
}

/** Output-element indices checked against the reference: a deterministic spread over the whole output. */
function sampleIndices(n: number, count: number): number[] {
  const out: number[] = [];
  let s = 12345;
  for (let j = 0; j < count; j++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(Math.min(n - 1, Math.floor(((j + s / 2 ** 32) * n) / count)));
  }
  return out;
}

// ------------------------------------------------------------------ layout helpers (host side)

/** [Cin, H, W] → [H, W, Cin] */
function chwToHwc(x: Float32Array, C: number, HW: number): Float32Array {
  const o = new Float32Array(x.length);
  for (let c = 0; c < C; c++) for (let p = 0; p < HW; p++) o[p * C + c] = x[c * HW + p]!;
  return o;
}
function hwcToChw(x: Float32Array, C: number, HW: number): Float32Array {
  const o = new Float32Array(x.length);
  for (let c = 0; c < C; c++) for (let p = 0; p < HW; p++) o[c * HW + p] = x[p * C + c]!;
  return o;
}
/** [Cout, Cin, 3, 3] → [3, 3, Cin, Cout] (tfjs filter layout) */
function oihwToHwio(w: Float32Array, O: number, I: number): Float32Array {
  const o = new Float32Array(w.length);
  for (let co = 0; co < O; co++) for (let ci = 0; ci < I; ci++) for (let t = 0; t < 9; t++) o[(t * I + ci) * O + co] = w[(co * I + ci) * 9 + t]!;
  return o;
}
/** token-major [L, H·D] → head-major [H, L, D] */
function tokToHead(x: Float32Array, H: number, L: number, D: number): Float32Array {
  const o = new Float32Array(x.length);
  for (let r = 0; r < L; r++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) o[(h * L + r) * D + d] = x[r * H * D + h * D + d]!;
  return o;
}
function headToTok(x: Float32Array, H: number, L: number, D: number): Float32Array {
  const o = new Float32Array(x.length);
  for (let r = 0; r < L; r++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) o[r * H * D + h * D + d] = x[(h * L + r) * D + d]!;
  return o;
}

// ------------------------------------------------------------------ engines

/** One prepared case on one engine: `run` records and submits one call and resolves after the GPU finished it. */
export interface Runner {
  run(): Promise<void>;
  /** The last output, in this project's layout. */
  read(): Promise<Float32Array>;
  dispose(): void;
  variant?: string;
}

export interface Engine {
  name: string;
  /** Cases this engine runs; a thrown error becomes an 'n/a' cell with the reason. */
  prepare(c: PeerCase, d: CaseData): Promise<Runner | null>;
}

export function oursEngine(rt: Runtime): Engine {
  return {
    name: 'fmboost',
    async prepare(c, d) {
      const s = c.spec;
      const up = (name: string, shape: number[]) => rt.upload(d.inputs[name]!, shape, { persistent: true });
      let inputs: Tensor[];
      let op: () => Tensor;
      switch (s.kind) {
        case 'matmul': {
          const [a, b] = [up('a', [s.M, s.K]), up('b', [s.K, s.N])];
          inputs = [a, b];
          op = () => matmul(rt, a, b);
          break;
        }
        case 'conv': {
          const [x, w, b] = [up('x', [1, s.Cin, s.H, s.W]), up('w', [s.Cout, s.Cin, 3, 3]), up('bias', [s.Cout])];
          inputs = [x, w, b];
          op = () => conv2d(rt, x, w, b, { padding: 1 });
          break;
        }
        case 'groupnorm': {
          const [x, g, b] = [up('x', [1, s.C, s.H, s.W]), up('gamma', [s.C]), up('beta', [s.C])];
          inputs = [x, g, b];
          op = () => groupNorm(rt, x, s.G, g, b, 1e-5, { silu: true });
          break;
        }
        case 'attention': {
          const C = s.H * s.D;
          const [q, k, v] = ['q', 'k', 'v'].map((n) => up(n, [1, s.L, C])) as [Tensor, Tensor, Tensor];
          inputs = [q, k, v];
          op = () => multiHeadAttention(rt, q, k, v, s.H);
          break;
        }
      }
      let y: Tensor | null = null;
      return {
        async run() {
          y?.dispose();
          y = op();
          await rt.sync();
        },
        read: () => rt.read(y!),
        dispose() {
          y?.dispose();
          for (const t of inputs) t.dispose();
        },
      };
    },
  };
}

/** Minimal structural types of the peers' APIs used here (the packages are loaded dynamically). */
/* eslint-disable @typescript-eslint/no-explicit-any */
type Tf = any;
type Ort = any;

/** tfjs-core with tfjs-backend-webgpu registered on our GPUDevice. */
export async function tfjsEngine(tf: Tf, WebGPUBackend: any, device: GPUDevice): Promise<Engine> {
  const backend = new WebGPUBackend(device);
  // The kernels are registered under the name 'webgpu': replace that backend's factory with one on our device.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => backend, 3);
  if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend(webgpu) failed');
  await tf.ready();
  const sync = async () => {
    backend.endComputePassEncoder();
    backend.ensureCommandEncoderReady();
    backend.submitQueue();
    await device.queue.onSubmittedWorkDone();
  };
  return {
    name: 'tfjs-webgpu',
    async prepare(c, d) {
      const s = c.spec;
      const keep: any[] = [];
      const t = (data: Float32Array, shape: number[]) => {
        const x = tf.tensor(data, shape, 'float32');
        keep.push(x);
        return x;
      };
      let op: () => any;
      let post: (y: Float32Array) => Float32Array = (y) => y;
      switch (s.kind) {
        case 'matmul': {
          const [a, b] = [t(d.inputs.a!, [s.M, s.K]), t(d.inputs.b!, [s.K, s.N])];
          op = () => tf.matMul(a, b);
          break;
        }
        case 'conv': {
          const x = t(chwToHwc(d.inputs.x!, s.Cin, s.H * s.W), [1, s.H, s.W, s.Cin]);
          const filter = t(oihwToHwio(d.inputs.w!, s.Cout, s.Cin), [3, 3, s.Cin, s.Cout]);
          const bias = t(d.inputs.bias!, [s.Cout]);
          op = () => tf.fused.conv2d({ x, filter, strides: 1, pad: 'same', bias });
          post = (y) => hwcToChw(y, s.Cout, s.H * s.W);
          break;
        }
        case 'groupnorm': {
          const x = t(d.inputs.x!, [s.G, (s.C / s.G) * s.H * s.W]);
          const g = t(d.inputs.gamma!, [1, s.C, 1, 1]);
          const b = t(d.inputs.beta!, [1, s.C, 1, 1]);
          op = () =>
            tf.tidy(() => {
              const { mean, variance } = tf.moments(x, 1, true);
              const xn = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5)));
              const n = tf.add(tf.mul(tf.reshape(xn, [1, s.C, s.H, s.W]), g), b);
              return tf.mul(n, tf.sigmoid(n));
            });
          break;
        }
        case 'attention': {
          const [q, k, v] = ['q', 'k', 'v'].map((n) => t(tokToHead(d.inputs[n]!, s.H, s.L, s.D), [s.H, s.L, s.D]));
          const scale = 1 / Math.sqrt(s.D);
          op = () => tf.tidy(() => tf.matMul(tf.softmax(tf.mul(tf.matMul(q, k, false, true), scale)), v));
          post = (y) => headToTok(y, s.H, s.L, s.D);
          break;
        }
      }
      await sync();
      let y: any = null;
      return {
        variant: s.kind === 'attention' ? 'matMul + softmax + matMul' : s.kind === 'groupnorm' ? 'moments + elementwise + sigmoid' : s.kind === 'conv' ? 'fused.conv2d NHWC' : 'matMul',
        async run() {
          y?.dispose();
          y = op();
          await sync();
        },
        read: async () => post(new Float32Array(await y.data())),
        dispose() {
          y?.dispose();
          for (const x of keep) x.dispose();
        },
      };
    },
  };
}

/** The ONNX graph of a case; `fused` = com.microsoft.MultiHeadAttention for attention. */
function caseGraph(c: PeerCase, d: CaseData, fused: boolean): { graph: OnnxGraph; feeds: Record<string, { data: Float32Array; dims: number[] }>; variant: string } | null {
  const s = c.spec;
  switch (s.kind) {
    case 'matmul':
      if (fused) return null;
      return {
        graph: { inputs: { a: [s.M, s.K], b: [s.K, s.N] }, outputs: { y: [s.M, s.N] }, nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }] },
        feeds: { a: { data: d.inputs.a!, dims: [s.M, s.K] }, b: { data: d.inputs.b!, dims: [s.K, s.N] } },
        variant: 'MatMul',
      };
    case 'conv':
      if (fused) return null;
      return {
        graph: {
          inputs: { x: [1, s.Cin, s.H, s.W], w: [s.Cout, s.Cin, 3, 3], b: [s.Cout] },
          outputs: { y: [1, s.Cout, s.H, s.W] },
          nodes: [{ op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: { pads: [1, 1, 1, 1], kernel_shape: [3, 3] } }],
        },
        feeds: { x: { data: d.inputs.x!, dims: [1, s.Cin, s.H, s.W] }, w: { data: d.inputs.w!, dims: [s.Cout, s.Cin, 3, 3] }, b: { data: d.inputs.bias!, dims: [s.Cout] } },
        variant: 'Conv NCHW',
      };
    case 'groupnorm': {
      if (fused) return null;
      const shape = [1, s.C, s.H, s.W];
      return {
        graph: {
          inputs: { x: shape },
          outputs: { y: shape },
          initializers: {
            grouped: { data: BigInt64Array.from([1n, BigInt(s.G), -1n]), shape: [3] },
            full: { data: BigInt64Array.from(shape.map(BigInt)), shape: [4] },
            ones: { data: new Float32Array(s.G).fill(1), shape: [s.G] },
            zeros: { data: new Float32Array(s.G), shape: [s.G] },
            gamma: { data: d.inputs.gamma!, shape: [1, s.C, 1, 1] },
            beta: { data: d.inputs.beta!, shape: [1, s.C, 1, 1] },
          },
          nodes: [
            { op: 'Reshape', inputs: ['x', 'grouped'], outputs: ['xg'] },
            { op: 'InstanceNormalization', inputs: ['xg', 'ones', 'zeros'], outputs: ['ng'], attrs: { epsilon: { f: 1e-5 } } },
            { op: 'Reshape', inputs: ['ng', 'full'], outputs: ['n'] },
            { op: 'Mul', inputs: ['n', 'gamma'], outputs: ['ns'] },
            { op: 'Add', inputs: ['ns', 'beta'], outputs: ['a'] },
            { op: 'Sigmoid', inputs: ['a'], outputs: ['sg'] },
            { op: 'Mul', inputs: ['a', 'sg'], outputs: ['y'] },
          ],
        },
        feeds: { x: { data: d.inputs.x!, dims: shape } },
        variant: 'InstanceNormalization over [1, G, -1] + Mul/Add + x·Sigmoid(x)',
      };
    }
    case 'attention': {
      const C = s.H * s.D;
      if (fused) {
        return {
          graph: {
            inputs: { q: [1, s.L, C], k: [1, s.L, C], v: [1, s.L, C] },
            outputs: { y: [1, s.L, C] },
            nodes: [{ op: 'MultiHeadAttention', domain: 'com.microsoft', inputs: ['q', 'k', 'v'], outputs: ['y'], attrs: { num_heads: s.H } }],
            domains: { 'com.microsoft': 1 },
          },
          feeds: Object.fromEntries(['q', 'k', 'v'].map((n) => [n, { data: d.inputs[n]!, dims: [1, s.L, C] }])),
          variant: 'com.microsoft.MultiHeadAttention (fused)',
        };
      }
      const hd = [s.H, s.L, s.D];
      return {
        graph: {
          inputs: { q: hd, k: hd, v: hd },
          outputs: { y: hd },
          initializers: { scale: { data: Float32Array.of(1 / Math.sqrt(s.D)), shape: [] } },
          nodes: [
            { op: 'Transpose', inputs: ['k'], outputs: ['kt'], attrs: { perm: [0, 2, 1] } },
            { op: 'MatMul', inputs: ['q', 'kt'], outputs: ['s'] },
            { op: 'Mul', inputs: ['s', 'scale'], outputs: ['ss'] },
            { op: 'Softmax', inputs: ['ss'], outputs: ['p'], attrs: { axis: -1 } },
            { op: 'MatMul', inputs: ['p', 'v'], outputs: ['y'] },
          ],
        },
        feeds: Object.fromEntries(['q', 'k', 'v'].map((n) => [n, { data: tokToHead(d.inputs[n]!, s.H, s.L, s.D), dims: hd }])),
        variant: 'Transpose + MatMul + Softmax + MatMul',
      };
    }
  }
}

/**
 * onnxruntime-web's WebGPU EP, inputs and outputs as GPU buffers. It is offered our GPUDevice (`env.webgpu.device`);
 * where it creates its own anyway (1.30's EP does), buffers and syncs go through the device it reports.
 */
export function ortEngine(ort: Ort, fused: boolean, offered?: GPUDevice): Engine {
  return {
    name: fused ? 'ORT fused' : 'ORT-web',
    async prepare(c, d) {
      const g = caseGraph(c, d, fused);
      if (!g) return null;
      const session = await ort.InferenceSession.create(onnxModel(g.graph), {
        executionProviders: ['webgpu'],
        preferredOutputLocation: 'gpu-buffer',
        graphOptimizationLevel: 'all',
      });
      const device = (await ort.env.webgpu.device) as GPUDevice;
      const buffers: GPUBuffer[] = [];
      const feeds: Record<string, unknown> = {};
      for (const [name, f] of Object.entries(g.feeds)) {
        const buf = device.createBuffer({ size: f.data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
        device.queue.writeBuffer(buf, 0, f.data.buffer, f.data.byteOffset, f.data.byteLength);
        buffers.push(buf);
        feeds[name] = ort.Tensor.fromGpuBuffer(buf, { dataType: 'float32', dims: f.dims });
      }
      await device.queue.onSubmittedWorkDone();
      const s = c.spec;
      const post = s.kind === 'attention' && !fused ? (y: Float32Array) => headToTok(y, s.H, s.L, s.D) : (y: Float32Array) => y;
      let out: any = null;
      return {
        variant: g.variant + (offered && device !== offered ? ' (on its own GPUDevice: the EP does not adopt env.webgpu.device)' : ''),
        async run() {
          out?.y.dispose();
          out = await session.run(feeds);
          await device.queue.onSubmittedWorkDone();
        },
        read: async () => post(new Float32Array(await out.y.getData())),
        dispose() {
          out?.y.dispose();
          void session.release();
          for (const b of buffers) b.destroy();
        },
      };
    },
  };
}
/* eslint-enable @typescript-eslint/no-explicit-any */

// ------------------------------------------------------------------ device peaks

async function medianOf(runs: number, warmup: number, step: () => Promise<void>): Promise<number> {
  for (let i = 0; i < warmup; i++) await step();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await step();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1]!;
}

/** The device's FMA peak (GFLOP/s, independent vec4 FMA chains) and vec4 shader-copy bandwidth (GB/s), measured now. */
export async function devicePeaks(rt: Runtime, quick: boolean): Promise<{ gflops: number; gbs: number }> {
  const n = 1 << 16;
  const ITERS = quick ? 256 : 512;
  const out = rt.empty([n]);
  let gflops = 0;
  for (const wg of [64, 256]) {
    const k = rt.kernel('bench-peak', peakWgsl, { WG_SIZE: wg });
    const ms = await medianOf(quick ? 3 : 5, 1, async () => {
      rt.dispatch(k, [out], { ITERS, c: 0.5 }, rt.grid(n / wg));
      await rt.sync();
    });
    gflops = Math.max(gflops, (n * ITERS * 64) / ms / 1e6);
  }
  out.dispose();
  const vec4s = (quick ? 4 : 8) << 20;
  const src = rt.zeros([vec4s * 4]);
  const dst = rt.empty([vec4s * 4]);
  const k = rt.kernel('bench-copy', copyWgsl, { WG_SIZE: 256 });
  const ms = await medianOf(quick ? 3 : 5, 1, async () => {
    rt.dispatch(k, [src, dst], { N: vec4s }, rt.grid(Math.ceil(vec4s / 256)));
    await rt.sync();
  });
  src.dispose();
  dst.dispose();
  return { gflops, gbs: (2 * 16 * vec4s) / ms / 1e6 };
}

// ------------------------------------------------------------------ the run

export interface Cell {
  engine: string;
  /** Median ms, or null when the engine could not run the case. */
  ms: number | null;
  /** GFLOP/s or GB/s. */
  rate: number | null;
  correct: boolean | null;
  maxErr: number | null;
  note: string;
}

export interface CaseResult {
  name: string;
  unit: 'GFLOP/s' | 'GB/s';
  cells: Cell[];
}

export interface PeerReport {
  where: string;
  adapter: string;
  peaks: { gflops: number; gbs: number };
  runs: number;
  warmup: number;
  cases: CaseResult[];
  notes: string[];
}

export interface SuiteOptions {
  quick: boolean;
  log: (line: string) => void;
  /** Only cases whose name contains one of these strings. */
  only?: string[];
}

function checkOutput(got: Float32Array, d: CaseData, samples: number): { ok: boolean; maxErr: number } {
  const idx = sampleIndices(d.outLen, samples);
  const want = idx.map((i) => d.ref(i));
  const rms = Math.sqrt(want.reduce((s, x) => s + x * x, 0) / want.length) || 1;
  let ok = got.length === d.outLen;
  let maxErr = 0;
  idx.forEach((i, j) => {
    const e = Math.abs(got[i]! - want[j]!);
    if (!(e <= 2e-3 * rms + 2e-3 * Math.abs(want[j]!))) ok = false;
    maxErr = Math.max(maxErr, Number.isFinite(e) ? e / rms : Infinity);
  });
  return { ok, maxErr };
}

export async function runSuite(where: string, rt: Runtime, engines: Engine[], o: SuiteOptions, notes: string[] = []): Promise<PeerReport> {
  const runs = o.quick ? 5 : 7;
  const warmup = o.quick ? 1 : 2;
  const samples = o.quick ? 48 : 192;
  o.log(`[${where}] measuring the device's FMA peak and copy bandwidth…`);
  const peaks = await devicePeaks(rt, o.quick);
  o.log(`[${where}] FMA peak ${peaks.gflops.toFixed(2)} GFLOP/s, copy ${peaks.gbs.toFixed(2)} GB/s`);
  const cases: CaseResult[] = [];
  for (const c of CASES) {
    if (o.only && !o.only.some((s) => c.name.includes(s))) continue;
    const d = caseData(c);
    const unit = c.flops ? 'GFLOP/s' : 'GB/s';
    const cells: Cell[] = [];
    for (const e of engines) {
      let r: Runner | null = null;
      try {
        r = await e.prepare(c, d);
        if (!r) continue;
        const ms = await medianOf(runs, warmup, () => r!.run());
        const { ok, maxErr } = checkOutput(await r.read(), d, samples);
        const rate = (c.flops ?? c.bytes!) / ms / 1e6;
        cells.push({ engine: e.name, ms, rate, correct: ok, maxErr, note: r.variant ?? '' });
        o.log(`[${where}] ${c.name} · ${e.name}: ${ms.toFixed(1)} ms, ${rate.toFixed(2)} ${unit}, ${ok ? 'correct' : 'WRONG'} (max err ${maxErr.toExponential(1)} of rms)`);
      } catch (err) {
        const msg = String((err as Error)?.message ?? err).split('\n')[0]!.slice(0, 120);
        cells.push({ engine: e.name, ms: null, rate: null, correct: null, maxErr: null, note: `n/a: ${msg}` });
        o.log(`[${where}] ${c.name} · ${e.name}: n/a (${msg})`);
      } finally {
        try {
          r?.dispose();
        } catch {
          // a peer's dispose failing must not stop the benchmark
        }
      }
    }
    cases.push({ name: c.name, unit, cells });
  }
  return { where, adapter: rt.adapterName, peaks, runs, warmup, cases, notes };
}

/** What the browser page leaves on `window.__peers` for bench/peers.ts. */
export interface PeersResult {
  report?: PeerReport;
  markdown?: string;
  error?: string;
  peers?: string[];
}

declare global {
  interface Window {
    __peers?: PeersResult;
  }
}

// ------------------------------------------------------------------ the table

const fmt = (x: number | null, digits = 2) => (x === null ? 'n/a' : x.toFixed(digits));

/** A markdown table: one row per case; our rate, each peer's, ours ÷ best correct peer, ours as a share of the device's peak. */
export function markdown(r: PeerReport, peerNames: string[]): string {
  const lines: string[] = [];
  lines.push(`### ${r.where}: ${r.adapter}`);
  lines.push('');
  lines.push(
    `Device measured in the same run: FMA peak **${r.peaks.gflops.toFixed(2)} GFLOP/s**, shader copy **${r.peaks.gbs.toFixed(2)} GB/s**. ` +
      `Median of ${r.runs} runs after ${r.warmup} warm-up, each ending in a GPU sync; inputs GPU-resident. ✓ = matches a float64 CPU reference ` +
      `on sampled outputs, ✗ = wrong result (excluded from "best peer").`,
  );
  lines.push('');
  lines.push(`| case | unit | fmboost | ${peerNames.join(' | ')} | fmboost ÷ best peer | fmboost % of peak |`);
  lines.push(`|---|---|---:|${peerNames.map(() => '---:').join('|')}|---:|---:|`);
  for (const c of r.cases) {
    const cell = (name: string) => c.cells.find((x) => x.engine === name);
    const show = (x: Cell | undefined) => (!x ? '—' : x.rate === null ? 'n/a' : `${fmt(x.rate)} ${x.correct ? '✓' : '✗'}`);
    const ours = cell('fmboost');
    const best = Math.max(0, ...c.cells.filter((x) => x.engine !== 'fmboost' && x.correct && x.rate !== null).map((x) => x.rate!));
    const ratio = ours?.rate && best > 0 ? `${(ours.rate / best).toFixed(2)}×` : 'n/a';
    const peak = c.unit === 'GB/s' ? r.peaks.gbs : r.peaks.gflops;
    const pct = ours?.rate ? `${((100 * ours.rate) / peak).toFixed(1)} % ${c.unit === 'GB/s' ? 'copy BW' : 'FMA'}` : 'n/a';
    lines.push(`| ${c.name} | ${c.unit} | ${show(ours)} | ${peerNames.map((p) => show(cell(p))).join(' | ')} | ${ratio} | ${pct} |`);
  }
  const unavailable = r.cases.flatMap((c) => c.cells.filter((x) => x.rate === null).map((x) => `${c.name} · ${x.engine}: ${x.note}`));
  const wrong = r.cases.flatMap((c) => c.cells.filter((x) => x.correct === false).map((x) => `${c.name} · ${x.engine} (${x.note}): max error ${fmt(x.maxErr, 3)} × rms of the reference`));
  const variants = r.cases.flatMap((c) => c.cells.filter((x) => x.rate !== null && x.note).map((x) => `${c.name} · ${x.engine}: ${x.note}`));
  if (wrong.length) lines.push('', 'Wrong results:', ...wrong.map((w) => `- ${w}`));
  if (unavailable.length) lines.push('', 'Not run:', ...unavailable.map((w) => `- ${w}`));
  if (r.notes.length) lines.push('', ...r.notes.map((n) => `- ${n}`));
  if (variants.length) lines.push('', '<details><summary>what each peer ran</summary>', '', ...variants.map((v) => `- ${v}`), '', '</details>');
  return lines.join('\n') + '\n';
}
