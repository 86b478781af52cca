// LayerNorm over the last dim D (biased variance, eps inside the sqrt, affine):
//   y[r, d] = (x[r, d] − mean[r]) / sqrt(var[r] + eps) · weight[d] + bias[d]
// Two passes over the row (mean, then Σ(x − mean)²), so a large common offset costs no precision.
// One invocation per row, no workgroup memory: rows are short (≤ 1280 in SD/CLIP) and numerous (tokens), and
// barrier-based reductions cost far more than the row traffic on CPU adapters.
// Dispatch: rt.grid(ceil(R / WG_SIZE)). Bindings: 0 x, 1 weight, 2 bias, 3 y, 4 params.
// Matches test/reference/layer-norm.ts.

override WG_SIZE: u32 = 64;

struct Params {
  R: u32,
  D: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (r >= params.R) { return; }
  let D = params.D;
  let base = r * D;
  var s = 0.0;
  for (var d = 0u; d < D; d++) { s += x[base + d]; }
  let mean = s / f32(D);
  var q = 0.0;
  for (var d = 0u; d < D; d++) {
    let t = x[base + d] - mean;
    q += t * t;
  }
  let rstd = 1.0 / sqrt(q / f32(D) + params.eps);
  for (var d = 0u; d < D; d++) {
    y[base + d] = (x[base + d] - mean) * rstd * weight[d] + bias[d];
  }
}
