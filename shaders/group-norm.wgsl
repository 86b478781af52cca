// GroupNorm, NCHW (any spatial rank, S = H·W flattened), f32 statistics, biased variance:
//   y = act( ((x − mean[n,g]) · rstd[n,g] · weight[c] + bias[c]) · (1 + scale[n,c]) + shift[n,c] )
//   rstd = 1/sqrt(M2/count + eps), act = SiLU or identity; scale/shift are the optional FiLM terms.
// Statistics are never Σx² − (Σx)²: every invocation sums d = x − k with k its own first value (a shift
// inside the data), turns that into (count, mean, M2), and those merge with Chan's parallel formula.
// No kernel uses workgroup memory or barriers: on CPU adapters (SwiftShader) each barrier switches every
// SIMD group of the workgroup, which cost more than the memory traffic itself. Straight-line loads and
// stores (no loop around them) are what SwiftShader runs fastest, hence the unrolled bodies.
// Entry points (all share the bindings; unused ones are referenced with `_ = &…` and get dummies):
//   main_moments  invocation li of chunk s of group (n,g) reduces K values (vec4s if VEC4) spaced WG_SIZE
//                 apart inside the region {y0..y0+Ry, x0..x0+Rx} → y[((ng·S + s)·WG_SIZE + li)·3 ..]
//                                                         dispatch rt.grid(N·G·S)
//   main_merge    invocation (ng, o) Chan-merges partials s ∈ [o·M, min(S, (o+1)·M)) read from stats at
//                 (ng·strideNG + s·strideS)·3 → (count, mean, M2) at y[(ng·So + o)·3 ..], or with STATS
//                 (So = 1) → (mean, rstd) at y[ng·2 ..]     dispatch rt.grid(ceil(NG·So / WG_SIZE))
//   main_merge_sg the same with the subgroup's lanes reading the partials of each lane's output in turn
//                 and adding theirs with subgroupAdd (subgroup section, needs `subgroups`)
//   main_apply    normalises with stats [N,G,2] (mean, rstd); one vec4 (VEC4: H·W % 4 == 0) or one value
//                 per invocation                          dispatch rt.grid(ceil(V / WG_SIZE))
//   main_apply_plane  H·W/4 a multiple of APPLY_J·WG_SIZE (APPLY_J ∈ {1, 2, 4}): workgroup w normalises vec4s
//                 w·J·WG_SIZE + li + k·WG_SIZE (k < J), all in plane nc = w / P (P workgroups per plane),
//                 with the affine computed once per invocation      dispatch rt.grid(V = N·C·P)
// Without VEC4, element j is x[j >> 2][j & 3].
// Bindings: 0 x, 1 stats, 2 weight, 3 bias, 4 scale, 5 shift, 6 y, 7 params. Matches test/reference/group-norm.ts.

override WG_SIZE: u32 = 256;
override VEC4: bool = true;
override SILU: bool = false;
override HAS_SCALE: bool = false;
override HAS_SHIFT: bool = false;
override STATS: bool = true;
override APPLY_J: u32 = 4;

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
  // main_apply: invocations with work (main_apply_plane: workgroups); workgroups per (n,c) plane
  V: u32,
  P: u32,
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
    let nk = min(K, (total - min(first, total) + WG_SIZE - 1u) / WG_SIZE);
    var k = 0u;
    let p0 = b4 + first;
    for (; k + 4u <= nk; k += 4u) {
      let d0 = x[p0 + k * WG_SIZE] - k0;
      let d1 = x[p0 + (k + 1u) * WG_SIZE] - k0;
      let d2 = x[p0 + (k + 2u) * WG_SIZE] - k0;
      let d3 = x[p0 + (k + 3u) * WG_SIZE] - k0;
      s4 += (d0 + d1) + (d2 + d3);
      q4 += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    }
    for (; k < nk; k++) {
      let d = x[p0 + k * WG_SIZE] - k0;
      s4 += d;
      q4 += d * d;
    }
    cnt = nk * 4u;
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

// Chan's merge of (count, mean, M2) b into a (means relative to a common pivot).
fn chan(a: vec3f, b: vec3f) -> vec3f {
  let tot = a.x + b.x;
  if (b.x == 0.0) { return a; }
  let d = b.y - a.y;
  return vec3f(tot, a.y + d * (b.x / tot), a.z + b.z + d * d * (a.x * b.x / tot));
}

// Partials [lo, hi) of output (ng, ·), stepping by `step` from lo + first, relative to `pivot`.
fn mergeRange(ng: u32, lo: u32, hi: u32, first: u32, step: u32, pivot: f32) -> vec3f {
  var acc = vec3f(0.0);
  for (var s = lo + first; s < hi; s += step) {
    let o = (ng * params.strideNG + s * params.strideS) * 3u;
    acc = chan(acc, vec3f(stats[o], stats[o + 1u] - pivot, stats[o + 2u]));
  }
  return acc;
}

fn mergeOut(id: u32, ng: u32, m: vec3f, pivot: f32) {
  let mean = m.y + pivot;
  if (STATS) {
    st(ng * 2u, mean);
    st(ng * 2u + 1u, 1.0 / sqrt(m.z / m.x + params.eps));
  } else {
    let o = id * 3u;
    st(o, m.x);
    st(o + 1u, mean);
    st(o + 2u, m.z);
  }
}

@compute @workgroup_size(WG_SIZE)
fn main_merge(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &x; _ = &weight; _ = &bias; _ = &scale; _ = &shift;
  let id = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (id >= params.NG * params.So) { return; }
  let ng = id / params.So;
  let lo = (id - ng * params.So) * params.M;
  let hi = min(params.S, lo + params.M);
  // Means relative to the first partial's: rounding then scales with the spread, not a common offset.
  let pivot = stats[(ng * params.strideNG + lo * params.strideS) * 3u + 1u];
  mergeOut(id, ng, mergeRange(ng, lo, hi, 0u, 1u, pivot), pivot);
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

// One workgroup per chunk of WG_SIZE·J vec4s of one (n,c) plane (H·W % 4 == 0): the affine is computed once
// per invocation for its J vec4s, which lie WG_SIZE apart so neighbouring invocations read neighbouring vec4s.
@compute @workgroup_size(WG_SIZE)
fn main_apply_plane(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = wid.x + wid.y * nwg.x;
  if (id >= params.V) { return; }
  let nc = id / params.P;
  let n = nc / params.C;
  let c = nc - n * params.C;
  let sidx = (n * params.G + c / params.Cg) * 2u;
  let mean = stats[sidx];
  let ab = coef(n, c, stats[sidx + 1u]);
  // Straight-line, no condition around the loads and stores (J is a constant): on SwiftShader a loop or a
  // branch around them costs more than the traffic.
  let i0 = id * APPLY_J * WG_SIZE + li;
  let v0 = x[i0];
  if (APPLY_J == 1u) {
    y[i0] = act4((v0 - mean) * ab.x + ab.y);
    return;
  }
  let v1 = x[i0 + WG_SIZE];
  if (APPLY_J == 2u) {
    y[i0] = act4((v0 - mean) * ab.x + ab.y);
    y[i0 + WG_SIZE] = act4((v1 - mean) * ab.x + ab.y);
    return;
  }
  let v2 = x[i0 + 2u * WG_SIZE];
  let v3 = x[i0 + 3u * WG_SIZE];
  y[i0] = act4((v0 - mean) * ab.x + ab.y);
  y[i0 + WG_SIZE] = act4((v1 - mean) * ab.x + ab.y);
  y[i0 + 2u * WG_SIZE] = act4((v2 - mean) * ab.x + ab.y);
  y[i0 + 3u * WG_SIZE] = act4((v3 - mean) * ab.x + ab.y);
}

// ---- subgroup entry points (the portable shader ends above; see src/ops/subgroups.ts)

@compute @workgroup_size(WG_SIZE)
fn main_merge_sg(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32,
                 @builtin(subgroup_size) sgs: u32, @builtin(subgroup_invocation_id) sgi: u32) {
  _ = &x; _ = &weight; _ = &bias; _ = &scale; _ = &shift;
  // No early return: every lane takes part in every subgroup operation (uniform control flow). Lanes are
  // counted (n, rank) rather than taken from subgroup_size, which a partial subgroup does not fill.
  let id = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  let outs = params.NG * params.So;
  let n = subgroupAdd(1u);
  let rank = subgroupExclusiveAdd(1u);
  var mine = vec3f(0.0);
  var myPivot = 0.0;
  for (var r = 0u; r < sgs; r++) {
    // Lane r's output (clamped: past the end, or an absent lane's, is some output, computed and dropped).
    let t = min(subgroupShuffle(id, r), outs - 1u);
    let ng = t / params.So;
    let lo = (t - ng * params.So) * params.M;
    let hi = min(params.S, lo + params.M);
    let pivot = stats[(ng * params.strideNG + lo * params.strideS) * 3u + 1u];
    let m = mergeRange(ng, lo, hi, rank, n, pivot);
    // Lane triples → sums about the pivot (n, Σ n·μ, Σ M2 + n·μ²), added across the subgroup and turned
    // back; the pivot is a partial's mean, so the final M2 = S2 − S1²/N cancels nothing large.
    let s = subgroupAdd(vec3f(m.x, m.x * m.y, m.z + m.x * m.y * m.y));
    let mean = s.y / s.x;
    if (sgi == r) {
      mine = vec3f(s.x, mean, max(s.z - s.y * mean, 0.0));
      myPivot = pivot;
    }
  }
  if (id < outs) { mergeOut(id, id / params.So, mine, myPivot); }
}
