// Softmax over the last dim L, max-subtracted: y[r, l] = exp(x[r, l] − max_r) / Σ_l exp(x[r, l] − max_r).
// No workgroup memory or barriers (they cost more than the row traffic on CPU adapters; attention has its
// own fused softmax, so rows here are short). Two dispatches:
//   main_stats     one invocation per row r: max, then Σ exp(x − max) → (max, 1/Σ) at y[2r ..]
//   main_stats_sg  the same rows, but the lanes of a subgroup read each lane's row in turn, side by side,
//                  and reduce with subgroupMax / subgroupAdd (subgroup section: needs `subgroups`)
//                                                                  dispatch rt.grid(ceil(R / WG_SIZE))
//   main_apply     y = exp(x − max)·(1/Σ), one vec4 (VEC4: L % 4 == 0) or one value per invocation, with the
//                  stats [R, 2] bound as `stats`           dispatch rt.grid(ceil(V / WG_SIZE)), V = R·L (/4)
// Tensors are bound as array<vec4f> (pool buffers are padded to 256 B); without VEC4 element j is
// a[j >> 2][j & 3]. Bindings: 0 x, 1 stats, 2 y, 3 params. Matches test/reference/softmax.ts.

override WG_SIZE: u32 = 64;
override VEC4: bool = true;

struct Params {
  R: u32,
  L: u32,
  // main_apply: invocations with work
  V: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4f>;
@group(0) @binding(1) var<storage, read> stats: array<vec2f>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4f>;
@group(0) @binding(3) var<uniform> params: Params;

fn ld(j: u32) -> f32 {
  return x[j >> 2u][j & 3u];
}

fn units() -> u32 {
  return select(params.L, params.L / 4u, VEC4);
}

// max over the units first, first + step, … of the row at `base` (vec4s if VEC4); −inf if there are none.
fn rowMax(base: u32, first: u32, step: u32) -> f32 {
  var m = -3.4028234663852886e38;
  if (VEC4) {
    var m4 = vec4f(m);
    for (var d = first; d < units(); d += step) { m4 = max(m4, x[base / 4u + d]); }
    return max(max(m4.x, m4.y), max(m4.z, m4.w));
  }
  for (var d = first; d < units(); d += step) { m = max(m, ld(base + d)); }
  return m;
}

fn rowExpSum(base: u32, first: u32, step: u32, m: f32) -> f32 {
  if (VEC4) {
    var s4 = vec4f(0.0);
    for (var d = first; d < units(); d += step) { s4 += exp(x[base / 4u + d] - m); }
    return (s4.x + s4.y) + (s4.z + s4.w);
  }
  var s = 0.0;
  for (var d = first; d < units(); d += step) { s += exp(ld(base + d) - m); }
  return s;
}

fn putStats(r: u32, m: f32, s: f32) {
  y[r >> 1u][(r & 1u) * 2u] = m;
  y[r >> 1u][(r & 1u) * 2u + 1u] = 1.0 / s;
}

@compute @workgroup_size(WG_SIZE)
fn main_stats(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &stats;
  let r = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (r >= params.R) { return; }
  let base = r * params.L;
  let m = rowMax(base, 0u, 1u);
  putStats(r, m, rowExpSum(base, 0u, 1u, m));
}

@compute @workgroup_size(WG_SIZE)
fn main_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (i >= params.V) { return; }
  if (VEC4) {
    let s = stats[i / (params.L / 4u)];
    y[i] = exp(x[i] - s.x) * s.y;
  } else {
    let s = stats[i / params.L];
    y[i >> 2u][i & 3u] = exp(ld(i) - s.x) * s.y;
  }
}

// ---- subgroup entry points (the portable shader ends above; see src/ops/subgroups.ts)

@compute @workgroup_size(WG_SIZE)
fn main_stats_sg(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32,
                 @builtin(subgroup_size) sgs: u32, @builtin(subgroup_invocation_id) sgi: u32) {
  _ = &stats;
  // No early return: every lane takes part in every subgroup operation (uniform control flow). Lanes are
  // counted (n, rank) rather than taken from subgroup_size, which a partial subgroup does not fill.
  let r = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  let n = subgroupAdd(1u);
  let rank = subgroupExclusiveAdd(1u);
  var mine = vec2f(0.0);
  for (var l = 0u; l < sgs; l++) {
    let base = min(subgroupShuffle(r, l), params.R - 1u) * params.L;  // lane l's row (past the end, or an absent lane's: some row, computed and dropped)
    let m = subgroupMax(rowMax(base, rank, n));
    let s = subgroupAdd(rowExpSum(base, rank, n, m));
    if (sgi == l) { mine = vec2f(m, s); }
  }
  if (r < params.R) { putStats(r, mine.x, mine.y); }
}
