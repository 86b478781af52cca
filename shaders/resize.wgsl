// Spatial resizing of [N·C, H, W] planes, PyTorch semantics (align_corners=False, antialias=False).
//   main_nearest2x: out[p, i, j] = in[p, ⌊i/2⌋, ⌊j/2⌋]; one input value per invocation, written 2×2.
//   main_bilinear:  per axis src = max((dst + 0.5)·scale − 0.5, 0), i0 = ⌊src⌋, i1 = min(i0 + 1, I − 1),
//                   λ = src − i0, out = (1−λ)·in[i0] + λ·in[i1] (separable), scale = I/O in float32 as torch.
// Dispatch: rt.grid(ceil(count / WG_SIZE)), count = input (nearest) or output (bilinear) elements.
// Bindings: 0 x, 1 y, 2 params. Matches test/reference/resize.ts.

override WG_SIZE: u32 = 256;

struct Params {
  count: u32,
  H: u32,
  W: u32,
  Ho: u32,
  Wo: u32,
  scaleH: f32,
  scaleW: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn linearId(wid: vec3u, nwg: vec3u, li: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG_SIZE + li;
}

@compute @workgroup_size(WG_SIZE)
fn main_nearest2x(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = linearId(wid, nwg, li);
  if (i >= params.count) { return; }
  let W = params.W;
  let HW = params.H * W;
  let p = i / HW;
  let r = i - p * HW;
  let h = r / W;
  let w = r - h * W;
  let v = x[i];
  let o = p * 4u * HW + (2u * h) * (2u * W) + 2u * w;
  y[o] = v;
  y[o + 1u] = v;
  y[o + 2u * W] = v;
  y[o + 2u * W + 1u] = v;
}

// (i0, i1, λ) along one axis.
fn axis(dst: u32, scale: f32, I: u32) -> vec3f {
  let src = max((f32(dst) + 0.5) * scale - 0.5, 0.0);
  let i0 = min(u32(floor(src)), I - 1u);
  let i1 = min(i0 + 1u, I - 1u);
  return vec3f(f32(i0), f32(i1), src - f32(i0));
}

@compute @workgroup_size(WG_SIZE)
fn main_bilinear(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = linearId(wid, nwg, li);
  if (i >= params.count) { return; }
  let Wo = params.Wo;
  let HWo = params.Ho * Wo;
  let p = i / HWo;
  let r = i - p * HWo;
  let oy = r / Wo;
  let ox = r - oy * Wo;
  let ay = axis(oy, params.scaleH, params.H);
  let ax = axis(ox, params.scaleW, params.W);
  let base = p * params.H * params.W;
  let r0 = base + u32(ay.x) * params.W;
  let r1 = base + u32(ay.y) * params.W;
  let x0 = u32(ax.x);
  let x1 = u32(ax.y);
  let top = (1.0 - ax.z) * x[r0 + x0] + ax.z * x[r0 + x1];
  let bot = (1.0 - ax.z) * x[r1 + x0] + ax.z * x[r1 + x1];
  y[i] = (1.0 - ay.z) * top + ay.z * bot;
}
