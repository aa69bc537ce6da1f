// sm_90a warpgroup MMA (wgmma) for attention_prefill_wgmma.cu: shared-memory matrix descriptors, the
// wgmma.fence / commit_group / wait_group protocol, fence.proxy.async, and the two MMA shapes the kernel
// issues (inline PTX). PTX ISA references are to "9.7.15 Asynchronous Warpgroup Level Matrix Multiply-
// Accumulate Instructions" (wgmma); the CPU emulator (emulation/attention_wgmma_emu.h) defines
// KILN_WGMMA_EMULATED and its own versions of everything below the descriptor encoding, which it shares.
#ifndef KILN_ATTENTION_WGMMA_CUH
#define KILN_ATTENTION_WGMMA_CUH

namespace attn {

// Matrix descriptor (PTX ISA 9.7.15.5.1.2 "Matrix Descriptor Format"), a 64-bit value:
//   bits  0–13  start address >> 4 (shared-memory address, 16-byte aligned)
//   bits 16–29  leading dimension byte offset (LBO) >> 4
//   bits 32–45  stride dimension byte offset (SBO) >> 4
//   bits 49–51  matrix base offset (0: only for swizzled layouts whose pattern is not 1024-B aligned)
//   bits 62–63  swizzle mode: 0 none ("interleave"), 1 128 B, 2 64 B, 3 32 B
// The kernel uses only the no-swizzle mode, whose canonical layouts (9.7.15.5.1.2.1.3 "Canonical
// Layouts", T = 8 elements of 16 bits = 16 bytes, strides in elements) are
//   K-major:  ((8,m),(T,2k)) : ((1T,SBO),(1,LBO))   row r of M/N, column k of K at
//             (r%8)·T + (r/8)·SBO + k%8 + (k/8)·LBO
//   MN-major: ((T,1,m),(8,k)) : ((1,T,SBO),(1T,LBO)) element n of M/N, k of K at
//             n%8 + (n/8)·SBO + (k%8)·T + (k/8)·LBO
// i.e. "core matrices" of 8 × 16 bytes stored as 128 contiguous bytes, LBO apart along K and SBO apart
// along M/N, in both majors.
__device__ __forceinline__ unsigned long long wgmma_desc(unsigned smem_address, unsigned lbo_bytes, unsigned sbo_bytes) {
  return (unsigned long long)((smem_address & 0x3FFFFu) >> 4) | (unsigned long long)((lbo_bytes & 0x3FFFFu) >> 4) << 16 |
         (unsigned long long)((sbo_bytes & 0x3FFFFu) >> 4) << 32;
}

}  // namespace attn

#ifndef KILN_WGMMA_EMULATED

#if defined(KILN_DTYPE_F16)
#define KILN_WGMMA_AB ".f16.f16"
#else
#define KILN_WGMMA_AB ".bf16.bf16"
#endif

namespace attn {

// wgmma.fence (9.7.15.7.1): orders this thread's earlier register and shared-memory accesses before the
// wgmma.mma_async that follow; required before the first mma_async and whenever the accumulator or A
// registers were touched by other instructions since.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
// wgmma.commit_group (9.7.15.7.2): the mma_async issued since the last commit form one wgmma-group.
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// wgmma.wait_group N (9.7.15.7.3): waits until at most N wgmma-groups are pending; only then may the
// accumulators (and A registers) of the completed ones be read or written.
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// fence.proxy.async.shared::cta (9.7.13.4 membar/fence): makes this thread's generic-proxy writes to
// shared memory (cp.async copies included) visible to the async proxy that wgmma reads its descriptors'
// operands through. Each writer fences after its copies land, then the CTA barrier.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// mbarrier (9.7.13.15): a 64-bit shared-memory object counting arrivals in phases. init sets the count a
// phase needs; each arrive (release at CTA scope: the thread's earlier writes become visible to whoever
// observes the phase complete) counts one; the count-th completes the phase, flips its parity and starts
// the next. try_wait.parity P (acquire) succeeds once the phase of parity P has completed, i.e. while the
// current phase's parity is not P — so on a fresh barrier (phase 0) waiting for parity 1 returns at once.
__device__ __forceinline__ void mbar_init(unsigned long long* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// After the inits, before the CTA barrier that publishes them: orders the inits before other threads'
// mbarrier operations (CUTLASS: fence_barrier_init).
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive(unsigned long long* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned long long* bar, unsigned parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
// Named barriers (9.7.13.1 bar / barrier): `threads` threads (a multiple of 32) meet at barrier `id` (1–15;
// 0 is __syncthreads'). sync arrives and waits; arrive counts this warp in without waiting.
__device__ __forceinline__ void named_bar_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// setmaxnreg (9.7.17.x): the warpgroup's registers per thread from here on — a producer warpgroup gives
// registers back (dec) for the consumer warpgroups to take (inc); all warps of a warpgroup execute it.
template <int N> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
// Pins the compiler's view of accumulator registers at this point (an empty asm that "modifies" them),
// so that no access to them moves across a wgmma wait or issue (CUTLASS: warpgroup_fence_operand).
template <int N> __device__ __forceinline__ void fence_operand(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

// Accumulator fragment of m64nNk16 with .f32 D (9.7.15.5.1.1 "Register Fragments", D): warp w of the
// warpgroup holds rows 16w … 16w+15; lane l (g = l/4, t = l%4) holds d[i] at row 16w + g + 8·((i/2)%2),
// column 8·(i/4) + 2t + i%2. A from registers (16-bit): a[0] = (row g, k 2t, 2t+1), a[1] = (g+8, 2t…),
// a[2] = (g, 2t+8…), a[3] = (g+8, 2t+8…) of the warp's 16 rows, low half first (mma.m16n8k16's layout).
// scale_d 0: D = A·B; else D += A·B (the predicate operand scale-d).
// D[64x64] (+)= A[64x16] · B[16x64], A and B from shared memory (both K-major).
__device__ __forceinline__ void wgmma_ss_n64(float (&d)[32], unsigned long long desc_a, unsigned long long desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32" KILN_WGMMA_AB " "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// D[64x64] (+)= A[64x16] · B[16x64], A from registers (the warp's 16 rows, mma.m16n8k16's A layout), B from
// shared memory MN-major (imm-trans-b 1).
__device__ __forceinline__ void wgmma_rs_n64_tb(float (&d)[32], const unsigned (&a)[4], unsigned long long desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32" KILN_WGMMA_AB " "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}

// D[64x128] (+)= A[64x16] · B[16x128], A and B from shared memory (both K-major).
__device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], unsigned long long desc_a, unsigned long long desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32" KILN_WGMMA_AB " "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// D[64x128] (+)= A[64x16] · B[16x128], A from registers (the warp's 16 rows, mma.m16n8k16's A layout), B from
// shared memory MN-major (imm-trans-b 1).
__device__ __forceinline__ void wgmma_rs_n128_tb(float (&d)[64], const unsigned (&a)[4], unsigned long long desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32" KILN_WGMMA_AB " "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}

}  // namespace attn

#endif  // KILN_WGMMA_EMULATED
#endif  // KILN_ATTENTION_WGMMA_CUH
