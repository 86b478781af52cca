// LayerNorm over the last dim D (biased variance, eps inside the sqrt, affine):
//   y[r, d] = (x[r, d] − mean[r]) / sqrt(var[r] + eps) · weight[d] + bias[d]
// Two passes over the row (mean, then Σ(x − mean)²), so a large common offset costs no precision.
// Dispatch: rt.grid(R), one workgroup of WG_SIZE per row. Bindings: 0 x, 1 weight, 2 bias, 3 y, 4 params.
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

var<workgroup> red: array<f32, WG_SIZE>;

fn wgSum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var h = WG_SIZE / 2u; h > 0u; h >>= 1u) {
    if (li < h) { red[li] += red[li + h]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= params.R) { return; }
  let D = params.D;
  let base = r * D;
  var s = 0.0;
  for (var d = li; d < D; d += WG_SIZE) { s += x[base + d]; }
  let mean = wgSum(li, s) / f32(D);
  var q = 0.0;
  for (var d = li; d < D; d += WG_SIZE) {
    let t = x[base + d] - mean;
    q += t * t;
  }
  let rstd = 1.0 / sqrt(wgSum(li, q) / f32(D) + params.eps);
  for (var d = li; d < D; d += WG_SIZE) {
    y[base + d] = (x[base + d] - mean) * rstd * weight[d] + bias[d];
  }
}
