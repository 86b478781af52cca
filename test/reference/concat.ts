/** Float64 twin of src/ops/concat.ts: torch.cat along `dim`. */
export function concatRef(parts: { data: ArrayLike<number>; shape: readonly number[] }[], dim: number): Float64Array {
  const shape = parts[0]!.shape;
  const outer = shape.slice(0, dim).reduce((a, b) => a * b, 1);
  const after = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const inner = p.shape[dim]! * after;
      for (let j = 0; j < inner; j++) out.push(p.data[o * inner + j]!);
    }
  }
  return Float64Array.from(out);
}
