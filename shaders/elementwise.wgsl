// Elementwise f32 ops over contiguous tensors, four values per invocation.
//   main_binary: y = a + b | a * b | alpha·a + beta·b          (OP 0 | 1 | 2)
//   main_unary:  y = alpha·a | silu(a) | gelu_erf(a) | gelu_tanh(a) | quick_gelu(a)   (OP 0..4); b unused
//   main_add_per_channel: y[n,c,s] = a[n,c,s] + b[n,c]         (b is [N·C]; HW4: HW % 4 == 0)
//   main_geglu: y[r,f] = a[r,f] · gelu_erf(a[r,F+f])           (a is [R, 2F]; F4: F % 4 == 0)
// Tensors are bound as array<vec4f>: pool buffers are padded to 256 B, so the last vec4 of an
// N-element tensor is always inside its buffer (values past N are computed and never read).
// Scalar fallbacks address element j as a[j >> 2][j & 3].
// Dispatch: rt.grid(ceil(V / WG_SIZE)), V = vec4s (or elements for the scalar fallbacks).
// Bindings: 0 a, 1 b, 2 y, 3 params. Matches test/reference/elementwise.ts.

override WG_SIZE: u32 = 256;
override OP: u32 = 0u;
override HW4: bool = true;
override F4: bool = true;

struct Params {
  V: u32,       // invocations with work: vec4 count, or element count for scalar fallbacks
  alpha: f32,
  beta: f32,
  HW: u32,      // add_per_channel: spatial size
  F: u32,       // geglu: output features
}

@group(0) @binding(0) var<storage, read> a: array<vec4f>;
@group(0) @binding(1) var<storage, read> b: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4f>;
@group(0) @binding(3) var<uniform> params: Params;

// erfc(z) for z >= 0 (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7 relative to 1), kept as erfc so that
// gelu on the negative side keeps its relative precision instead of computing 1 + (−1 + tiny).
fn erfcPos(z: vec4f) -> vec4f {
  let t = 1.0 / (1.0 + 0.3275911 * z);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return poly * exp(-z * z);
}

// 0.5·x·(1 + erf(x/√2)) = 0.5·x·(2 − erfc(|x|/√2)) for x ≥ 0, 0.5·x·erfc(|x|/√2) for x < 0.
fn geluErf(x: vec4f) -> vec4f {
  let e = erfcPos(abs(x) * 0.70710678118654752);
  return 0.5 * x * select(e, 2.0 - e, x >= vec4f(0.0));
}

// exp(-v) overflows to +inf for very negative v; x / inf = 0 is the right limit, so no clamp is needed.
fn sigmoidMul(x: vec4f, v: vec4f) -> vec4f {
  return x / (1.0 + exp(-v));
}

fn unary(x: vec4f) -> vec4f {
  if (OP == 0u) { return params.alpha * x; }
  if (OP == 1u) { return sigmoidMul(x, x); }
  if (OP == 2u) { return geluErf(x); }
  if (OP == 3u) {
    // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u): no tanh overflow for large |x|.
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return sigmoidMul(x, 2.0 * u);
  }
  return sigmoidMul(x, 1.702 * x);
}

fn linearId(wid: vec3u, nwg: vec3u, li: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG_SIZE + li;
}

@compute @workgroup_size(WG_SIZE)
fn main_binary(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = linearId(wid, nwg, li);
  if (i >= params.V) { return; }
  let u = a[i];
  let v = b[i];
  if (OP == 0u) { y[i] = u + v; }
  else if (OP == 1u) { y[i] = u * v; }
  else { y[i] = params.alpha * u + params.beta * v; }
}

@compute @workgroup_size(WG_SIZE)
fn main_unary(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &b;
  let i = linearId(wid, nwg, li);
  if (i >= params.V) { return; }
  y[i] = unary(a[i]);
}

@compute @workgroup_size(WG_SIZE)
fn main_add_per_channel(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = linearId(wid, nwg, li);
  if (i >= params.V) { return; }
  if (HW4) {
    let nc = (i * 4u) / params.HW;
    y[i] = a[i] + b[nc >> 2u][nc & 3u];
  } else {
    let nc = i / params.HW;
    y[i >> 2u][i & 3u] = a[i >> 2u][i & 3u] + b[nc >> 2u][nc & 3u];
  }
}

@compute @workgroup_size(WG_SIZE)
fn main_geglu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = &b;
  let i = linearId(wid, nwg, li);
  if (i >= params.V) { return; }
  let F = params.F;
  if (F4) {
    // i is a vec4 of the output; its row r holds F/4 vec4s, the input row 2F/4.
    let F4n = F >> 2u;
    let r = i / F4n;
    let f = i - r * F4n;
    let base = r * 2u * F4n + f;
    y[i] = a[base] * geluErf(a[base + F4n]);
  } else {
    let r = i / F;
    let f = i - r * F;
    let j = r * 2u * F + f;
    let g = j + F;
    let v = a[j >> 2u][j & 3u] * geluErf(vec4f(a[g >> 2u][g & 3u])).x;
    y[i >> 2u][i & 3u] = v;
  }
}
