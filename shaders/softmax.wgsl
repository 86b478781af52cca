// Softmax over the last dim L, max-subtracted: y[r, l] = exp(x[r, l] − max_r) / Σ_l exp(x[r, l] − max_r).
// One invocation per row, no workgroup memory (barrier-based reductions cost more than the row traffic on
// CPU adapters; attention has its own fused softmax, so rows here are short).
// Dispatch: rt.grid(ceil(R / WG_SIZE)). Bindings: 0 x, 1 y, 2 params. Matches test/reference/softmax.ts.

override WG_SIZE: u32 = 64;

struct Params {
  R: u32,
  L: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (r >= params.R) { return; }
  let L = params.L;
  let base = r * L;
  var m = x[base];
  for (var l = 1u; l < L; l++) { m = max(m, x[base + l]); }
  var s = 0.0;
  for (var l = 0u; l < L; l++) { s += exp(x[base + l] - m); }
  let inv = 1.0 / s;
  for (var l = 0u; l < L; l++) { y[base + l] = exp(x[base + l] - m) * inv; }
}
