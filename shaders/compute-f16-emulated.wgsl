// snippet: f16 compute emulated in f32, for devices without `shader-f16` (tests). Replaces
// shaders/compute-f32.wgsl in front of shaders/matmul.wgsl or shaders/conv2d.wgsl: the operand tiles stay f32,
// but every operand is rounded to f16 as it enters them, as the f16 instantiation stores it
// (src/ops/gemm-compute.ts: the same clamp to ±65504, then vec4<f16>()). Both then multiply in f32, where the
// product of two f16 values is exact, and accumulate in f32, so this reproduces the f16 kernel's arithmetic.
// The rounding is written out as round to nearest, ties to even, with f16 subnormals kept (the rounding of
// src/runtime/dtype.ts f32ToF16 and of GPU conversion instructions). quantizeToF16 is not used: WGSL lets it
// take either neighbour, and SwiftShader's truncates and flushes f16 subnormals to zero.
alias ct = f32;

fn to_ct(v: vec4f) -> vec4<ct> {
  let c = clamp(v, vec4f(-65504.0), vec4f(65504.0));
  // f16 keeps 11 significant bits down to 2^-14, then a fixed step of 2^-24: the step is 2^s with
  // s = max(E − 10, −24) for |c| in [2^E, 2^(E+1)). c / 2^s is exact, round() ties to even.
  let E = vec4i((bitcast<vec4u>(c) >> vec4u(23u)) & vec4u(0xffu)) - vec4i(127);
  let s = max(E - vec4i(10), vec4i(-24));
  return ldexp(round(ldexp(c, -s)), s);
}
