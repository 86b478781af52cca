// Batched transpose y[b, n, m] = x[b, m, n] ([B,M,N] → [B,N,M]), e.g. NCHW [N,C,HW] ↔ tokens [N,HW,C].
// A TILE×TILE block goes through workgroup memory so that both the reads and the writes are row-contiguous;
// the +1 column avoids bank conflicts on GPUs.
// Dispatch: (ceil(N / TILE), ceil(M / TILE), B), TILE×ROWS invocations each moving TILE/ROWS values.
// Bindings: 0 x, 1 y, 2 params. Matches test/reference/transpose.ts.

const TILE: u32 = 32u;
const ROWS: u32 = 8u;

struct Params {
  M: u32,
  N: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> tile: array<array<f32, 33>, 32>;

@compute @workgroup_size(32, 8)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let M = params.M;
  let N = params.N;
  let base = wid.z * M * N;
  let n0 = wid.x * TILE;
  let m0 = wid.y * TILE;
  for (var r = lid.y; r < TILE; r += ROWS) {
    let m = m0 + r;
    let n = n0 + lid.x;
    if (m < M && n < N) { tile[r][lid.x] = x[base + m * N + n]; }
  }
  workgroupBarrier();
  for (var r = lid.y; r < TILE; r += ROWS) {
    let n = n0 + r;
    let m = m0 + lid.x;
    if (m < M && n < N) { y[base + n * M + m] = tile[lid.x][r]; }
  }
}
