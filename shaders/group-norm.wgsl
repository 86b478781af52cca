// GroupNorm, NCHW (any spatial rank, S = H·W flattened), f32 statistics, biased variance:
//   y = act( ((x − mean[n,g]) · rstd[n,g] · weight[c] + bias[c]) · (1 + scale[n,c]) + shift[n,c] )
//   rstd = 1/sqrt(M2/count + eps), act = SiLU or identity; scale/shift are the optional FiLM terms.
// Statistics are never Σx² − (Σx)²: each workgroup sums d = x − k with k one of its own values (a shift
// near the data), turns that into (count, mean, M2), and partial results merge with Chan's formula.
// Entry points (all share the bindings; unused ones are referenced with `_ = &…` and get dummies):
//   main_moments  (count, mean, M2) of chunk s of group (n,g) over a region {y0..y0+Ry, x0..x0+Rx}
//                 → y[(ng·S + s)·3 ..]                   dispatch rt.grid(N·G·S), WG_SIZE threads
//   main_merge    Chan-merges S moment triples of each (n,g), read from stats at (ng·strideNG + s·strideS)·3;
//                 STATS: writes (mean, rstd) → y[ng·2 ..], else (count, mean, M2) → y[ng·3 ..]
//                                                         dispatch rt.grid(N·G), WG_SIZE threads
//   main_apply    normalises with stats [N,G,2] (mean, rstd); one vec4 (HW4) or one value per invocation
//                                                         dispatch rt.grid(ceil(V / WG_SIZE))
//   main_fused    a whole small group per workgroup: statistics, then the normalised output
//                                                         dispatch rt.grid(N·G), WG_SIZE threads
// VEC4: the data of a group is read as vec4s (whole-image region and S % 4 == 0 for moments/fused;
// HW % 4 == 0 for apply). Otherwise element j is x[j >> 2][j & 3].
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
  // split reduction
  S: u32,
  chunk: u32,
  NG: u32,
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

var<workgroup> sA: array<f32, WG_SIZE>;
var<workgroup> sB: array<f32, WG_SIZE>;
var<workgroup> sC: array<f32, WG_SIZE>;

fn ld(j: u32) -> f32 {
  return x[j >> 2u][j & 3u];
}

fn st(j: u32, v: f32) {
  y[j >> 2u][j & 3u] = v;
}

fn linearWg(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
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

// Tree-sums sA and sB over the workgroup; the totals end up in sA[0], sB[0].
fn reduceSums(li: u32, a: f32, b: f32) {
  sA[li] = a;
  sB[li] = b;
  workgroupBarrier();
  for (var h = WG_SIZE / 2u; h > 0u; h >>= 1u) {
    if (li < h) {
      sA[li] += sA[li + h];
      sB[li] += sB[li + h];
    }
    workgroupBarrier();
  }
}

// Shifted sums of the contiguous elements [lo, hi) of x (whole-image groups); returns (Σd, Σd²) of this thread.
fn contiguousSums(li: u32, lo: u32, hi: u32, k: f32) -> vec2f {
  var s = 0.0;
  var q = 0.0;
  if (VEC4) {
    var s4 = vec4f(0.0);
    var q4 = vec4f(0.0);
    for (var v = lo / 4u + li; v < hi / 4u; v += WG_SIZE) {
      let d = x[v] - k;
      s4 += d;
      q4 += d * d;
    }
    s = s4.x + s4.y + s4.z + s4.w;
    q = q4.x + q4.y + q4.z + q4.w;
  } else {
    for (var j = lo + li; j < hi; j += WG_SIZE) {
      let d = ld(j) - k;
      s += d;
      q += d * d;
    }
  }
  return vec2f(s, q);
}

@compute @workgroup_size(WG_SIZE)
fn main_moments(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &stats; _ = &weight; _ = &bias; _ = &scale; _ = &shift;
  let id = linearWg(wid, nwg);
  if (id >= params.NG * params.S) { return; }  // uniform per workgroup
  let ng = id / params.S;
  let s = id - ng * params.S;
  let n = ng / params.G;
  let g = ng - n * params.G;
  let base = (n * params.C + g * params.Cg) * params.HW;
  let total = params.Cg * params.Ry * params.Rx;
  let lo = s * params.chunk;
  let hi = min(total, lo + params.chunk);
  var sums: vec2f;
  var k: f32;
  if (VEC4) {
    k = ld(base + lo);
    sums = contiguousSums(li, base + lo, base + hi, k);
  } else {
    k = ld(regionOffset(base, lo));
    var a = 0.0;
    var b = 0.0;
    for (var j = lo + li; j < hi; j += WG_SIZE) {
      let d = ld(regionOffset(base, j)) - k;
      a += d;
      b += d * d;
    }
    sums = vec2f(a, b);
  }
  reduceSums(li, sums.x, sums.y);
  if (li == 0u) {
    let cnt = f32(hi - lo);
    let sd = sA[0];
    let o = id * 3u;
    st(o, cnt);
    st(o + 1u, k + sd / cnt);
    st(o + 2u, max(sB[0] - sd * sd / cnt, 0.0));
  }
}

@compute @workgroup_size(WG_SIZE)
fn main_merge(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &x; _ = &weight; _ = &bias; _ = &scale; _ = &shift;
  let ng = linearWg(wid, nwg);
  if (ng >= params.NG) { return; }
  var cnt = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var s = li; s < params.S; s += WG_SIZE) {
    let o = (ng * params.strideNG + s * params.strideS) * 3u;
    let nb = stats[o];
    if (nb > 0.0) {
      let tot = cnt + nb;
      let d = stats[o + 1u] - mean;
      mean += d * (nb / tot);
      m2 += stats[o + 2u] + d * d * (cnt * nb / tot);
      cnt = tot;
    }
  }
  sA[li] = cnt;
  sB[li] = mean;
  sC[li] = m2;
  workgroupBarrier();
  for (var h = WG_SIZE / 2u; h > 0u; h >>= 1u) {
    if (li < h && sA[li + h] > 0.0) {
      let na = sA[li];
      let nb = sA[li + h];
      let tot = na + nb;
      let d = sB[li + h] - sB[li];
      sB[li] += d * (nb / tot);
      sC[li] += sC[li + h] + d * d * (na * nb / tot);
      sA[li] = tot;
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    if (STATS) {
      st(ng * 2u, sB[0]);
      st(ng * 2u + 1u, 1.0 / sqrt(sC[0] / sA[0] + params.eps));
    } else {
      st(ng * 3u, sA[0]);
      st(ng * 3u + 1u, sB[0]);
      st(ng * 3u + 2u, sC[0]);
    }
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
  let i = linearWg(wid, nwg) * WG_SIZE + li;
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

@compute @workgroup_size(WG_SIZE)
fn main_fused(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &stats;
  let ng = linearWg(wid, nwg);
  if (ng >= params.NG) { return; }
  let n = ng / params.G;
  let g = ng - n * params.G;
  let HW = params.HW;
  let total = params.Cg * HW;
  let base = ng * total;
  let k = ld(base);
  let sums = contiguousSums(li, base, base + total, k);
  reduceSums(li, sums.x, sums.y);
  let cnt = f32(total);
  let sd = sA[0];
  let mean = k + sd / cnt;
  let rstd = 1.0 / sqrt(max(sB[0] - sd * sd / cnt, 0.0) / cnt + params.eps);
  let c0 = g * params.Cg;
  if (VEC4) {
    let HW4 = HW / 4u;
    for (var v = li; v < total / 4u; v += WG_SIZE) {
      let cl = v / HW4;
      let ab = coef(n, c0 + cl, rstd);
      let o = base / 4u + v;
      y[o] = act4((x[o] - mean) * ab.x + ab.y);
    }
  } else {
    for (var j = li; j < total; j += WG_SIZE) {
      let ab = coef(n, c0 + j / HW, rstd);
      st(base + j, act((ld(base + j) - mean) * ab.x + ab.y));
    }
  }
}
