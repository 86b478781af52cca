// VAE tile copy, NCHW, f32. For p < N·C, y < RH, x < RW (n = p / C, c = p % C):
//   dst[n, dstC0 + c, dy + y, dx + x] = src[n, srcC0 + c, (sy + y) / F, (sx + x) / F]   (clamped to [lo, hi] if clampOn)
// The data movement of tiled VAE decoding/encoding: gathering a tile plus its halo from neighbouring tiles,
// cropping, pasting into the full image, splitting the posterior moments into mean and clamped logvar.
// F = 2 reads the source through nearest ×2 upsampling (sy, sx are then upsampled-source coordinates).
// Dispatch: rt.grid(ceil(N·C·RH·RW / WG_SIZE)); linear id = (wid.x + wid.y·num_workgroups.x)·WG_SIZE + lid.
// Bindings: src (read), dst (read_write), params. Matches a plain nested loop (test/models/vae-tiled.test.ts).

override WG_SIZE: u32 = 256;

struct Params {
  // copied block: planes (N·C), channels per batch item, rows, cols
  P: u32, C: u32, RH: u32, RW: u32,
  // source: channels, height, width, first channel, top-left corner, upsampling factor
  srcC: u32, srcH: u32, srcW: u32, srcC0: u32, sy: u32, sx: u32, F: u32,
  // destination: channels, height, width, first channel, top-left corner
  dstC: u32, dstH: u32, dstW: u32, dstC0: u32, dy: u32, dx: u32,
  // optional value range (the posterior's logvar clamp); copies are bit-exact when clampOn = 0
  clampOn: u32, lo: f32, hi: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + lid;
  let area = params.RH * params.RW;
  if (i >= params.P * area) { return; }
  let p = i / area;
  let r = i % area;
  let y = r / params.RW;
  let x = r % params.RW;
  let n = p / params.C;
  let c = p % params.C;
  let sPlane = n * params.srcC + params.srcC0 + c;
  let dPlane = n * params.dstC + params.dstC0 + c;
  let sIdx = (sPlane * params.srcH + (params.sy + y) / params.F) * params.srcW + (params.sx + x) / params.F;
  let dIdx = (dPlane * params.dstH + params.dy + y) * params.dstW + params.dx + x;
  let v = src[sIdx];
  dst[dIdx] = select(v, clamp(v, params.lo, params.hi), params.clampOn != 0u);
}
