// Device FMA-peak probe (benchmark only): every invocation runs 8 independent vec4 multiply-add chains,
// so the loop is bound by arithmetic throughput, not by memory or latency.
// FLOPs per invocation = ITERS · 8 chains · 4 lanes · 2. Dispatch: rt.grid(n / WG_SIZE), 1 f32 out each.
// Bindings: 0 out (written once so the chains are not dead code), 1 params.

override WG_SIZE: u32 = 64;

struct Params {
  ITERS: u32,
  c: f32,     // runtime value, so the compiler cannot fold the chains
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_SIZE;
  let m = vec4f(0.999, 0.998, 0.997, 0.996);
  let c = vec4f(params.c);
  var a0 = vec4f(f32(i) * 1e-7);
  var a1 = a0 + 1.0;
  var a2 = a0 + 2.0;
  var a3 = a0 + 3.0;
  var a4 = a0 + 4.0;
  var a5 = a0 + 5.0;
  var a6 = a0 + 6.0;
  var a7 = a0 + 7.0;
  for (var t = 0u; t < params.ITERS; t++) {
    a0 = fma(a0, m, c);
    a1 = fma(a1, m, c);
    a2 = fma(a2, m, c);
    a3 = fma(a3, m, c);
    a4 = fma(a4, m, c);
    a5 = fma(a5, m, c);
    a6 = fma(a6, m, c);
    a7 = fma(a7, m, c);
  }
  out[i] = dot(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7, vec4f(1.0));
}
