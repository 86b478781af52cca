// prefix: compute-f32.wgsl, activation.wgsl, gemm-epilogue.wgsl
// Batched matmul with a fused epilogue:
//   C[z,m,n] = act(alpha · Σ_k A[z,m,k] · B[z,k,n] + bias[n]) + R[z,m,n]
// A: [Z, M, K] f32 row-major. B: [Z, K, N], or [Z, N, K] when TRANS_B (a PyTorch Linear weight); f32 bits or
// packed f16 pairs (W_F16) in array<u32>; strideB = 0 broadcasts one B over the batch. C, R: [Z, M, N].
// Tiling: a workgroup of WG_M × WG_N threads owns a (4·WG_M) × (4·WG_N) block of C and walks K in TILE_K
// steps through workgroup tiles; each thread keeps a 4 × 4 register tile (four vec4 accumulators) and reads
// one vec4 of A and one of B per k. TILE_K must be a multiple of 4 and of WG_M and WG_N.
// Operand type of main: its workgroup tiles and per-thread operand registers are vec4<ct>, filled through
// to_ct and widened to f32 where they multiply; accumulators and the epilogue stay f32. The dispatcher puts
// shaders/compute-f32.wgsl (ct = f32, both identities), the f16 prefix of src/ops/gemm-compute.ts (ct = f16:
// half the workgroup memory; an f16 × f16 product is exact in f32, so only the operand rounding differs) or
// shaders/compute-f16-emulated.wgsl (f32 tiles holding f16-rounded values, for tests) in front.
// main_direct (CPU adapters): no workgroup memory and no barriers; each thread keeps an 8 × 8 register tile
// (sixteen vec4 accumulators) and reads A and B straight from storage; rows/columns past the edge are clamped
// for loading and dropped when storing. A block is (8·WG_M) × (8·WG_N).
// Dispatch: rt.grid(tilesM · tilesN) in (x, y), batch in z; the tile id is wid.x + wid.y · num_workgroups.x.
// main_sg (CPU adapters with 4-wide subgroups, 16 × 8 per thread) is in shaders/matmul-sg.wgsl.
// Bindings: 0 a, 1 b, 2 bias (read only if HAS_BIAS), 3 residual (read only if HAS_RESIDUAL), 4 out, 5 params.
// Matches test/reference/matmul.ts matmulRef (float64).

override WG_M: u32 = 16;
override WG_N: u32 = 16;
override TILE_K: u32 = 16;
// Derived sizes (never passed from TS): named so that reflection needs no expressions.
override THREADS: u32 = WG_M * WG_N;
override A_LEN: u32 = TILE_K * WG_M;
override B_LEN: u32 = TILE_K * WG_N;
override TRANS_B: bool = false;
override W_F16: bool = false;
override HAS_BIAS: bool = false;
override HAS_RESIDUAL: bool = false;
override ACT: u32 = 0u;

struct Params {
  // problem size
  M: u32,
  N: u32,
  K: u32,
  // elements between consecutive batch matrices (0 for a broadcast B)
  strideA: u32,
  strideB: u32,
  strideC: u32,
  // tiles along N, to split the linear tile id
  tilesN: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> aTile: array<vec4<ct>, A_LEN>;   // [k][row group]: rows 4r..4r+3 of the block at k
var<workgroup> bTile: array<vec4<ct>, B_LEN>;   // [k][col group]: cols 4c..4c+3 of the block at k

fn loadW(i: u32) -> f32 {
  if (W_F16) {
    return unpack2x16float(b[i >> 1u])[i & 1u];
  }
  return bitcast<f32>(b[i]);
}

fn loadA(base: u32, m: u32, k: u32) -> f32 {
  if (m < params.M && k < params.K) { return a[base + m * params.K + k]; }
  return 0.0;
}

fn loadB(base: u32, k: u32, n: u32) -> f32 {
  if (k < params.K && n < params.N) {
    if (TRANS_B) { return loadW(base + n * params.K + k); }
    return loadW(base + k * params.N + n);
  }
  return 0.0;
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let tileM = tile / params.tilesN;
  // Whole workgroups leave together, before any barrier, so the barriers stay uniform.
  if (tileM * 4u * WG_M >= params.M) { return; }
  let m0 = tileM * 4u * WG_M;
  let n0 = (tile % params.tilesN) * 4u * WG_N;
  let z = wid.z;
  let baseA = z * params.strideA;
  let baseB = z * params.strideB;
  let tx = li % WG_N;
  let ty = li / WG_N;

  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);

  for (var k0 = 0u; k0 < params.K; k0 += TILE_K) {
    // A block: consecutive threads take consecutive k of one row group (contiguous in memory).
    for (var s = li; s < TILE_K * WG_M; s += THREADS) {
      let k = s % TILE_K;
      let r = s / TILE_K;
      let m = m0 + 4u * r;
      aTile[k * WG_M + r] = to_ct(vec4f(loadA(baseA, m, k0 + k), loadA(baseA, m + 1u, k0 + k), loadA(baseA, m + 2u, k0 + k), loadA(baseA, m + 3u, k0 + k)));
    }
    // B block: contiguous along n for [K, N], along k for the transposed [N, K] layout.
    for (var s = li; s < TILE_K * WG_N; s += THREADS) {
      var k: u32;
      var c: u32;
      if (TRANS_B) {
        k = s % TILE_K;
        c = s / TILE_K;
      } else {
        k = s / WG_N;
        c = s % WG_N;
      }
      let n = n0 + 4u * c;
      bTile[k * WG_N + c] = to_ct(vec4f(loadB(baseB, k0 + k, n), loadB(baseB, k0 + k, n + 1u), loadB(baseB, k0 + k, n + 2u), loadB(baseB, k0 + k, n + 3u)));
    }
    workgroupBarrier();
    for (var k = 0u; k < TILE_K; k += 4u) {
      var av = aTile[k * WG_M + ty];
      var bv = vec4f(bTile[k * WG_N + tx]);
      acc0 += f32(av.x) * bv; acc1 += f32(av.y) * bv; acc2 += f32(av.z) * bv; acc3 += f32(av.w) * bv;
      av = aTile[(k + 1u) * WG_M + ty];
      bv = vec4f(bTile[(k + 1u) * WG_N + tx]);
      acc0 += f32(av.x) * bv; acc1 += f32(av.y) * bv; acc2 += f32(av.z) * bv; acc3 += f32(av.w) * bv;
      av = aTile[(k + 2u) * WG_M + ty];
      bv = vec4f(bTile[(k + 2u) * WG_N + tx]);
      acc0 += f32(av.x) * bv; acc1 += f32(av.y) * bv; acc2 += f32(av.z) * bv; acc3 += f32(av.w) * bv;
      av = aTile[(k + 3u) * WG_M + ty];
      bv = vec4f(bTile[(k + 3u) * WG_N + tx]);
      acc0 += f32(av.x) * bv; acc1 += f32(av.y) * bv; acc2 += f32(av.z) * bv; acc3 += f32(av.w) * bv;
    }
    workgroupBarrier();
  }

  let m = m0 + 4u * ty;
  let n = n0 + 4u * tx;
  let baseC = z * params.strideC;
  store(baseC, m, n, acc0);
  store(baseC, m + 1u, n, acc1);
  store(baseC, m + 2u, n, acc2);
  store(baseC, m + 3u, n, acc3);
}

fn store(baseC: u32, m: u32, n: u32, acc: vec4f) {
  if (m >= params.M) { return; }
  var v = acc * params.alpha;
  if (HAS_BIAS) {
    v += vec4f(bias[min(n, params.N - 1u)], bias[min(n + 1u, params.N - 1u)], bias[min(n + 2u, params.N - 1u)], bias[min(n + 3u, params.N - 1u)]);
  }
  store4(baseC + m * params.N, n, params.N, activate(v, ACT));
}

@compute @workgroup_size(THREADS)
fn main_direct(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let m0 = (tile / params.tilesN) * 8u * WG_M + 8u * (li / WG_N);
  let n0 = (tile % params.tilesN) * 8u * WG_N + 8u * (li % WG_N);
  if (m0 >= params.M || n0 >= params.N) { return; }
  let z = wid.z;
  let K = params.K;
  // Clamped row starts of A and column starts of B: every load is in bounds, so the K loop has no checks.
  let lastM = params.M - 1u;
  let lastN = params.N - 1u;
  let rowsLo = min(vec4u(m0) + vec4u(0u, 1u, 2u, 3u), vec4u(lastM));
  let rowsHi = min(vec4u(m0) + vec4u(4u, 5u, 6u, 7u), vec4u(lastM));
  let aLo = z * params.strideA + rowsLo * K;
  let aHi = z * params.strideA + rowsHi * K;
  let colsLo = min(vec4u(n0) + vec4u(0u, 1u, 2u, 3u), vec4u(lastN));
  let colsHi = min(vec4u(n0) + vec4u(4u, 5u, 6u, 7u), vec4u(lastN));
  var bLo = z * params.strideB + select(colsLo, colsLo * K, TRANS_B);
  var bHi = z * params.strideB + select(colsHi, colsHi * K, TRANS_B);
  let bStep = select(params.N, 1u, TRANS_B);

  var c0 = vec4f(0.0); var d0 = vec4f(0.0);
  var c1 = vec4f(0.0); var d1 = vec4f(0.0);
  var c2 = vec4f(0.0); var d2 = vec4f(0.0);
  var c3 = vec4f(0.0); var d3 = vec4f(0.0);
  var c4 = vec4f(0.0); var d4 = vec4f(0.0);
  var c5 = vec4f(0.0); var d5 = vec4f(0.0);
  var c6 = vec4f(0.0); var d6 = vec4f(0.0);
  var c7 = vec4f(0.0); var d7 = vec4f(0.0);
  for (var k = 0u; k < K; k++) {
    let b0 = vec4f(loadW(bLo.x), loadW(bLo.y), loadW(bLo.z), loadW(bLo.w));
    let b1 = vec4f(loadW(bHi.x), loadW(bHi.y), loadW(bHi.z), loadW(bHi.w));
    var s = a[aLo.x + k]; c0 += s * b0; d0 += s * b1;
    s = a[aLo.y + k]; c1 += s * b0; d1 += s * b1;
    s = a[aLo.z + k]; c2 += s * b0; d2 += s * b1;
    s = a[aLo.w + k]; c3 += s * b0; d3 += s * b1;
    s = a[aHi.x + k]; c4 += s * b0; d4 += s * b1;
    s = a[aHi.y + k]; c5 += s * b0; d5 += s * b1;
    s = a[aHi.z + k]; c6 += s * b0; d6 += s * b1;
    s = a[aHi.w + k]; c7 += s * b0; d7 += s * b1;
    bLo += vec4u(bStep);
    bHi += vec4u(bStep);
  }

  let baseC = z * params.strideC;
  store(baseC, m0, n0, c0); store(baseC, m0, n0 + 4u, d0);
  store(baseC, m0 + 1u, n0, c1); store(baseC, m0 + 1u, n0 + 4u, d1);
  store(baseC, m0 + 2u, n0, c2); store(baseC, m0 + 2u, n0 + 4u, d2);
  store(baseC, m0 + 3u, n0, c3); store(baseC, m0 + 3u, n0 + 4u, d3);
  store(baseC, m0 + 4u, n0, c4); store(baseC, m0 + 4u, n0 + 4u, d4);
  store(baseC, m0 + 5u, n0, c5); store(baseC, m0 + 5u, n0 + 4u, d5);
  store(baseC, m0 + 6u, n0, c6); store(baseC, m0 + 6u, n0 + 4u, d6);
  store(baseC, m0 + 7u, n0, c7); store(baseC, m0 + 7u, n0 + 4u, d7);
}
