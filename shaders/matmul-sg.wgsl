// prefix: subgroups.wgsl, compute-f32.wgsl, activation.wgsl, gemm-epilogue.wgsl, matmul.wgsl
// Part of the matmul kernel, compiled after shaders/matmul.wgsl on devices with `subgroups`.
// main_sg (CPU adapters with 4-wide subgroups): main_direct with a 16 × 8 register tile per thread (32 vec4
// accumulators) and the A rows shared through the subgroup. The 4 threads of a subgroup own the same 16 rows
// and 4 different 8-column groups; per k each thread loads 4 of the 16 A values (rows 4q + lane) and
// subgroupBroadcast hands every thread all 16. On SwiftShader a storage load whose index is not a
// compile-time constant is a 4-lane gather, and most of the direct kernel's time went to them: this reads
// 12 scalars per k instead of 16 for twice the multiply-adds. Rows and columns past the edge are clamped
// for loading and dropped when storing; no thread leaves early (a broadcast needs every lane).
// Requires a subgroup of 4 consecutive invocations (local_invocation_index 4i..4i+3, as SwiftShader runs
// them) and WG_N a multiple of 4, so a subgroup never straddles two row groups. A block is (16·WG_M) × (8·WG_N).

@compute @workgroup_size(THREADS)
fn main_sg(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32,
           @builtin(subgroup_invocation_id) lane: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let m0 = (tile / params.tilesN) * 16u * WG_M + 16u * (li / WG_N);
  let n0 = (tile % params.tilesN) * 8u * WG_N + 8u * (li % WG_N);
  let z = wid.z;
  let K = params.K;
  let lastM = params.M - 1u;
  let lastN = params.N - 1u;
  // This thread's share of the A rows: m0 + 4q + lane for q = 0..3 (clamped, so the K loop has no checks).
  let aRow = z * params.strideA + min(vec4u(m0 + lane) + vec4u(0u, 4u, 8u, 12u), vec4u(lastM)) * K;
  let colsLo = min(vec4u(n0) + vec4u(0u, 1u, 2u, 3u), vec4u(lastN));
  let colsHi = min(vec4u(n0) + vec4u(4u, 5u, 6u, 7u), vec4u(lastN));
  var bLo = z * params.strideB + select(colsLo, colsLo * K, TRANS_B);
  var bHi = z * params.strideB + select(colsHi, colsHi * K, TRANS_B);
  let bStep = vec4u(select(params.N, 1u, TRANS_B));

  var c0 = vec4f(0.0); var d0 = vec4f(0.0); var c1 = vec4f(0.0); var d1 = vec4f(0.0);
  var c2 = vec4f(0.0); var d2 = vec4f(0.0); var c3 = vec4f(0.0); var d3 = vec4f(0.0);
  var c4 = vec4f(0.0); var d4 = vec4f(0.0); var c5 = vec4f(0.0); var d5 = vec4f(0.0);
  var c6 = vec4f(0.0); var d6 = vec4f(0.0); var c7 = vec4f(0.0); var d7 = vec4f(0.0);
  var c8 = vec4f(0.0); var d8 = vec4f(0.0); var c9 = vec4f(0.0); var d9 = vec4f(0.0);
  var c10 = vec4f(0.0); var d10 = vec4f(0.0); var c11 = vec4f(0.0); var d11 = vec4f(0.0);
  var c12 = vec4f(0.0); var d12 = vec4f(0.0); var c13 = vec4f(0.0); var d13 = vec4f(0.0);
  var c14 = vec4f(0.0); var d14 = vec4f(0.0); var c15 = vec4f(0.0); var d15 = vec4f(0.0);
  // a4[q] = A[m0 + 4q + lane, k]; row m0 + 4q + l is lane l's a4[q]. The K loop is unrolled by 4 (a loop
  // iteration costs lane-mask bookkeeping over all 32 accumulators on SwiftShader), then the K % 4 tail.
  var b0: vec4f;
  var b1: vec4f;
  var a4: vec4f;
  var s: f32;
  let K4 = K & ~3u;
  var k = 0u;
  for (; k < K4; k += 4u) {
    b0 = vec4f(loadW(bLo.x), loadW(bLo.y), loadW(bLo.z), loadW(bLo.w));
    b1 = vec4f(loadW(bHi.x), loadW(bHi.y), loadW(bHi.z), loadW(bHi.w));
    a4 = vec4f(a[aRow.x + k], a[aRow.y + k], a[aRow.z + k], a[aRow.w + k]);
    s = subgroupBroadcast(a4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(a4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(a4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(a4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(a4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(a4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(a4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(a4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(a4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(a4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(a4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(a4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(a4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(a4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(a4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(a4.w, 3u); c15 += s * b0; d15 += s * b1;
    bLo += bStep;
    bHi += bStep;
    b0 = vec4f(loadW(bLo.x), loadW(bLo.y), loadW(bLo.z), loadW(bLo.w));
    b1 = vec4f(loadW(bHi.x), loadW(bHi.y), loadW(bHi.z), loadW(bHi.w));
    a4 = vec4f(a[aRow.x + k + 1u], a[aRow.y + k + 1u], a[aRow.z + k + 1u], a[aRow.w + k + 1u]);
    s = subgroupBroadcast(a4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(a4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(a4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(a4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(a4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(a4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(a4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(a4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(a4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(a4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(a4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(a4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(a4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(a4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(a4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(a4.w, 3u); c15 += s * b0; d15 += s * b1;
    bLo += bStep;
    bHi += bStep;
    b0 = vec4f(loadW(bLo.x), loadW(bLo.y), loadW(bLo.z), loadW(bLo.w));
    b1 = vec4f(loadW(bHi.x), loadW(bHi.y), loadW(bHi.z), loadW(bHi.w));
    a4 = vec4f(a[aRow.x + k + 2u], a[aRow.y + k + 2u], a[aRow.z + k + 2u], a[aRow.w + k + 2u]);
    s = subgroupBroadcast(a4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(a4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(a4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(a4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(a4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(a4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(a4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(a4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(a4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(a4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(a4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(a4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(a4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(a4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(a4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(a4.w, 3u); c15 += s * b0; d15 += s * b1;
    bLo += bStep;
    bHi += bStep;
    b0 = vec4f(loadW(bLo.x), loadW(bLo.y), loadW(bLo.z), loadW(bLo.w));
    b1 = vec4f(loadW(bHi.x), loadW(bHi.y), loadW(bHi.z), loadW(bHi.w));
    a4 = vec4f(a[aRow.x + k + 3u], a[aRow.y + k + 3u], a[aRow.z + k + 3u], a[aRow.w + k + 3u]);
    s = subgroupBroadcast(a4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(a4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(a4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(a4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(a4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(a4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(a4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(a4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(a4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(a4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(a4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(a4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(a4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(a4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(a4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(a4.w, 3u); c15 += s * b0; d15 += s * b1;
    bLo += bStep;
    bHi += bStep;
  }
  for (; k < K; k++) {
    b0 = vec4f(loadW(bLo.x), loadW(bLo.y), loadW(bLo.z), loadW(bLo.w));
    b1 = vec4f(loadW(bHi.x), loadW(bHi.y), loadW(bHi.z), loadW(bHi.w));
    a4 = vec4f(a[aRow.x + k], a[aRow.y + k], a[aRow.z + k], a[aRow.w + k]);
    s = subgroupBroadcast(a4.x, 0u); c0 += s * b0; d0 += s * b1;
    s = subgroupBroadcast(a4.x, 1u); c1 += s * b0; d1 += s * b1;
    s = subgroupBroadcast(a4.x, 2u); c2 += s * b0; d2 += s * b1;
    s = subgroupBroadcast(a4.x, 3u); c3 += s * b0; d3 += s * b1;
    s = subgroupBroadcast(a4.y, 0u); c4 += s * b0; d4 += s * b1;
    s = subgroupBroadcast(a4.y, 1u); c5 += s * b0; d5 += s * b1;
    s = subgroupBroadcast(a4.y, 2u); c6 += s * b0; d6 += s * b1;
    s = subgroupBroadcast(a4.y, 3u); c7 += s * b0; d7 += s * b1;
    s = subgroupBroadcast(a4.z, 0u); c8 += s * b0; d8 += s * b1;
    s = subgroupBroadcast(a4.z, 1u); c9 += s * b0; d9 += s * b1;
    s = subgroupBroadcast(a4.z, 2u); c10 += s * b0; d10 += s * b1;
    s = subgroupBroadcast(a4.z, 3u); c11 += s * b0; d11 += s * b1;
    s = subgroupBroadcast(a4.w, 0u); c12 += s * b0; d12 += s * b1;
    s = subgroupBroadcast(a4.w, 1u); c13 += s * b0; d13 += s * b1;
    s = subgroupBroadcast(a4.w, 2u); c14 += s * b0; d14 += s * b1;
    s = subgroupBroadcast(a4.w, 3u); c15 += s * b0; d15 += s * b1;
    bLo += bStep;
    bHi += bStep;
  }

  let baseC = z * params.strideC;
  store(baseC, m0 + 0u, n0, c0); store(baseC, m0 + 0u, n0 + 4u, d0);
  store(baseC, m0 + 1u, n0, c1); store(baseC, m0 + 1u, n0 + 4u, d1);
  store(baseC, m0 + 2u, n0, c2); store(baseC, m0 + 2u, n0 + 4u, d2);
  store(baseC, m0 + 3u, n0, c3); store(baseC, m0 + 3u, n0 + 4u, d3);
  store(baseC, m0 + 4u, n0, c4); store(baseC, m0 + 4u, n0 + 4u, d4);
  store(baseC, m0 + 5u, n0, c5); store(baseC, m0 + 5u, n0 + 4u, d5);
  store(baseC, m0 + 6u, n0, c6); store(baseC, m0 + 6u, n0 + 4u, d6);
  store(baseC, m0 + 7u, n0, c7); store(baseC, m0 + 7u, n0 + 4u, d7);
  store(baseC, m0 + 8u, n0, c8); store(baseC, m0 + 8u, n0 + 4u, d8);
  store(baseC, m0 + 9u, n0, c9); store(baseC, m0 + 9u, n0 + 4u, d9);
  store(baseC, m0 + 10u, n0, c10); store(baseC, m0 + 10u, n0 + 4u, d10);
  store(baseC, m0 + 11u, n0, c11); store(baseC, m0 + 11u, n0 + 4u, d11);
  store(baseC, m0 + 12u, n0, c12); store(baseC, m0 + 12u, n0 + 4u, d12);
  store(baseC, m0 + 13u, n0, c13); store(baseC, m0 + 13u, n0 + 4u, d13);
  store(baseC, m0 + 14u, n0, c14); store(baseC, m0 + 14u, n0 + 4u, d14);
  store(baseC, m0 + 15u, n0, c15); store(baseC, m0 + 15u, n0 + 4u, d15);
}
