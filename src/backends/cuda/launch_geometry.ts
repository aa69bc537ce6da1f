// Launch geometry of the row-wise and elementwise kernels (rmsnorm.cu, layernorm.cu, activation.cu),
// which move 16 bytes per thread: `elem` is the bytes of one element of the engine's dtype.

/** Threads per row of a norm over `width` elements: one 16-byte vector each (a whole warp at least,
 * 1,024 at most), or one element each when the width is not a whole number of vectors. */
export function normBlock(width: number, elem: number): number {
  const vec = 16 / elem;
  const per = width % vec === 0 ? Math.ceil(width / vec) : width;
  return Math.min(1024, Math.ceil(per / 32) * 32);
}

/** Blocks of 256 threads for an elementwise kernel over `n` elements, 16 bytes per thread. */
export function elementwiseGrid(n: number, elem: number): number {
  return Math.max(1, Math.min(Math.ceil(n / (256 * (16 / elem))), 65535));
}
