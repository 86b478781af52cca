// Softmax over the last dim L, max-subtracted: y[r, l] = exp(x[r, l] − max_r) / Σ_l exp(x[r, l] − max_r).
// Dispatch: rt.grid(R), one workgroup of WG_SIZE per row. Bindings: 0 x, 1 y, 2 params.
// Matches test/reference/softmax.ts.

override WG_SIZE: u32 = 64;

struct Params {
  R: u32,
  L: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> red: array<f32, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= params.R) { return; }
  let L = params.L;
  let base = r * L;
  var m = -3.402823e38;
  for (var l = li; l < L; l += WG_SIZE) { m = max(m, x[base + l]); }
  red[li] = m;
  workgroupBarrier();
  for (var h = WG_SIZE / 2u; h > 0u; h >>= 1u) {
    if (li < h) { red[li] = max(red[li], red[li + h]); }
    workgroupBarrier();
  }
  let rowMax = red[0];
  workgroupBarrier();
  var s = 0.0;
  for (var l = li; l < L; l += WG_SIZE) { s += exp(x[base + l] - rowMax); }
  red[li] = s;
  workgroupBarrier();
  for (var h = WG_SIZE / 2u; h > 0u; h >>= 1u) {
    if (li < h) { red[li] += red[li + h]; }
    workgroupBarrier();
  }
  let inv = 1.0 / red[0];
  for (var l = li; l < L; l += WG_SIZE) { y[base + l] = exp(x[base + l] - rowMax) * inv; }
}
