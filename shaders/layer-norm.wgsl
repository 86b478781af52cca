// LayerNorm over the last dim D (biased variance, eps inside the sqrt, affine):
//   y[r, d] = (x[r, d] − mean[r]) / sqrt(var[r] + eps) · weight[d] + bias[d]
// Statistics in one pass over the row, as sums of d = x − k with k the mean of the row's first 4 values (a
// shift inside the data: a large common offset costs no precision, unlike Σx² − (Σx)²).
// No workgroup memory or barriers (they cost more than the row traffic on CPU adapters). Two dispatches:
//   main_stats     one invocation per row r sums its row (vec4s if VEC4) → (mean, rstd) at y[2r ..]
//   main_stats_sg  the same rows, but the lanes of a subgroup read each lane's row in turn, side by side,
//                  and reduce with subgroupAdd (subgroup section: needs `subgroups`)
//                                                                  dispatch rt.grid(ceil(R / WG_SIZE))
//   main_apply     one value per invocation (D % 4 != 0), with stats [R, 2] bound as `stats`
//                                                          dispatch rt.grid(ceil(V / WG_SIZE)), V = R·D
//   main_apply_rows  D % 4 == 0: one vec4 column of ROWS (4 or 1) rows per invocation
//                                                          dispatch rt.grid(ceil(V / WG_SIZE)), V = R/ROWS · D/4
// Tensors are bound as array<vec4f> (pool buffers are padded to 256 B); without VEC4 element j is
// a[j >> 2][j & 3]. Bindings: 0 x, 1 weight, 2 bias, 3 stats, 4 y, 5 params. Matches test/reference/layer-norm.ts.

override WG_SIZE: u32 = 64;
override VEC4: bool = true;
override ROWS: u32 = 4;

struct Params {
  R: u32,
  D: u32,
  eps: f32,
  // main_apply, main_apply_rows: invocations with work
  V: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4f>;
@group(0) @binding(1) var<storage, read> weight: array<vec4f>;
@group(0) @binding(2) var<storage, read> bias: array<vec4f>;
@group(0) @binding(3) var<storage, read> stats: array<vec2f>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4f>;
@group(0) @binding(5) var<uniform> params: Params;

fn ld(j: u32) -> f32 {
  return x[j >> 2u][j & 3u];
}

// (Σ d, Σ d²) with d = x − k over the units first, first + step, … < n (vec4s if VEC4, else scalars) of
// the row at `base`; 4 units per iteration while they last.
fn rowSums(base: u32, first: u32, n: u32, step: u32, k: f32) -> vec2f {
  if (VEC4) {
    let b4 = base / 4u;
    var s = vec4f(0.0);
    var q = vec4f(0.0);
    var d = first;
    for (; d + 3u * step < n; d += 4u * step) {
      let t0 = x[b4 + d] - k;
      let t1 = x[b4 + d + step] - k;
      let t2 = x[b4 + d + 2u * step] - k;
      let t3 = x[b4 + d + 3u * step] - k;
      s += (t0 + t1) + (t2 + t3);
      q += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3);
    }
    for (; d < n; d += step) {
      let t = x[b4 + d] - k;
      s += t;
      q += t * t;
    }
    return vec2f((s.x + s.y) + (s.z + s.w), (q.x + q.y) + (q.z + q.w));
  }
  var s = 0.0;
  var q = 0.0;
  for (var d = first; d < n; d += step) {
    let t = ld(base + d) - k;
    s += t;
    q += t * t;
  }
  return vec2f(s, q);
}

fn units() -> u32 {
  return select(params.D, params.D / 4u, VEC4);
}

// The shift: the mean of the row's first 4 values (its first value if D % 4 != 0).
fn shiftOf(base: u32) -> f32 {
  if (VEC4) {
    let v = x[base / 4u];
    return ((v.x + v.y) + (v.z + v.w)) * 0.25;
  }
  return ld(base);
}

// Row statistics from the shifted sums: the shift k is a value of the row, so a common offset cancels
// exactly and Σd² − (Σd)²/D loses nothing to it (only to how far k lies from the mean, in units of spread).
fn putStats(r: u32, k: f32, sums: vec2f) {
  let D = f32(params.D);
  let mean = sums.x / D;
  let rstd = 1.0 / sqrt(max(sums.y - sums.x * mean, 0.0) / D + params.eps);
  y[r >> 1u][(r & 1u) * 2u] = k + mean;
  y[r >> 1u][(r & 1u) * 2u + 1u] = rstd;
}

@compute @workgroup_size(WG_SIZE)
fn main_stats(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &weight; _ = &bias; _ = &stats;
  let r = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (r >= params.R) { return; }
  let base = r * params.D;
  let k = shiftOf(base);
  putStats(r, k, rowSums(base, 0u, units(), 1u, k));
}

@compute @workgroup_size(WG_SIZE)
fn main_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (i >= params.V) { return; }
  if (VEC4) {
    let D4 = params.D / 4u;
    let r = i / D4;
    let d = i - r * D4;
    let s = stats[r];
    y[i] = (x[i] - s.x) * s.y * weight[d] + bias[d];
  } else {
    let r = i / params.D;
    let d = i - r * params.D;
    let s = stats[r];
    y[i >> 2u][i & 3u] = (ld(i) - s.x) * s.y * weight[d >> 2u][d & 3u] + bias[d >> 2u][d & 3u];
  }
}

// Vec4 column d of rows ROWS·q .. ROWS·q + ROWS − 1, for t = q·D/4 + d < V: weight and bias are read once
// for ROWS rows, and the body is straight-line (a loop or branch around the stores costs SwiftShader more
// than the traffic).
@compute @workgroup_size(WG_SIZE)
fn main_apply_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (t >= params.V) { return; }
  let D4 = params.D / 4u;
  let q = t / D4;
  let d = t - q * D4;
  let w = weight[d];
  let b = bias[d];
  let r0 = q * ROWS;
  let i0 = r0 * D4 + d;
  let s0 = stats[r0];
  if (ROWS == 1u) {
    y[i0] = (x[i0] - s0.x) * (s0.y * w) + b;
    return;
  }
  let s1 = stats[r0 + 1u];
  let s2 = stats[r0 + 2u];
  let s3 = stats[r0 + 3u];
  let v0 = x[i0];
  let v1 = x[i0 + D4];
  let v2 = x[i0 + 2u * D4];
  let v3 = x[i0 + 3u * D4];
  y[i0] = (v0 - s0.x) * (s0.y * w) + b;
  y[i0 + D4] = (v1 - s1.x) * (s1.y * w) + b;
  y[i0 + 2u * D4] = (v2 - s2.x) * (s2.y * w) + b;
  y[i0 + 3u * D4] = (v3 - s3.x) * (s3.y * w) + b;
}

// ---- subgroup entry points (the portable shader ends above; see src/ops/subgroups.ts)

@compute @workgroup_size(WG_SIZE)
fn main_stats_sg(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32,
                 @builtin(subgroup_size) sgs: u32, @builtin(subgroup_invocation_id) sgi: u32) {
  _ = &weight; _ = &bias; _ = &stats;
  // No early return: every lane takes part in every subgroup operation (uniform control flow). Lanes are
  // counted (n, rank) rather than taken from subgroup_size, which a partial subgroup does not fill.
  let r = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  let n = subgroupAdd(1u);
  let rank = subgroupExclusiveAdd(1u);
  var mine = vec3f(0.0);
  for (var l = 0u; l < sgs; l++) {
    let base = min(subgroupShuffle(r, l), params.R - 1u) * params.D;  // lane l's row (past the end, or an absent lane's: some row, computed and dropped)
    let k = shiftOf(base);
    let sums = subgroupAdd(rowSums(base, rank, units(), n, k));
    if (sgi == l) { mine = vec3f(k, sums); }
  }
  if (r < params.R) { putStats(r, mine.x, mine.yz); }
}
