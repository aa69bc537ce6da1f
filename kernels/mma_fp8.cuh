// mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 (inline PTX; sm_89+, sm_90 included). The CPU
// emulator defines KILN_MMA_FP8_CUH and its stand-in first (kernels/emulation/mma_fp8_emu.h).
// Fragments (PTX ISA, m16n8k32 with 8-bit types), lane = 4·g + t (g = groupID, t = threadID_in_group);
// 4 E4M3 bytes a 32-bit register, the lowest byte first:
//   A (16×32, row): a[0] = (row g, k 4t…4t+3), a[1] = (row g+8, k 4t…), a[2] = (row g, k 4t+16…),
//                   a[3] = (row g+8, k 4t+16…)
//   B (32×8, col):  b0 = (k 4t…4t+3, col g), b1 = (k 4t+16…4t+19, col g)
//   C/D (16×8 f32): d[0], d[1] = (row g, cols 2t, 2t+1), d[2], d[3] = (row g+8, cols 2t, 2t+1)
// Sums: fp32 accumulation whose order and intermediate precision PTX leaves open (Hopper runs it on its
// fp16 tensor cores after converting the operands: test/gpu/kernels/tolerances.ts FP8_MMA bounds it).
#ifndef KILN_MMA_FP8_CUH
#define KILN_MMA_FP8_CUH

namespace kiln {

/** d += A·B for one m16n8k32 E4M3 tile (fragments above). */
__device__ __forceinline__ void mma_e4m3_16832(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  (void)d, (void)a, (void)b0, (void)b1;
  __trap();  // below sm_89: no FP8 tensor cores (the runtime refuses fp8 engines there)
#endif
}

}  // namespace kiln

#endif  // KILN_MMA_FP8_CUH
