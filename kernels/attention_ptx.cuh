// sm_80+ primitives for the tensor-core prefill path: cp.async, ldmatrix, mma.sync (inline PTX).
// Kept apart from attention_common.cuh so that a host-side emulator of the kernels can stand in its
// own versions (it defines KILN_ATTENTION_PTX_CUH first).
#ifndef KILN_ATTENTION_PTX_CUH
#define KILN_ATTENTION_PTX_CUH

namespace attn {

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}

// 16-byte async copy global → shared; copies `src_bytes` (0 or 16) and zero-fills the rest.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem_dst)), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
}
// 4-byte async copy global → shared (through L1: .cg takes 16 bytes only); copies `src_bytes` (0 or 4)
// and zero-fills the rest.
__device__ __forceinline__ void cp_async_4(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(smem_dst)), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row)));
}

#if !defined(KILN_DTYPE_F32)
// d[16x8] += a[16x16] · b[16x8], fp32 accumulation (PTX fragment layouts, "row.col").
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if defined(KILN_DTYPE_F16)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two floats rounded to the element type, packed as one 32-bit mma operand (lo = first).
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
#if defined(KILN_DTYPE_F16)
  __half2 v = __floats2half2_rn(lo, hi);
#else
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
#endif
  unsigned u;
  memcpy(&u, &v, sizeof(u));
  return u;
}
#endif

// Thread-block clusters (sm_90+; attention_decode_c2/4/8). The cluster barrier: every thread of every
// CTA of the cluster arrives (release: its earlier writes, shared and global, become visible to the
// cluster) and waits for all (acquire). Called by all threads, warp-uniformly.
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

// The cluster barrier in halves (all threads, warp-uniformly, each arrive followed by a wait before the
// next arrive): arrive.relaxed (no memory ordering) says "this CTA has started"; a later wait returns
// once every thread of the cluster has arrived. The decode kernels arrive early and wait just before
// their first distributed-shared-memory store, which needs every CTA of the cluster to have started
// (CUDA Programming Guide, distributed shared memory); the wait then rarely waits.
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

// The address of *p (this CTA's shared memory) in the shared memory of the cluster's CTA `rank`
// (distributed shared memory, a generic address: ordinary loads read it and ordinary stores write it;
// T may be const).
template <class T>
__device__ __forceinline__ T* cluster_peer(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned long long d;
  asm volatile("mapa.u64 %0, %1, %2;\n" : "=l"(d) : "l"(p), "r"(rank));
  return reinterpret_cast<T*>(d);
#else
  __trap();
  return p;
#endif
}

// Bytes of dynamic shared memory this launch gave the CTA (%dynamic_smem_size).
__device__ __forceinline__ unsigned dynamic_smem_bytes() {
  unsigned r;
  asm("mov.u32 %0, %%dynamic_smem_size;\n" : "=r"(r));
  return r;
}

}  // namespace attn

#endif  // KILN_ATTENTION_PTX_CUH
