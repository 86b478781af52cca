// Shader copy-bandwidth probe (benchmark only): dst[i] = src[i] over vec4s; bytes moved = 2 · 16 · N.
// Dispatch: rt.grid(ceil(N / WG_SIZE)). Bindings: 0 src, 1 dst, 2 params.

override WG_SIZE: u32 = 256;

struct Params {
  N: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4f>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_SIZE;
  if (i >= params.N) { return; }
  dst[i] = src[i];
}
