// Counts non-finite values (NaN, ±Inf) of a float32 tensor into count[0].
// Tested on the exponent bits: WGSL lets compilers assume float math is finite, so `x != x` may fold away.
// Dispatch: grid-folded ceil(N / (WG_SIZE * 4)) workgroups; each invocation checks 4 values.
override WG_SIZE: u32 = 256;

struct Params {
  N: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> count: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let base = ((wid.x + wid.y * nwg.x) * WG_SIZE + li) * 4u;
  var bad = 0u;
  for (var k = 0u; k < 4u; k++) {
    let i = base + k;
    if (i < params.N && (x[i] & 0x7f800000u) == 0x7f800000u) {
      bad++;
    }
  }
  if (bad > 0u) {
    atomicAdd(&count[0], bad);
  }
}
