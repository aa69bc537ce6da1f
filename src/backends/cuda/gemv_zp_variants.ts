// The kernels/gemv_zp.cu kernels (module gemv_zp) that run a linear over an int4-zp weight
// (AWQ, GPTQ), and their launch shapes. Decode steps of at most WO_GEMV_MAX_ROWS rows run gemv_zp_* over
// the stored nibbles when the weight's rows are whole 16-byte vectors (k a multiple of 32): the
// tensor-core gemv_zp_mma where its groups are whole 128-feature chunks (G a multiple of 128, no g_idx)
// and its zero points exact in 16 bits (the caller's `mma`: the weight's zerosExact), else the CUDA-core
// kernels; other steps and shapes dequantize the weight into the engine dtype (dequant_zp) for the
// cuBLASLt GEMM.

/** Features per 16-byte q vector of gemv_zp (two a byte). */
const ZP_VECTOR_FEATURES = 32;

/** Whether gemv_zp has a kernel for rows of `k` input features (16-byte q rows, whole vectors). */
export function zpGemvTakes(k: number): boolean {
  return k % ZP_VECTOR_FEATURES === 0;
}

/** The kernel family for an int4-zp weight: "gemv_zp_mma" when `mma` allows it and each 128-feature
 * chunk lies in one group (G a multiple of 128, no g_idx); "gemv_zp" when each q vector lies in one group
 * (group size a multiple of 32, no g_idx); else "gemv_zp_any" (each feature's own group: act-order,
 * other sizes). */
function family(
  groupSize: number,
  actOrder: boolean,
  mma: boolean,
): "gemv_zp_mma" | "gemv_zp" | "gemv_zp_any" {
  if (mma && !actOrder && groupSize % MMA_CHUNK_FEATURES === 0) return "gemv_zp_mma";
  return !actOrder && groupSize % ZP_VECTOR_FEATURES === 0 ? "gemv_zp" : "gemv_zp_any";
}

/** Features of one chunk of gemv_zp_mma (a lane quad's four q vectors: one scale group at most). */
const MMA_CHUNK_FEATURES = 128;
/** Weight rows per block of gemv_zp_mma (one m16n8k16 tile; 8 warps split k), features of its gated kernel. */
const MMA_ROWS_PER_BLOCK = 16;

/** gemv_zp[_any]_r2uUw4 for an [n, k] weight (k a multiple of 32): 8 rows a block of 4 warps; U = 8
 * vectors per lane and row in flight when a row has a whole iteration of them (k ≥ 8192), else 4
 * (the any kernel has U = 4 only). */
export function zpGemvLaunch(
  n: number,
  k: number,
  groupSize: number,
  actOrder: boolean,
  mma = false,
): { kernel: string; grid: number; block: number } {
  const f = family(groupSize, actOrder, mma);
  if (f === "gemv_zp_mma") return { kernel: f, grid: Math.ceil(n / MMA_ROWS_PER_BLOCK), block: 256 };
  const u = f === "gemv_zp" && k / ZP_VECTOR_FEATURES >= 32 * 8 ? 8 : 4;
  return { kernel: `${f}_r2u${u}w4`, grid: Math.ceil(n / 8), block: 128 };
}

/** gemv_zp[_any]_gated_ACT for `inter` output features: one feature (gate and up rows) per warp, 8 warps. */
export function zpGemvGatedLaunch(
  act: string,
  inter: number,
  groupSize: number,
  actOrder: boolean,
  mma = false,
): { kernel: string; grid: number; block: number } {
  const f = family(groupSize, actOrder, mma);
  const perBlock = f === "gemv_zp_mma" ? MMA_ROWS_PER_BLOCK : 8;
  return { kernel: `${f}_gated_${act}`, grid: Math.ceil(inter / perBlock), block: 256 };
}

/** dequant_zp for an [n, k] weight: one thread per q byte (two features). */
export function zpDequantLaunch(n: number, k: number): { kernel: string; grid: number; block: number } {
  return { kernel: "dequant_zp", grid: Math.ceil((n * Math.ceil(k / 2)) / 256), block: 256 };
}
