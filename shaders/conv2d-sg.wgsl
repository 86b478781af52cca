// prefix: subgroups.wgsl, compute-f32.wgsl, gemm-epilogue.wgsl, conv2d.wgsl
// Part of the conv2d kernel, compiled after shaders/conv2d.wgsl on devices with `subgroups`.
// main_sg (CPU adapters with 4-wide subgroups): main_direct with 16 channels × 8 pixels per thread (32 vec4
// accumulators) and the weights shared through the subgroup. The 4 threads of a subgroup own the same 16
// output channels and 4 different 8-pixel groups; per tap each thread loads the weights of 4 of the channels
// (co0 + 4q + lane) and subgroupBroadcast hands every thread all 16. On SwiftShader a storage load whose
// index is not a compile-time constant is a 4-lane gather and dominates the direct kernel's time; this
// reads 12 scalars per tap for 128 multiply-adds (main_direct: 16 for 64). Any geometry (stride, padding,
// UPSAMPLE), taps walked as main_direct; IS_1X1 reads x as the B matrix with the Cin loop unrolled by 4.
// main_sg3: the same for 3×3 kernels at stride 1 when Wo is a multiple of 8, so a thread's 8 pixels lie in one
// output row: per (ci, ky) it loads the 10 input values under them once and slides the 3 taps over that
// window (10 loads instead of 24); row/column offsets and padding masks are computed once, outside the loop.
// The 9 taps are written out: on SwiftShader every loop iteration costs lane-mask bookkeeping over all the
// live accumulators: written out, it ran ~2.8× faster than with the (ky, kx) loops (CPU-time ratios to the FMA
// peak of the same run, 128 and 320 channels).
// Channels and pixels past the edge are clamped for loading and dropped when storing; no thread leaves early
// (a broadcast needs every lane). Requires subgroups of 4 consecutive invocations (local_invocation_index
// 4i..4i+3, as SwiftShader runs them) and WG_N a multiple of 4. A block is (16·WG_M) channels × (8·WG_N) pixels.

@compute @workgroup_size(THREADS)
fn main_sg(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32,
           @builtin(subgroup_invocation_id) lane: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let co0 = (tile / params.tilesN) * 16u * WG_M + 16u * (li / WG_N);
  let p0 = (tile % params.tilesN) * 8u * WG_N + 8u * (li % WG_N);
  let z = wid.z;
  let HW = params.H * params.W;
  let xBase = z * params.Cin * HW;
  // This thread's share of the weight rows: channels co0 + 4q + lane for q = 0..3, clamped.
  var wOff = min(vec4u(co0 + lane) + vec4u(0u, 4u, 8u, 12u), vec4u(params.Cout - 1u)) * params.Kg;
  let lastP = vec4u(params.P - 1u);
  let pLo = min(vec4u(p0) + vec4u(0u, 1u, 2u, 3u), lastP);
  let pHi = min(vec4u(p0) + vec4u(4u, 5u, 6u, 7u), lastP);
  let Hv = i32(select(params.H, 2u * params.H, UPSAMPLE));
  let Wv = i32(select(params.W, 2u * params.W, UPSAMPLE));
  let up = vec4u(select(0u, 1u, UPSAMPLE));
  let S = params.stride;
  let oyLo = pLo / params.Wo;
  let oyHi = pHi / params.Wo;
  let iyLo = vec4i(oyLo * S) - params.padTop;
  let iyHi = vec4i(oyHi * S) - params.padTop;
  let ixLo = vec4i((pLo - oyLo * params.Wo) * S) - params.padLeft;
  let ixHi = vec4i((pHi - oyHi * params.Wo) * S) - params.padLeft;
  let KH = params.KHW / params.KW;

  var c0 = vec4f(0.0); var d0 = vec4f(0.0); var c1 = vec4f(0.0); var d1 = vec4f(0.0);
  var c2 = vec4f(0.0); var d2 = vec4f(0.0); var c3 = vec4f(0.0); var d3 = vec4f(0.0);
  var c4 = vec4f(0.0); var d4 = vec4f(0.0); var c5 = vec4f(0.0); var d5 = vec4f(0.0);
  var c6 = vec4f(0.0); var d6 = vec4f(0.0); var c7 = vec4f(0.0); var d7 = vec4f(0.0);
  var c8 = vec4f(0.0); var d8 = vec4f(0.0); var c9 = vec4f(0.0); var d9 = vec4f(0.0);
  var c10 = vec4f(0.0); var d10 = vec4f(0.0); var c11 = vec4f(0.0); var d11 = vec4f(0.0);
  var c12 = vec4f(0.0); var d12 = vec4f(0.0); var c13 = vec4f(0.0); var d13 = vec4f(0.0);
  var c14 = vec4f(0.0); var d14 = vec4f(0.0); var c15 = vec4f(0.0); var d15 = vec4f(0.0);
  if (IS_1X1) {
    // x is B as stored ([Cin, P] per batch); the Cin loop is unrolled by 4, then the Cin % 4 tail.
    var bLo = xBase + pLo;
    var bHi = xBase + pHi;
    var b0: vec4f;
    var b1: vec4f;
    var w4: vec4f;
    var s: f32;
    let Cin4 = params.Cin & ~3u;
    var ci = 0u;
    for (; ci < Cin4; ci += 4u) {
      b0 = vec4f(x[bLo.x], x[bLo.y], x[bLo.z], x[bLo.w]);
      b1 = vec4f(x[bHi.x], x[bHi.y], x[bHi.z], x[bHi.w]);
      w4 = vec4f(loadW(wOff.x), loadW(wOff.y), loadW(wOff.z), loadW(wOff.w));
      s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
      s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
      s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
      s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
      s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
      s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
      s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
      s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
      s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
      s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
      s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
      s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
      s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
      s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
      s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
      s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
      bLo += vec4u(HW);
      bHi += vec4u(HW);
      b0 = vec4f(x[bLo.x], x[bLo.y], x[bLo.z], x[bLo.w]);
      b1 = vec4f(x[bHi.x], x[bHi.y], x[bHi.z], x[bHi.w]);
      w4 = vec4f(loadW(wOff.x + 1u), loadW(wOff.y + 1u), loadW(wOff.z + 1u), loadW(wOff.w + 1u));
      s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
      s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
      s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
      s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
      s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
      s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
      s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
      s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
      s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
      s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
      s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
      s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
      s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
      s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
      s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
      s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
      bLo += vec4u(HW);
      bHi += vec4u(HW);
      b0 = vec4f(x[bLo.x], x[bLo.y], x[bLo.z], x[bLo.w]);
      b1 = vec4f(x[bHi.x], x[bHi.y], x[bHi.z], x[bHi.w]);
      w4 = vec4f(loadW(wOff.x + 2u), loadW(wOff.y + 2u), loadW(wOff.z + 2u), loadW(wOff.w + 2u));
      s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
      s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
      s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
      s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
      s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
      s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
      s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
      s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
      s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
      s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
      s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
      s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
      s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
      s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
      s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
      s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
      bLo += vec4u(HW);
      bHi += vec4u(HW);
      b0 = vec4f(x[bLo.x], x[bLo.y], x[bLo.z], x[bLo.w]);
      b1 = vec4f(x[bHi.x], x[bHi.y], x[bHi.z], x[bHi.w]);
      w4 = vec4f(loadW(wOff.x + 3u), loadW(wOff.y + 3u), loadW(wOff.z + 3u), loadW(wOff.w + 3u));
      s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
      s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
      s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
      s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
      s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
      s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
      s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
      s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
      s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
      s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
      s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
      s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
      s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
      s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
      s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
      s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
      bLo += vec4u(HW);
      bHi += vec4u(HW);
      wOff += vec4u(4u);
    }
    for (; ci < params.Cin; ci++) {
      b0 = vec4f(x[bLo.x], x[bLo.y], x[bLo.z], x[bLo.w]);
      b1 = vec4f(x[bHi.x], x[bHi.y], x[bHi.z], x[bHi.w]);
      w4 = vec4f(loadW(wOff.x), loadW(wOff.y), loadW(wOff.z), loadW(wOff.w));
      s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
      s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
      s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
      s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
      s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
      s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
      s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
      s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
      s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
      s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
      s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
      s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
      s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
      s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
      s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
      s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
      bLo += vec4u(HW);
      bHi += vec4u(HW);
      wOff += vec4u(1u);
    }
  } else {
    for (var ci = 0u; ci < params.Cin; ci++) {
      let plane = xBase + ci * HW;
      for (var ky = 0u; ky < KH; ky++) {
        let yLo = iyLo + i32(ky);
        let yHi = iyHi + i32(ky);
        let rowOkLo = (yLo >= vec4i(0)) & (yLo < vec4i(Hv));
        let rowOkHi = (yHi >= vec4i(0)) & (yHi < vec4i(Hv));
        let rowLo = plane + (vec4u(clamp(yLo, vec4i(0), vec4i(Hv - 1))) >> up) * params.W;
        let rowHi = plane + (vec4u(clamp(yHi, vec4i(0), vec4i(Hv - 1))) >> up) * params.W;
        for (var kx = 0u; kx < params.KW; kx++) {
          let xLo = ixLo + i32(kx);
          let xHi = ixHi + i32(kx);
          let okLo = rowOkLo & (xLo >= vec4i(0)) & (xLo < vec4i(Wv));
          let okHi = rowOkHi & (xHi >= vec4i(0)) & (xHi < vec4i(Wv));
          let iLo = rowLo + (vec4u(clamp(xLo, vec4i(0), vec4i(Wv - 1))) >> up);
          let iHi = rowHi + (vec4u(clamp(xHi, vec4i(0), vec4i(Wv - 1))) >> up);
          let b0 = select(vec4f(0.0), vec4f(x[iLo.x], x[iLo.y], x[iLo.z], x[iLo.w]), okLo);
          let b1 = select(vec4f(0.0), vec4f(x[iHi.x], x[iHi.y], x[iHi.z], x[iHi.w]), okHi);
          // w4[q] = weight of channel co0 + 4q + lane at this tap; channel co0 + 4q + l is lane l's w4[q].
          let w4 = vec4f(loadW(wOff.x), loadW(wOff.y), loadW(wOff.z), loadW(wOff.w));
          var s: f32;
          s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
          s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
          s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
          s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
          s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
          s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
          s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
          s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
          s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
          s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
          s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
          s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
          s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
          s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
          s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
          s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
          wOff += vec4u(1u);
        }
      }
    }
  }

  let oBase = z * params.Cout * params.P;
  store(oBase, co0 + 0u, p0, c0); store(oBase, co0 + 0u, p0 + 4u, d0);
  store(oBase, co0 + 1u, p0, c1); store(oBase, co0 + 1u, p0 + 4u, d1);
  store(oBase, co0 + 2u, p0, c2); store(oBase, co0 + 2u, p0 + 4u, d2);
  store(oBase, co0 + 3u, p0, c3); store(oBase, co0 + 3u, p0 + 4u, d3);
  store(oBase, co0 + 4u, p0, c4); store(oBase, co0 + 4u, p0 + 4u, d4);
  store(oBase, co0 + 5u, p0, c5); store(oBase, co0 + 5u, p0 + 4u, d5);
  store(oBase, co0 + 6u, p0, c6); store(oBase, co0 + 6u, p0 + 4u, d6);
  store(oBase, co0 + 7u, p0, c7); store(oBase, co0 + 7u, p0 + 4u, d7);
  store(oBase, co0 + 8u, p0, c8); store(oBase, co0 + 8u, p0 + 4u, d8);
  store(oBase, co0 + 9u, p0, c9); store(oBase, co0 + 9u, p0 + 4u, d9);
  store(oBase, co0 + 10u, p0, c10); store(oBase, co0 + 10u, p0 + 4u, d10);
  store(oBase, co0 + 11u, p0, c11); store(oBase, co0 + 11u, p0 + 4u, d11);
  store(oBase, co0 + 12u, p0, c12); store(oBase, co0 + 12u, p0 + 4u, d12);
  store(oBase, co0 + 13u, p0, c13); store(oBase, co0 + 13u, p0 + 4u, d13);
  store(oBase, co0 + 14u, p0, c14); store(oBase, co0 + 14u, p0 + 4u, d14);
  store(oBase, co0 + 15u, p0, c15); store(oBase, co0 + 15u, p0 + 4u, d15);
}

@compute @workgroup_size(THREADS)
fn main_sg3(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32,
            @builtin(subgroup_invocation_id) lane: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let co0 = (tile / params.tilesN) * 16u * WG_M + 16u * (li / WG_N);
  // A group past the last pixel computes the last group again (in bounds) and stores nothing.
  let pg = (tile % params.tilesN) * 8u * WG_N + 8u * (li % WG_N);
  let p0 = min(pg, params.P - 8u);
  let z = wid.z;
  let HW = params.H * params.W;
  let xBase = z * params.Cin * HW;
  var wOff = min(vec4u(co0 + lane) + vec4u(0u, 4u, 8u, 12u), vec4u(params.Cout - 1u)) * params.Kg;
  let Hv = i32(select(params.H, 2u * params.H, UPSAMPLE));
  let Wv = i32(select(params.W, 2u * params.W, UPSAMPLE));
  let up = select(0u, 1u, UPSAMPLE);
  let oy = p0 / params.Wo;
  let ox = p0 - oy * params.Wo;
  // Input rows under ky = 0, 1, 2 and the 10 input columns under the 8 pixels and 3 taps, in the (upsampled)
  // padded frame: clamped offsets and in-bounds masks, fixed for the whole reduction.
  let iy = vec3i(i32(oy) - params.padTop) + vec3i(0, 1, 2);
  let rowOk = (iy >= vec3i(0)) & (iy < vec3i(Hv));
  let rowOff = (vec3u(clamp(iy, vec3i(0), vec3i(Hv - 1))) >> vec3u(up)) * params.W;
  let ix0 = i32(ox) - params.padLeft;
  let cA = vec4i(ix0) + vec4i(0, 1, 2, 3);
  let cB = vec4i(ix0) + vec4i(4, 5, 6, 7);
  let cC = vec2i(ix0) + vec2i(8, 9);
  let okA = (cA >= vec4i(0)) & (cA < vec4i(Wv));
  let okB = (cB >= vec4i(0)) & (cB < vec4i(Wv));
  let okC = (cC >= vec2i(0)) & (cC < vec2i(Wv));
  let colA = vec4u(clamp(cA, vec4i(0), vec4i(Wv - 1))) >> vec4u(up);
  let colB = vec4u(clamp(cB, vec4i(0), vec4i(Wv - 1))) >> vec4u(up);
  let colC = vec2u(clamp(cC, vec2i(0), vec2i(Wv - 1))) >> vec2u(up);

  var c0 = vec4f(0.0); var d0 = vec4f(0.0); var c1 = vec4f(0.0); var d1 = vec4f(0.0);
  var c2 = vec4f(0.0); var d2 = vec4f(0.0); var c3 = vec4f(0.0); var d3 = vec4f(0.0);
  var c4 = vec4f(0.0); var d4 = vec4f(0.0); var c5 = vec4f(0.0); var d5 = vec4f(0.0);
  var c6 = vec4f(0.0); var d6 = vec4f(0.0); var c7 = vec4f(0.0); var d7 = vec4f(0.0);
  var c8 = vec4f(0.0); var d8 = vec4f(0.0); var c9 = vec4f(0.0); var d9 = vec4f(0.0);
  var c10 = vec4f(0.0); var d10 = vec4f(0.0); var c11 = vec4f(0.0); var d11 = vec4f(0.0);
  var c12 = vec4f(0.0); var d12 = vec4f(0.0); var c13 = vec4f(0.0); var d13 = vec4f(0.0);
  var c14 = vec4f(0.0); var d14 = vec4f(0.0); var c15 = vec4f(0.0); var d15 = vec4f(0.0);
  for (var ci = 0u; ci < params.Cin; ci++) {
    let plane = xBase + ci * HW;
    var va: vec4f; var vb: vec4f; var vc: vec2f; var b0: vec4f; var b1: vec4f; var w4: vec4f; var r: u32; var s: f32;
    r = plane + rowOff.x;
    va = select(vec4f(0.0), vec4f(x[r + colA.x], x[r + colA.y], x[r + colA.z], x[r + colA.w]), okA & vec4<bool>(rowOk.x));
    vb = select(vec4f(0.0), vec4f(x[r + colB.x], x[r + colB.y], x[r + colB.z], x[r + colB.w]), okB & vec4<bool>(rowOk.x));
    vc = select(vec2f(0.0), vec2f(x[r + colC.x], x[r + colC.y]), okC & vec2<bool>(rowOk.x));
    // tap (0, 0)
    b0 = va; b1 = vb;
    w4 = vec4f(loadW(wOff.x + 0u), loadW(wOff.y + 0u), loadW(wOff.z + 0u), loadW(wOff.w + 0u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    // tap (0, 1)
    b0 = vec4f(va.yzw, vb.x); b1 = vec4f(vb.yzw, vc.x);
    w4 = vec4f(loadW(wOff.x + 1u), loadW(wOff.y + 1u), loadW(wOff.z + 1u), loadW(wOff.w + 1u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    // tap (0, 2)
    b0 = vec4f(va.zw, vb.xy); b1 = vec4f(vb.zw, vc);
    w4 = vec4f(loadW(wOff.x + 2u), loadW(wOff.y + 2u), loadW(wOff.z + 2u), loadW(wOff.w + 2u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    r = plane + rowOff.y;
    va = select(vec4f(0.0), vec4f(x[r + colA.x], x[r + colA.y], x[r + colA.z], x[r + colA.w]), okA & vec4<bool>(rowOk.y));
    vb = select(vec4f(0.0), vec4f(x[r + colB.x], x[r + colB.y], x[r + colB.z], x[r + colB.w]), okB & vec4<bool>(rowOk.y));
    vc = select(vec2f(0.0), vec2f(x[r + colC.x], x[r + colC.y]), okC & vec2<bool>(rowOk.y));
    // tap (1, 0)
    b0 = va; b1 = vb;
    w4 = vec4f(loadW(wOff.x + 3u), loadW(wOff.y + 3u), loadW(wOff.z + 3u), loadW(wOff.w + 3u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    // tap (1, 1)
    b0 = vec4f(va.yzw, vb.x); b1 = vec4f(vb.yzw, vc.x);
    w4 = vec4f(loadW(wOff.x + 4u), loadW(wOff.y + 4u), loadW(wOff.z + 4u), loadW(wOff.w + 4u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    // tap (1, 2)
    b0 = vec4f(va.zw, vb.xy); b1 = vec4f(vb.zw, vc);
    w4 = vec4f(loadW(wOff.x + 5u), loadW(wOff.y + 5u), loadW(wOff.z + 5u), loadW(wOff.w + 5u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    r = plane + rowOff.z;
    va = select(vec4f(0.0), vec4f(x[r + colA.x], x[r + colA.y], x[r + colA.z], x[r + colA.w]), okA & vec4<bool>(rowOk.z));
    vb = select(vec4f(0.0), vec4f(x[r + colB.x], x[r + colB.y], x[r + colB.z], x[r + colB.w]), okB & vec4<bool>(rowOk.z));
    vc = select(vec2f(0.0), vec2f(x[r + colC.x], x[r + colC.y]), okC & vec2<bool>(rowOk.z));
    // tap (2, 0)
    b0 = va; b1 = vb;
    w4 = vec4f(loadW(wOff.x + 6u), loadW(wOff.y + 6u), loadW(wOff.z + 6u), loadW(wOff.w + 6u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    // tap (2, 1)
    b0 = vec4f(va.yzw, vb.x); b1 = vec4f(vb.yzw, vc.x);
    w4 = vec4f(loadW(wOff.x + 7u), loadW(wOff.y + 7u), loadW(wOff.z + 7u), loadW(wOff.w + 7u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    // tap (2, 2)
    b0 = vec4f(va.zw, vb.xy); b1 = vec4f(vb.zw, vc);
    w4 = vec4f(loadW(wOff.x + 8u), loadW(wOff.y + 8u), loadW(wOff.z + 8u), loadW(wOff.w + 8u));
    s = subgroupBroadcast(w4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(w4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(w4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(w4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(w4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(w4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(w4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(w4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(w4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(w4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(w4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(w4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(w4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(w4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(w4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(w4.w, 3u); c15 += s * b0; d15 += s * b1;
    wOff += vec4u(9u);
  }

  if (pg >= params.P) { return; }
  let oBase = z * params.Cout * params.P;
  store(oBase, co0 + 0u, p0, c0); store(oBase, co0 + 0u, p0 + 4u, d0);
  store(oBase, co0 + 1u, p0, c1); store(oBase, co0 + 1u, p0 + 4u, d1);
  store(oBase, co0 + 2u, p0, c2); store(oBase, co0 + 2u, p0 + 4u, d2);
  store(oBase, co0 + 3u, p0, c3); store(oBase, co0 + 3u, p0 + 4u, d3);
  store(oBase, co0 + 4u, p0, c4); store(oBase, co0 + 4u, p0 + 4u, d4);
  store(oBase, co0 + 5u, p0, c5); store(oBase, co0 + 5u, p0 + 4u, d5);
  store(oBase, co0 + 6u, p0, c6); store(oBase, co0 + 6u, p0 + 4u, d6);
  store(oBase, co0 + 7u, p0, c7); store(oBase, co0 + 7u, p0 + 4u, d7);
  store(oBase, co0 + 8u, p0, c8); store(oBase, co0 + 8u, p0 + 4u, d8);
  store(oBase, co0 + 9u, p0, c9); store(oBase, co0 + 9u, p0 + 4u, d9);
  store(oBase, co0 + 10u, p0, c10); store(oBase, co0 + 10u, p0 + 4u, d10);
  store(oBase, co0 + 11u, p0, c11); store(oBase, co0 + 11u, p0 + 4u, d11);
  store(oBase, co0 + 12u, p0, c12); store(oBase, co0 + 12u, p0 + 4u, d12);
  store(oBase, co0 + 13u, p0, c13); store(oBase, co0 + 13u, p0 + 4u, d13);
  store(oBase, co0 + 14u, p0, c14); store(oBase, co0 + 14u, p0 + 4u, d14);
  store(oBase, co0 + 15u, p0, c15); store(oBase, co0 + 15u, p0 + 4u, d15);
}
