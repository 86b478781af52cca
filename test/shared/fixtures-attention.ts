/**
 * Fixture checks of the attention ops against ops.io.safetensors (REFERENCE.md §2.4, ops.md): `sdpa`,
 * `sdpa_causal`, `fmboost_attention`. Tolerances are tolerances.json's ops entries. Runs in Node and the browser.
 */
import { scaledDotProductAttention } from '../../src/ops/attention.js';
import { fmboostAttention } from '../../src/ops/fmboost-attention.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { fmboostSplitRef } from '../reference/fmboost-attention.js';
import { get, type CheckResult, type FixtureCheck, type FixtureLoader } from './fixture-check.js';

const FILE = 'ops.io.safetensors';
// tolerances.json → ops.sdpa, ops.sdpa_causal, ops.fmboost_attention
const TOL = {
  sdpa: { atol: 1e-5, rtol: 1e-3 },
  sdpa_causal: { atol: 5e-6, rtol: 1e-3 },
  fmboost_attention: { atol: 1e-5, rtol: 1e-3 },
};

function sdpaCheck(name: 'sdpa' | 'sdpa_causal', causal: boolean): FixtureCheck {
  return {
    name: `ops/${name}`,
    async run(rt: Runtime, load: FixtureLoader): Promise<CheckResult> {
      const f = await load(FILE);
      const [q, k, v, y] = ['q', 'k', 'v', 'y'].map((n) => get(f, `${name}.${n}`));
      const actual = await rt.scopeAsync(async () =>
        rt.read(scaledDotProductAttention(rt, rt.upload(q!.data, q!.shape), rt.upload(k!.data, k!.shape), rt.upload(v!.data, v!.shape), { causal })),
      );
      return { actual, expected: y!.data, ...TOL[name] };
    },
  };
}

/**
 * GroupNorm(32, C, eps 1e-5) and the qkv Conv1d on the CPU in float64 (the matmul and group-norm ops belong to
 * other files), the attention core on the GPU, proj_out and the residual on the CPU again.
 */
const fmboostCheck: FixtureCheck = {
  name: 'ops/fmboost_attention',
  async run(rt: Runtime, load: FixtureLoader): Promise<CheckResult[]> {
    const f = await load(FILE);
    const t = (n: string) => get(f, `fmboost_attention.${n}`);
    const x = t('x');
    const [B, C] = x.shape as [number, number];
    const L = x.data.length / (B * C);
    const [, heads, , d] = t('q').shape as [number, number, number, number]; // [B, heads, L, d]
    const inner = heads * d;
    const G = 32;
    const gw = t('norm.weight').data;
    const gb = t('norm.bias').data;
    const n = new Float64Array(B * C * L);
    const cpg = C / G;
    for (let b = 0; b < B; b++)
      for (let g = 0; g < G; g++) {
        const base = (b * C + g * cpg) * L;
        let mean = 0;
        for (let i = 0; i < cpg * L; i++) mean += x.data[base + i]!;
        mean /= cpg * L;
        let vr = 0;
        for (let i = 0; i < cpg * L; i++) vr += (x.data[base + i]! - mean) ** 2;
        const rstd = 1 / Math.sqrt(vr / (cpg * L) + 1e-5);
        for (let i = 0; i < cpg * L; i++) {
          const c = g * cpg + Math.floor(i / L);
          n[base + i] = (x.data[base + i]! - mean) * rstd * gw[c]! + gb[c]!;
        }
      }
    const conv1d = (inp: ArrayLike<number>, Ci: number, w: ArrayLike<number>, bias: ArrayLike<number>, Co: number) => {
      const out = new Float64Array(B * Co * L);
      for (let b = 0; b < B; b++)
        for (let o = 0; o < Co; o++)
          for (let l = 0; l < L; l++) {
            let s = bias[o]!;
            for (let c = 0; c < Ci; c++) s += w[o * Ci + c]! * inp[(b * Ci + c) * L + l]!;
            out[(b * Co + o) * L + l] = s;
          }
      return out;
    };
    const qkv = conv1d(n, C, t('qkv.weight').data, t('qkv.bias').data, 3 * inner);
    const att = await rt.scopeAsync(async () => rt.read(fmboostAttention(rt, rt.upload(Float32Array.from(qkv), [B, 3 * inner, L]), heads, d)));
    const proj = conv1d(att, inner, t('proj_out.weight').data, t('proj_out.bias').data, C);
    const yv = Float32Array.from(proj, (p, i) => p + x.data[i]!);
    // The debug q/k/v pin down the raw-reshape addressing that the kernel's strides implement.
    const split = fmboostSplitRef(qkv, B, heads, d, L);
    const tol = TOL.fmboost_attention;
    return [
      { actual: Float32Array.from(split[0]), expected: t('q').data, ...tol },
      { actual: Float32Array.from(split[1]), expected: t('k').data, ...tol },
      { actual: Float32Array.from(split[2]), expected: t('v').data, ...tol },
      { actual: yv, expected: t('y').data, ...tol },
    ];
  },
};

export const attentionChecks: FixtureCheck[] = [sdpaCheck('sdpa', false), sdpaCheck('sdpa_causal', true), fmboostCheck];
