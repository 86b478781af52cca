// GroupNorm, NCHW (any spatial rank, S = H·W flattened), f32 statistics, biased variance:
//   y = act( ((x − mean[n,g]) · rstd[n,g] · weight[c] + bias[c]) · (1 + scale[n,c]) + shift[n,c] )
//   rstd = 1/sqrt(M2/count + eps), act = SiLU or identity; scale/shift are the optional FiLM terms.
// Statistics are never Σx² − (Σx)²: every invocation sums d = x − k with k its own first value (a shift
// inside the data), turns that into (count, mean, M2), and those merge with Chan's parallel formula.
// No kernel uses workgroup memory or barriers: on CPU adapters (SwiftShader) each barrier switches every
// SIMD group of the workgroup, which cost more than the memory traffic itself.
// Entry points (all share the bindings; unused ones are referenced with `_ = &…` and get dummies):
//   main_moments  invocation li of chunk s of group (n,g) reduces K values (vec4s if VEC4) spaced WG_SIZE
//                 apart inside the region {y0..y0+Ry, x0..x0+Rx} → y[((ng·S + s)·WG_SIZE + li)·3 ..]
//                                                         dispatch rt.grid(N·G·S)
//   main_merge    invocation (ng, o) Chan-merges partials s ∈ [o·M, min(S, (o+1)·M)) read from stats at
//                 (ng·strideNG + s·strideS)·3 → (count, mean, M2) at y[(ng·So + o)·3 ..], or with STATS
//                 (So = 1) → (mean, rstd) at y[ng·2 ..]     dispatch rt.grid(ceil(NG·So / WG_SIZE))
//   main_apply    normalises with stats [N,G,2] (mean, rstd); one vec4 (VEC4: H·W % 4 == 0) or one value
//                 per invocation                          dispatch rt.grid(ceil(V / WG_SIZE))
// Without VEC4, element j is x[j >> 2][j & 3].
// Bindings: 0 x, 1 stats, 2 weight, 3 bias, 4 scale, 5 shift, 6 y, 7 params. Matches test/reference/group-norm.ts.

override WG_SIZE: u32 = 256;
override VEC4: bool = true;
override SILU: bool = false;
override HAS_SCALE: bool = false;
override HAS_SHIFT: bool = false;
override STATS: bool = true;

struct Params {
  // geometry
  C: u32,
  HW: u32,
  W: u32,
  G: u32,
  Cg: u32,
  // region of main_moments (the whole image elsewhere)
  y0: u32,
  x0: u32,
  Ry: u32,
  Rx: u32,
  // split reduction: K values per invocation, S chunks (moments) or partials (merge) per group
  K: u32,
  S: u32,
  NG: u32,
  // merge: outputs per group, partials per output, input layout
  So: u32,
  M: u32,
  strideNG: u32,
  strideS: u32,
  eps: f32,
  // main_apply: invocations with work
  V: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4f>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read> shift: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<vec4f>;
@group(0) @binding(7) var<uniform> params: Params;

fn ld(j: u32) -> f32 {
  return x[j >> 2u][j & 3u];
}

fn st(j: u32, v: f32) {
  y[j >> 2u][j & 3u] = v;
}

// Offset of element j of group (n,g) restricted to the region: j runs over (c, yy, xx) row-major.
fn regionOffset(base: u32, j: u32) -> u32 {
  let plane = params.Ry * params.Rx;
  let c = j / plane;
  let r = j - c * plane;
  let yy = r / params.Rx;
  let xx = r - yy * params.Rx;
  return base + c * params.HW + (params.y0 + yy) * params.W + params.x0 + xx;
}

@compute @workgroup_size(WG_SIZE)
fn main_moments(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &stats; _ = &weight; _ = &bias; _ = &scale; _ = &shift;
  let id = wid.x + wid.y * nwg.x;
  if (id >= params.NG * params.S) { return; }
  let ng = id / params.S;
  let s = id - ng * params.S;
  let n = ng / params.G;
  let g = ng - n * params.G;
  let base = (n * params.C + g * params.Cg) * params.HW;
  let K = params.K;
  // This invocation's values: first + k·WG_SIZE for k < K, below `total` (in vec4s when VEC4).
  let first = s * K * WG_SIZE + li;
  var sd = 0.0;
  var sq = 0.0;
  var cnt = 0u;
  var k0 = 0.0;
  if (VEC4) {
    let total = params.Cg * params.HW / 4u;
    let b4 = base / 4u;
    if (first < total) { k0 = x[b4 + first].x; }
    var s4 = vec4f(0.0);
    var q4 = vec4f(0.0);
    for (var k = 0u; k < K; k++) {
      let v = first + k * WG_SIZE;
      if (v >= total) { break; }
      let d = x[b4 + v] - k0;
      s4 += d;
      q4 += d * d;
      cnt += 4u;
    }
    sd = s4.x + s4.y + s4.z + s4.w;
    sq = q4.x + q4.y + q4.z + q4.w;
  } else {
    let total = params.Cg * params.Ry * params.Rx;
    if (first < total) { k0 = ld(regionOffset(base, first)); }
    for (var k = 0u; k < K; k++) {
      let j = first + k * WG_SIZE;
      if (j >= total) { break; }
      let d = ld(regionOffset(base, j)) - k0;
      sd += d;
      sq += d * d;
      cnt += 1u;
    }
  }
  let o = (id * WG_SIZE + li) * 3u;
  let c = f32(cnt);
  st(o, c);
  st(o + 1u, select(0.0, k0 + sd / c, cnt > 0u));
  st(o + 2u, select(0.0, max(sq - sd * sd / c, 0.0), cnt > 0u));
}

@compute @workgroup_size(WG_SIZE)
fn main_merge(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &x; _ = &weight; _ = &bias; _ = &scale; _ = &shift;
  let id = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (id >= params.NG * params.So) { return; }
  let ng = id / params.So;
  let oi = id - ng * params.So;
  var cnt = 0.0;
  var mean = 0.0;  // relative to pivot: rounding then scales with the spread, not with a common offset
  var m2 = 0.0;
  let lo = oi * params.M;
  let hi = min(params.S, lo + params.M);
  let pivot = stats[(ng * params.strideNG + lo * params.strideS) * 3u + 1u];
  for (var s = lo; s < hi; s++) {
    let o = (ng * params.strideNG + s * params.strideS) * 3u;
    let nb = stats[o];
    if (nb > 0.0) {
      let tot = cnt + nb;
      let d = (stats[o + 1u] - pivot) - mean;
      mean += d * (nb / tot);
      m2 += stats[o + 2u] + d * d * (cnt * nb / tot);
      cnt = tot;
    }
  }
  mean += pivot;
  if (STATS) {
    st(ng * 2u, mean);
    st(ng * 2u + 1u, 1.0 / sqrt(m2 / cnt + params.eps));
  } else {
    let o = id * 3u;
    st(o, cnt);
    st(o + 1u, mean);
    st(o + 2u, m2);
  }
}

// Per-(n,c) affine: y = act((x − mean)·a + b) with the FiLM terms folded in. Subtracting the mean first
// (instead of x·a + (bias − mean·a)) keeps inputs with a large common offset exact to f32 resolution.
fn coef(n: u32, c: u32, rstd: f32) -> vec2f {
  var a = rstd * weight[c];
  var b = bias[c];
  let nc = n * params.C + c;
  if (HAS_SCALE) {
    let f = 1.0 + scale[nc];
    a *= f;
    b *= f;
  }
  if (HAS_SHIFT) { b += shift[nc]; }
  return vec2f(a, b);
}

fn act4(v: vec4f) -> vec4f {
  if (SILU) { return v / (1.0 + exp(-v)); }
  return v;
}

fn act(v: f32) -> f32 {
  if (SILU) { return v / (1.0 + exp(-v)); }
  return v;
}

@compute @workgroup_size(WG_SIZE)
fn main_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (i >= params.V) { return; }
  let e = select(i, i * 4u, VEC4);
  let nc = e / params.HW;
  let n = nc / params.C;
  let c = nc - n * params.C;
  let sidx = (n * params.G + c / params.Cg) * 2u;
  let mean = stats[sidx];
  let ab = coef(n, c, stats[sidx + 1u]);
  if (VEC4) {
    y[i] = act4((x[i] - mean) * ab.x + ab.y);
  } else {
    st(i, act((ld(i) - mean) * ab.x + ab.y));
  }
}
