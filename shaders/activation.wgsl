// snippet: activation functions for fused epilogues; dispatchers concatenate it in front of a kernel.
// activate(x, kind): kind 0 none, 1 silu, 2 gelu (erf form), 3 gelu_tanh, 4 quick_gelu — the same numbering
// as ACTIVATIONS in src/ops/matmul.ts. Kernels pass an `override ACT: u32`, so the switch folds away.
// Matches test/reference/matmul.ts activationRef.

// erf(a) for 0 ≤ a < 1: Taylor series in a² up to a^21 (truncation < 1.1e-9 at a = 1).
fn erfSmall(a: vec4f) -> vec4f {
  let s = a * a;
  var p = vec4f(1.4807192815879218e-08);
  p = fma(p, s, vec4f(-1.6365844691234924e-07));
  p = fma(p, s, vec4f(1.6462114365889246e-06));
  p = fma(p, s, vec4f(-1.492565035840625e-05));
  p = fma(p, s, vec4f(1.2055332981789664e-04));
  p = fma(p, s, vec4f(-8.548327023450852e-04));
  p = fma(p, s, vec4f(5.223977625442188e-03));
  p = fma(p, s, vec4f(-2.6866170645131252e-02));
  p = fma(p, s, vec4f(0.11283791670955126));
  p = fma(p, s, vec4f(-0.37612638903183754));
  p = fma(p, s, vec4f(1.1283791670955126));
  return p * a;
}

// erfc(a) for a ≥ 1: Chebyshev-fitted exponent (Numerical Recipes' erfcc, fractional error < 1.2e-7), so the
// tail keeps its relative accuracy where 1 − erf would cancel.
fn erfcLarge(a: vec4f) -> vec4f {
  let t = 1.0 / (1.0 + 0.5 * a);
  var p = vec4f(0.17087277);
  p = fma(p, t, vec4f(-0.82215223));
  p = fma(p, t, vec4f(1.48851587));
  p = fma(p, t, vec4f(-1.13520398));
  p = fma(p, t, vec4f(0.27886807));
  p = fma(p, t, vec4f(-0.18628806));
  p = fma(p, t, vec4f(0.09678418));
  p = fma(p, t, vec4f(0.37409196));
  p = fma(p, t, vec4f(1.00002368));
  p = fma(p, t, vec4f(-1.26551223));
  return t * exp(p - a * a);
}

// 0.5·x·(1 + erf(x/√2)); |error of the erf part| ≲ 1e-8 before f32 rounding.
fn geluErfV(x: vec4f) -> vec4f {
  let z = x * 0.70710678118654752;
  let a = abs(z);
  let small = 1.0 + sign(z) * erfSmall(min(a, vec4f(1.0)));
  let tail = erfcLarge(max(a, vec4f(1.0)));
  let onePlusErf = select(select(tail, 2.0 - tail, z > vec4f(0.0)), small, a < vec4f(1.0));
  return 0.5 * x * onePlusErf;
}

// x·sigmoid(v). exp(−v) overflows to +inf for very negative v and x / inf = 0 is the right limit.
fn mulSigmoidV(x: vec4f, v: vec4f) -> vec4f {
  return x / (1.0 + exp(-v));
}

fn activate(x: vec4f, kind: u32) -> vec4f {
  switch kind {
    case 1u: { return mulSigmoidV(x, x); }
    case 2u: { return geluErfV(x); }
    // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u), which has no tanh overflow for large |x|.
    case 3u: { return mulSigmoidV(x, 1.5957691216057308 * (x + 0.044715 * x * x * x)); }
    case 4u: { return mulSigmoidV(x, 1.702 * x); }
    default: { return x; }
  }
}
