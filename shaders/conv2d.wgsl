// prefix: compute-f32.wgsl, gemm-epilogue.wgsl
// 2-D convolution (cross-correlation, NCHW) as an implicit GEMM with a fused epilogue:
//   out[z,co,oy,ox] = bias[co] + Σ_{ci,ky,kx} w[co,ci,ky,kx] · xv[z,ci, oy·S − padTop + ky, ox·S − padLeft + kx] + R[z,co,oy,ox]
// where xv is x zero-padded and, with UPSAMPLE, nearest-×2 upsampled on the fly (xv[i, j] = x[i/2, j/2]).
// GEMM view per batch z: rows co (Cout), columns p = oy·Wo + ox (Ho·Wo), reduction k = (ci·KH + ky)·KW + kx.
// The weight [Cout, Cin·KH·KW] is A as stored (f32 bits, or packed f16 pairs with W_F16); im2col of x is B,
// gathered into workgroup tiles and never materialised. IS_1X1 (1×1, stride 1, no padding): B is x itself.
// Tiling as shaders/matmul.wgsl: WG_M × WG_N threads, 4 × 4 outputs each, K steps of TILE_K; TILE_K must be a
// multiple of 4 and of WG_M (each thread gathers TILE_K / WG_M rows of 4 columns).
// The operand type ct of main's tiles and registers (f32, or f16 with f32 accumulation) is as in shaders/matmul.wgsl.
// main_direct (CPU adapters): no workgroup memory and no barriers; each thread owns 8 channels × 8 pixels
// (sixteen vec4 accumulators), walks (ci, ky, kx) as nested loops (no index division in the loop; 1×1 is the
// same loop with one tap) and reads weights and input straight from storage. Its block is (8·WG_M) channels × (8·WG_N) pixels.
// main_sg / main_sg3 (CPU adapters with 4-wide subgroups, 16 × 8 per thread) are in shaders/conv2d-sg.wgsl.
// Dispatch: rt.grid(tilesM · tilesN) in (x, y), batch in z. Bindings: 0 x, 1 w, 2 bias (if HAS_BIAS),
// 3 residual (if HAS_RESIDUAL), 4 out, 5 params. Matches test/reference/conv2d.ts conv2dRef (float64).

override WG_M: u32 = 16;
override WG_N: u32 = 16;
override TILE_K: u32 = 16;
// Derived sizes (never passed from TS): named so that reflection needs no expressions.
override THREADS: u32 = WG_M * WG_N;
override A_LEN: u32 = TILE_K * WG_M;
override B_LEN: u32 = TILE_K * WG_N;
override W_F16: bool = false;
override HAS_BIAS: bool = false;
override HAS_RESIDUAL: bool = false;
override IS_1X1: bool = false;
override UPSAMPLE: bool = false;

struct Params {
  // input (real, not upsampled) and output sizes
  Cin: u32,
  H: u32,
  W: u32,
  Cout: u32,
  Wo: u32,
  P: u32,        // Ho · Wo
  // kernel geometry
  KW: u32,
  KHW: u32,      // KH · KW
  Kg: u32,       // Cin · KH · KW
  stride: u32,
  padTop: i32,
  padLeft: i32,
  // tiles along P, to split the linear tile id
  tilesN: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> aTile: array<vec4<ct>, A_LEN>;   // [k][row group]: 4 output channels at k
var<workgroup> bTile: array<vec4<ct>, B_LEN>;   // [k][col group]: 4 output pixels at k

fn loadW(i: u32) -> f32 {
  if (W_F16) {
    return unpack2x16float(w[i >> 1u])[i & 1u];
  }
  return bitcast<f32>(w[i]);
}

fn loadWeight(co: u32, k: u32) -> f32 {
  if (co < params.Cout && k < params.Kg) { return loadW(co * params.Kg + k); }
  return 0.0;
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let tileM = tile / params.tilesN;
  // Whole workgroups leave together, before any barrier, so the barriers stay uniform.
  if (tileM * 4u * WG_M >= params.Cout) { return; }
  let m0 = tileM * 4u * WG_M;
  let n0 = (tile % params.tilesN) * 4u * WG_N;
  let z = wid.z;
  let tx = li % WG_N;
  let ty = li / WG_N;
  let HW = params.H * params.W;
  let xBase = z * params.Cin * HW;

  // The 4 output pixels this thread gathers for the B tile (column group tx): their top-left input corner
  // in the (upsampled) padded frame, computed once so the K loop has no per-pixel division.
  let Hv = select(params.H, 2u * params.H, UPSAMPLE);
  let Wv = select(params.W, 2u * params.W, UPSAMPLE);
  var iy0 = vec4i(0);
  var ix0 = vec4i(0);
  var pOk = vec4<bool>(false);
  for (var j = 0u; j < 4u; j++) {
    let p = n0 + 4u * tx + j;
    let oy = p / params.Wo;
    iy0[j] = i32(oy * params.stride) - params.padTop;
    ix0[j] = i32((p - oy * params.Wo) * params.stride) - params.padLeft;
    pOk[j] = p < params.P;
  }
  let pCol = n0 + 4u * tx;

  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);

  for (var k0 = 0u; k0 < params.Kg; k0 += TILE_K) {
    // A block (weights): consecutive threads take consecutive k of one channel group (contiguous).
    for (var s = li; s < TILE_K * WG_M; s += THREADS) {
      let k = s % TILE_K;
      let r = s / TILE_K;
      let co = m0 + 4u * r;
      aTile[k * WG_M + r] = to_ct(vec4f(loadWeight(co, k0 + k), loadWeight(co + 1u, k0 + k), loadWeight(co + 2u, k0 + k), loadWeight(co + 3u, k0 + k)));
    }
    // B block (im2col): this thread's 4 pixels for rows ty, ty + WG_M, …
    for (var kr = ty; kr < TILE_K; kr += WG_M) {
      let k = k0 + kr;
      var v = vec4f(0.0);
      if (k < params.Kg) {
        if (IS_1X1) {
          let row = xBase + k * HW;
          for (var j = 0u; j < 4u; j++) {
            if (pOk[j]) { v[j] = x[row + pCol + j]; }
          }
        } else {
          let ci = k / params.KHW;
          let r = k - ci * params.KHW;
          let ky = r / params.KW;
          let kx = r - ky * params.KW;
          let iy = iy0 + vec4i(i32(ky));
          let ix = ix0 + vec4i(i32(kx));
          let inside = pOk & (iy >= vec4i(0)) & (iy < vec4i(i32(Hv))) & (ix >= vec4i(0)) & (ix < vec4i(i32(Wv)));
          var sy = vec4u(max(iy, vec4i(0)));
          var sx = vec4u(max(ix, vec4i(0)));
          if (UPSAMPLE) {
            sy = sy >> vec4u(1u);
            sx = sx >> vec4u(1u);
          }
          let plane = xBase + ci * HW;
          for (var j = 0u; j < 4u; j++) {
            if (inside[j]) { v[j] = x[plane + sy[j] * params.W + sx[j]]; }
          }
        }
      }
      bTile[kr * WG_N + tx] = to_ct(v);
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

  let co = m0 + 4u * ty;
  let oBase = z * params.Cout * params.P;
  store(oBase, co, pCol, acc0);
  store(oBase, co + 1u, pCol, acc1);
  store(oBase, co + 2u, pCol, acc2);
  store(oBase, co + 3u, pCol, acc3);
}

fn store(oBase: u32, co: u32, p: u32, acc: vec4f) {
  if (co >= params.Cout) { return; }
  var v = acc;
  if (HAS_BIAS) { v += vec4f(bias[co]); }
  store4(oBase + co * params.P, p, params.P, v);
}

@compute @workgroup_size(THREADS)
fn main_direct(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let co0 = (tile / params.tilesN) * 8u * WG_M + 8u * (li / WG_N);
  let p0 = (tile % params.tilesN) * 8u * WG_N + 8u * (li % WG_N);
  if (co0 >= params.Cout || p0 >= params.P) { return; }
  let z = wid.z;
  let HW = params.H * params.W;
  let xBase = z * params.Cin * HW;
  // Clamped channel rows of the weight: every weight load is in bounds; extra channels are dropped at the store.
  let lastC = params.Cout - 1u;
  var wLoOff = min(vec4u(co0) + vec4u(0u, 1u, 2u, 3u), vec4u(lastC)) * params.Kg;
  var wHiOff = min(vec4u(co0) + vec4u(4u, 5u, 6u, 7u), vec4u(lastC)) * params.Kg;
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

  var c0 = vec4f(0.0); var d0 = vec4f(0.0);
  var c1 = vec4f(0.0); var d1 = vec4f(0.0);
  var c2 = vec4f(0.0); var d2 = vec4f(0.0);
  var c3 = vec4f(0.0); var d3 = vec4f(0.0);
  var c4 = vec4f(0.0); var d4 = vec4f(0.0);
  var c5 = vec4f(0.0); var d5 = vec4f(0.0);
  var c6 = vec4f(0.0); var d6 = vec4f(0.0);
  var c7 = vec4f(0.0); var d7 = vec4f(0.0);
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
        var s = loadW(wLoOff.x); c0 += s * b0; d0 += s * b1;
        s = loadW(wLoOff.y); c1 += s * b0; d1 += s * b1;
        s = loadW(wLoOff.z); c2 += s * b0; d2 += s * b1;
        s = loadW(wLoOff.w); c3 += s * b0; d3 += s * b1;
        s = loadW(wHiOff.x); c4 += s * b0; d4 += s * b1;
        s = loadW(wHiOff.y); c5 += s * b0; d5 += s * b1;
        s = loadW(wHiOff.z); c6 += s * b0; d6 += s * b1;
        s = loadW(wHiOff.w); c7 += s * b0; d7 += s * b1;
        wLoOff += vec4u(1u);
        wHiOff += vec4u(1u);
      }
    }
  }

  let oBase = z * params.Cout * params.P;
  store(oBase, co0, p0, c0); store(oBase, co0, p0 + 4u, d0);
  store(oBase, co0 + 1u, p0, c1); store(oBase, co0 + 1u, p0 + 4u, d1);
  store(oBase, co0 + 2u, p0, c2); store(oBase, co0 + 2u, p0 + 4u, d2);
  store(oBase, co0 + 3u, p0, c3); store(oBase, co0 + 3u, p0 + 4u, d3);
  store(oBase, co0 + 4u, p0, c4); store(oBase, co0 + 4u, p0 + 4u, d4);
  store(oBase, co0 + 5u, p0, c5); store(oBase, co0 + 5u, p0 + 4u, d5);
  store(oBase, co0 + 6u, p0, c6); store(oBase, co0 + 6u, p0 + 4u, d6);
  store(oBase, co0 + 7u, p0, c7); store(oBase, co0 + 7u, p0 + 4u, d7);
}
