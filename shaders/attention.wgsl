// Scaled dot-product attention, tiled with an online softmax ("flash"):
//   y[b,h,i,:] = Σ_j softmax_j(scale · q[b,h,i,:]·k[b,h,j,:]) · v[b,h,j,:]     (causal: only j ≤ i)
// The Lq×Lk score matrix is never stored: keys stream through in tiles of BK with a running max and sum per row.
//
// Layout: every operand is addressed as off + b·SB + h·SH + row·SL + d (f32 elements), so one kernel serves
// head-major [B,H,L,D], token-major [B,L,H·D] and the fm-boosting raw-reshape slab ([heads][L][3d] with q, k, v
// at offsets 0, d, 2d of the same buffer, bound three times read-only).
//
// Work split: an invocation owns 4 query rows (one vec4 component per row, so every score, max and sum is a vec4)
// and a chunk of at most DC_MAX head dims of their outputs, kept in private arrays.
//   main:       D ≤ DC_MAX. Workgroup = RG invocations = 4·RG rows. No workgroup memory, no barriers.
//   main_split: D > DC_MAX. Workgroup = RG·NSPLIT invocations; the NSPLIT invocations of a row group each own a
//               D chunk, and add their partial scores through workgroup memory (two barriers per key tile).
// Dispatch: rt.grid(B·H·qTiles), qTiles = ceil(Lq / (4·RG)); workgroup id = wid.x + wid.y·num_workgroups.x.
// Bindings: q, k, v (read), y (write), params. f32 accumulation. Matches test/reference/attention.ts.

override RG: u32 = 64;      // row groups of 4 query rows per workgroup
override NSPLIT: u32 = 2;   // main_split: invocations splitting one row group's head dims

const BK: u32 = 16u;        // keys per tile (the PV update below is written out for exactly 16)
const DC_MAX: u32 = 64u;    // head dims per invocation; private arrays need a constant size
const WG_SPLIT: u32 = 64u;  // main_split workgroup size; the dispatcher sets RG = WG_SPLIT / NSPLIT
const NEG: f32 = -3.0e38;   // finite "−∞": a running max never becomes NaN through (−∞) − (−∞)
const LOG2E: f32 = 1.4426950408889634;

struct Params {
  // problem
  H: u32, Lq: u32, Lk: u32, D: u32,
  qTiles: u32, tiles: u32, causal: u32, DC: u32,
  scale: f32,
  // element offsets and strides: batch, head, row
  qOff: u32, qSB: u32, qSH: u32, qSL: u32,
  kOff: u32, kSB: u32, kSH: u32, kSL: u32,
  vOff: u32, vSB: u32, vSH: u32, vSL: u32,
  yOff: u32, ySB: u32, ySH: u32, ySL: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

// Partial scores of one key tile, [component][split][key][row group]: neighbouring invocations touch neighbouring words.
// Constant-sized (16 KiB, WebGPU's default limit): an override-sized workgroup array crashes SwiftShader's compiler.
var<workgroup> partial: array<f32, 4u * WG_SPLIT * BK>;

var<private> qT: array<vec4f, DC_MAX>;   // the 4 rows' q chunk, dim-major, pre-scaled by scale·log2(e)
var<private> acc: array<vec4f, DC_MAX>;  // unnormalised output chunk
var<private> s: array<vec4f, BK>;        // scores of the current key tile (log2 domain)

/** Where an invocation works: its 4 rows, its D chunk and the operand bases of its (batch, head). */
struct Task {
  rows: vec4u,    // query rows, clamped to Lq − 1 (clamped rows compute but are not stored)
  row0: u32,      // unclamped first row
  d0: u32,
  dn: u32,
  kBase: u32,
  vBase: u32,
}

/** Keys the workgroup visits: Lk, or up to its last row under the causal mask. Depends on the tile only (uniform). */
fn keyEnd(tile: u32) -> u32 {
  let p = params;
  if (p.causal == 0u) { return p.Lk; }
  return min(p.Lk, min(p.Lq, (tile % p.qTiles + 1u) * 4u * RG));
}

fn makeTask(tile: u32, rg: u32, split: u32) -> Task {
  let p = params;
  let bh = tile / p.qTiles;
  let b = bh / p.H;
  let h = bh % p.H;
  let first = (tile % p.qTiles) * 4u * RG;
  var t: Task;
  t.row0 = first + rg * 4u;
  t.rows = min(vec4u(t.row0) + vec4u(0u, 1u, 2u, 3u), vec4u(p.Lq - 1u));
  t.d0 = split * p.DC;
  t.dn = select(0u, min(p.DC, p.D - t.d0), t.d0 < p.D);
  t.kBase = p.kOff + b * p.kSB + h * p.kSH + t.d0;
  t.vBase = p.vOff + b * p.vSB + h * p.vSH + t.d0;
  let qb = p.qOff + b * p.qSB + h * p.qSH + t.d0;
  let r = t.rows * p.qSL + vec4u(qb);
  let f = p.scale * LOG2E;
  for (var c = 0u; c < t.dn; c++) {
    qT[c] = vec4f(q[r.x + c], q[r.y + c], q[r.z + c], q[r.w + c]) * f;
    acc[c] = vec4f(0.0);
  }
  return t;
}

/** Partial scores s[j] = Σ_{d in chunk} q·k for keys j0 … j0+BK−1 (keys past Lk read key Lk−1; masked later).
 * Eight keys per pass over the chunk: each private qT load then feeds eight multiply-adds (16 spilled on SwiftShader). */
fn scoreTile(t: Task, j0: u32) {
  let last = params.Lk - 1u;
  for (var j = 0u; j < BK; j += 8u) {
    let ka = min(vec4u(j0 + j) + vec4u(0u, 1u, 2u, 3u), vec4u(last)) * params.kSL + vec4u(t.kBase);
    let kb = min(vec4u(j0 + j) + vec4u(4u, 5u, 6u, 7u), vec4u(last)) * params.kSL + vec4u(t.kBase);
    var s0 = vec4f(0.0);
    var s1 = vec4f(0.0);
    var s2 = vec4f(0.0);
    var s3 = vec4f(0.0);
    var s4 = vec4f(0.0);
    var s5 = vec4f(0.0);
    var s6 = vec4f(0.0);
    var s7 = vec4f(0.0);
    for (var c = 0u; c < t.dn; c++) {
      let qc = qT[c];
      s0 += qc * k[ka.x + c];
      s1 += qc * k[ka.y + c];
      s2 += qc * k[ka.z + c];
      s3 += qc * k[ka.w + c];
      s4 += qc * k[kb.x + c];
      s5 += qc * k[kb.y + c];
      s6 += qc * k[kb.z + c];
      s7 += qc * k[kb.w + c];
    }
    s[j] = s0;
    s[j + 1u] = s1;
    s[j + 2u] = s2;
    s[j + 3u] = s3;
    s[j + 4u] = s4;
    s[j + 5u] = s5;
    s[j + 6u] = s6;
    s[j + 7u] = s7;
  }
}

/** Masks the tile, updates the running max m and sum l, rescales acc and adds P·V for the chunk. */
fn softmaxAccumulate(t: Task, j0: u32, m: ptr<function, vec4f>, l: ptr<function, vec4f>) {
  // Last key each row may see: Lk − 1, or its own index under the causal mask.
  let lastKey = min(select(vec4u(params.Lk - 1u), t.rows, params.causal != 0u), vec4u(params.Lk - 1u));
  var mx = *m;
  for (var j = 0u; j < BK; j++) {
    s[j] = select(s[j], vec4f(NEG), vec4u(j0 + j) > lastKey);
    mx = max(mx, s[j]);
  }
  let alpha = exp2(*m - mx);
  var sum = vec4f(0.0);
  for (var j = 0u; j < BK; j++) {
    s[j] = exp2(s[j] - mx);
    sum += s[j];
  }
  *l = *l * alpha + sum;
  *m = mx;

  let last = params.Lk - 1u;
  let vr0 = min(vec4u(j0) + vec4u(0u, 1u, 2u, 3u), vec4u(last)) * params.vSL + vec4u(t.vBase);
  let vr1 = min(vec4u(j0) + vec4u(4u, 5u, 6u, 7u), vec4u(last)) * params.vSL + vec4u(t.vBase);
  let vr2 = min(vec4u(j0) + vec4u(8u, 9u, 10u, 11u), vec4u(last)) * params.vSL + vec4u(t.vBase);
  let vr3 = min(vec4u(j0) + vec4u(12u, 13u, 14u, 15u), vec4u(last)) * params.vSL + vec4u(t.vBase);
  let p0 = s[0]; let p1 = s[1]; let p2 = s[2]; let p3 = s[3];
  let p4 = s[4]; let p5 = s[5]; let p6 = s[6]; let p7 = s[7];
  let p8 = s[8]; let p9 = s[9]; let p10 = s[10]; let p11 = s[11];
  let p12 = s[12]; let p13 = s[13]; let p14 = s[14]; let p15 = s[15];
  for (var c = 0u; c < t.dn; c++) {
    var a = acc[c] * alpha;
    a += p0 * v[vr0.x + c] + p1 * v[vr0.y + c] + p2 * v[vr0.z + c] + p3 * v[vr0.w + c];
    a += p4 * v[vr1.x + c] + p5 * v[vr1.y + c] + p6 * v[vr1.z + c] + p7 * v[vr1.w + c];
    a += p8 * v[vr2.x + c] + p9 * v[vr2.y + c] + p10 * v[vr2.z + c] + p11 * v[vr2.w + c];
    a += p12 * v[vr3.x + c] + p13 * v[vr3.y + c] + p14 * v[vr3.z + c] + p15 * v[vr3.w + c];
    acc[c] = a;
  }
}

fn writeOut(t: Task, tile: u32, l: vec4f) {
  let p = params;
  let bh = tile / p.qTiles;
  let yb = p.yOff + (bh / p.H) * p.ySB + (bh % p.H) * p.ySH + t.d0;
  let inv = 1.0 / l;
  for (var r = 0u; r < 4u; r++) {
    if (t.row0 + r >= p.Lq) { break; }
    let o = yb + (t.row0 + r) * p.ySL;
    for (var c = 0u; c < t.dn; c++) {
      y[o + c] = acc[c][r] * inv[r];
    }
  }
}

@compute @workgroup_size(RG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= params.tiles) { return; }
  let t = makeTask(tile, li, 0u);
  let kEnd = keyEnd(tile);
  var m = vec4f(NEG);
  var l = vec4f(0.0);
  for (var j0 = 0u; j0 < kEnd; j0 += BK) {
    scoreTile(t, j0);
    softmaxAccumulate(t, j0, &m, &l);
  }
  writeOut(t, tile, l);
}

@compute @workgroup_size(WG_SPLIT)
fn main_split(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= params.tiles) { return; }
  let rg = li % RG;
  let split = li / RG;
  let t = makeTask(tile, rg, split);
  let kEnd = keyEnd(tile);
  var m = vec4f(NEG);
  var l = vec4f(0.0);
  for (var j0 = 0u; j0 < kEnd; j0 += BK) {
    scoreTile(t, j0);
    for (var j = 0u; j < BK; j++) {
      let o = (split * BK + j) * RG + rg;
      let stride = NSPLIT * BK * RG;
      partial[o] = s[j].x;
      partial[o + stride] = s[j].y;
      partial[o + 2u * stride] = s[j].z;
      partial[o + 3u * stride] = s[j].w;
    }
    workgroupBarrier();
    for (var j = 0u; j < BK; j++) {
      var sum = vec4f(0.0);
      for (var sp = 0u; sp < NSPLIT; sp++) {
        let o = (sp * BK + j) * RG + rg;
        let stride = NSPLIT * BK * RG;
        sum += vec4f(partial[o], partial[o + stride], partial[o + 2u * stride], partial[o + 3u * stride]);
      }
      s[j] = sum;
    }
    workgroupBarrier();
    softmaxAccumulate(t, j0, &m, &l);
  }
  writeOut(t, tile, l);
}
