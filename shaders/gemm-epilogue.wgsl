// snippet: the store of a GEMM register tile, shared by shaders/matmul.wgsl and shaders/conv2d.wgsl (their
// dispatchers concatenate it in front of the kernel). A kernel's own store() applies its scale, bias and
// activation to one accumulator vec4, then calls store4 for the 4 consecutive outputs row + col .. + 3.
// store4 adds the residual (override HAS_RESIDUAL) and drops outputs at col + j ≥ cols. It uses the kernel's
// `out` (read_write) and `residual` (read) bindings. The 4 stores are written out: a loop costs lane-mask
// bookkeeping per iteration on SwiftShader.

fn put(i: u32, y: f32) {
  if (HAS_RESIDUAL) {
    out[i] = y + residual[i];
  } else {
    out[i] = y;
  }
}

fn store4(row: u32, col: u32, cols: u32, v: vec4f) {
  if (col < cols) { put(row + col, v.x); }
  if (col + 1u < cols) { put(row + col + 1u, v.y); }
  if (col + 2u < cols) { put(row + col + 2u, v.z); }
  if (col + 3u < cols) { put(row + col + 3u, v.w); }
}
