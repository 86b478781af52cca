// Concatenation, one input per dispatch: y[o, offset + j] = x[o, j] with every tensor viewed as
// [outer, inner] around the concat dim (inner = size(dim) · prod(dims after)).
// Dispatch: rt.grid(ceil(outer·inner / WG_SIZE)), one element per invocation.
// Bindings: 0 x, 1 y, 2 params. Matches test/reference/concat.ts.

override WG_SIZE: u32 = 256;

struct Params {
  total: u32,     // outer · inner of this input
  inner: u32,
  outInner: u32,  // inner of the output (sum over inputs)
  offset: u32,    // where this input starts inside an output row
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (i >= params.total) { return; }
  let o = i / params.inner;
  let j = i - o * params.inner;
  y[o * params.outInner + params.offset + j] = x[i];
}
