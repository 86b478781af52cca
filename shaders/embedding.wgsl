// Sinusoidal embeddings, [N] → [N, dim], half = ⌊dim/2⌋, odd dim → a zero last column.
//   timestep (diffusers get_timestep_embedding / fm-boosting timestep_embedding):
//     a = t[n]·f[i];            y[n] = [cos(a), sin(a)] (COS_FIRST) or [sin(a), cos(a)]
//   guidance (LCM get_guidance_scale_embedding, GUIDANCE): a = (w[n]·1000)·f[i]; y[n] = [sin(a), cos(a)]
// f[i] comes from the dispatcher, rounded to float32 exactly as the torch references compute it; a is
// rounded to float32 here as there. sin/cos use their own range reduction (three-part π/2, exact for
// |a| < ~12,000) and minimax polynomials, because builtin sin/cos are only specified on [−π, π] and
// a reaches 1000 (timesteps) and 10⁴ (guidance).
// Dispatch: rt.grid(ceil(N·half / WG_SIZE)). Bindings: 0 t, 1 freqs, 2 y, 3 params.
// Matches test/reference/embedding.ts.

override WG_SIZE: u32 = 64;
override COS_FIRST: bool = true;
override GUIDANCE: bool = false;

struct Params {
  N: u32,
  dim: u32,
  half: u32,
}

@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read> freqs: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// (sin a, cos a): a = k·π/2 + r, |r| ≤ π/4, π/2 split into three parts with short mantissas so k·P1, k·P2
// are exact in f32 (Cody–Waite); polynomials are the Cephes single-precision sinf/cosf ones.
fn sincos(a: f32) -> vec2f {
  let k = round(a * 0.63661977236758134);
  var r = a - k * 1.5703125;
  r = r - k * 4.837512969970703125e-4;
  r = r - k * 7.5497901264e-8;
  let z = r * r;
  let s = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
  let c = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2);
  let q = i32(k) & 3;
  if (q == 0) { return vec2f(s, c); }
  if (q == 1) { return vec2f(c, -s); }
  if (q == 2) { return vec2f(-s, -c); }
  return vec2f(-c, s);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  let half = params.half;
  if (id >= params.N * half) { return; }
  let n = id / half;
  let i = id - n * half;
  var v = t[n];
  if (GUIDANCE) { v = v * 1000.0; }
  let sc = sincos(v * freqs[i]);
  let row = n * params.dim;
  if (COS_FIRST) {
    y[row + i] = sc.y;
    y[row + half + i] = sc.x;
  } else {
    y[row + i] = sc.x;
    y[row + half + i] = sc.y;
  }
  if (i == 0u && params.dim > 2u * half) { y[row + params.dim - 1u] = 0.0; }
}
