// Host stand-ins for kernels/attention_ptx.cuh (cp.async, ldmatrix, mma.sync), on fakecuda.h's fibers.
// Include after fakecuda.h and before the kernel source: it defines KILN_ATTENTION_PTX_CUH, so that
// attention_common.cuh skips the inline-PTX versions, and includes attention_common.cuh itself first.
//   cp.async (16 and 4 bytes): each thread queues its copies; cp_async_commit closes a group; cp_async_wait<N> performs
//     all but the newest N committed groups. So a copy lands as late as the PTX allows (at the wait), and
//     a kernel that reads shared memory before waiting, or overwrites a buffer with copies still in
//     flight, sees stale data. -DKILN_EMU_CP_ASYNC_SYNC makes copies land at once instead (the other
//     extreme). Source bytes are read when the copy lands (global inputs are constant during a kernel).
//   cluster_sync, cluster_arrive_relaxed, cluster_wait, cluster_peer, dynamic_smem_bytes: fakecuda.h's clusters (decode kernels).
//   ldmatrix .m8n8.x4 .b16 (.trans) and mma.sync.m16n8k16.row.col.f32.{bf16,f16}: warp-collective via
//     kiln_emu::warp_allgather, with the PTX ISA fragment layouts; mma sums the 16 exact products in
//     double and adds the fp32 accumulator (hardware accumulates in fp32 in an unspecified order).
#pragma once
#define KILN_ATTENTION_PTX_CUH
#include "../attention_common.cuh"
#include <deque>

namespace attn_emu {
struct Copy { void* dst; const void* src; int bytes; int size; };  // size: the destination's bytes (16 or 4)
inline std::vector<Copy> g_open[1024];               // per thread: copies since the last commit
inline std::deque<std::vector<Copy>> g_groups[1024];  // per thread: committed, not yet landed
inline void land(const Copy& c) {
  unsigned char tmp[16] = {};
  if (c.bytes > 0) std::memcpy(tmp, c.src, c.bytes);
  std::memcpy(c.dst, tmp, c.size);
}
inline void queue(const Copy& c) {
#if defined(KILN_EMU_CP_ASYNC_SYNC)
  land(c);
#else
  g_open[threadIdx.x].push_back(c);
#endif
}
inline const bool g_hook = [] {
  kiln_emu::block_start_hooks().push_back([] {
    for (auto& v : g_open) v.clear();
    for (auto& d : g_groups) d.clear();
  });
  return true;
}();
inline float half_to_float(uint16_t b) {
#if defined(KILN_DTYPE_F16)
  _Float16 h; std::memcpy(&h, &b, 2); return (float)h;
#else
  uint32_t u = (uint32_t)b << 16; float f; std::memcpy(&f, &u, 4); return f;
#endif
}
inline uint16_t lo16(unsigned r) { return (uint16_t)(r & 0xffffu); }
inline uint16_t hi16(unsigned r) { return (uint16_t)(r >> 16); }
}  // namespace attn_emu

namespace attn {

inline unsigned smem_addr(const void* p) { return (unsigned)(uintptr_t)p; }

// Clusters (attention_decode_c*): fakecuda.h's cluster barrier and distributed shared memory.
// cluster_arrive_relaxed + cluster_wait: the whole barrier at the wait (stricter than the hardware's,
// whose wait only needs every thread's earlier arrive).
inline void cluster_sync() { kiln_emu::cluster_sync(); }
inline void cluster_arrive_relaxed() {}
inline void cluster_wait() { kiln_emu::cluster_sync(); }
template <class T> T* cluster_peer(T* p, unsigned rank) { return kiln_emu::cluster_peer(p, rank); }
inline unsigned dynamic_smem_bytes() { return (unsigned)kiln_emu::g_dyn_smem_bytes; }
inline void __trap() { fprintf(stderr, "__trap()\n"); abort(); }

inline void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
  if (src_bytes != 0 && src_bytes != 16) { fprintf(stderr, "cp_async_16: src_bytes %d\n", src_bytes); abort(); }
  if (((uintptr_t)smem_dst | (src_bytes ? (uintptr_t)gmem_src : 0)) & 15) { fprintf(stderr, "cp_async_16: unaligned address\n"); abort(); }
  attn_emu::queue({smem_dst, gmem_src, src_bytes, 16});
}
inline void cp_async_4(void* smem_dst, const void* gmem_src, int src_bytes) {
  if (src_bytes != 0 && src_bytes != 4) { fprintf(stderr, "cp_async_4: src_bytes %d\n", src_bytes); abort(); }
  if (((uintptr_t)smem_dst | (src_bytes ? (uintptr_t)gmem_src : 0)) & 3) { fprintf(stderr, "cp_async_4: unaligned address\n"); abort(); }
  attn_emu::queue({smem_dst, gmem_src, src_bytes, 4});
}
inline void cp_async_commit() {
  auto& open = attn_emu::g_open[threadIdx.x];
  attn_emu::g_groups[threadIdx.x].push_back(std::move(open));
  open.clear();
}
template <int N> inline void cp_async_wait() {
  auto& q = attn_emu::g_groups[threadIdx.x];
  while (q.size() > (size_t)N) {
    for (const auto& c : q.front()) attn_emu::land(c);
    q.pop_front();
  }
}

// ldmatrix .m8n8.x4 .b16: lane l gives the address of row l % 8 of matrix l / 8 (8 b16 elements).
// Without .trans, r[i] of lane l = matrix i's row l/4, columns 2(l%4), 2(l%4)+1 (low half first);
// with .trans, r[i] = matrix i's (row 2(l%4), column l/4) and (row 2(l%4)+1, column l/4).
inline void ldmatrix_impl(unsigned (&r)[4], const void* smem_row, bool trans) {
  if ((uintptr_t)smem_row & 15) { fprintf(stderr, "ldmatrix: row address not 16-byte aligned\n"); abort(); }
  const void* rows[32];
  kiln_emu::warp_allgather(smem_row, rows);
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  for (int i = 0; i < 4; i++) {
    uint16_t lo, hi;
    if (!trans) {
      const uint16_t* row = static_cast<const uint16_t*>(rows[8 * i + g]);
      lo = row[2 * t];
      hi = row[2 * t + 1];
    } else {
      lo = static_cast<const uint16_t*>(rows[8 * i + 2 * t])[g];
      hi = static_cast<const uint16_t*>(rows[8 * i + 2 * t + 1])[g];
    }
    r[i] = (unsigned)lo | ((unsigned)hi << 16);
  }
}
inline void ldmatrix_x4(unsigned (&r)[4], const void* smem_row) { ldmatrix_impl(r, smem_row, false); }
inline void ldmatrix_x4_trans(unsigned (&r)[4], const void* smem_row) { ldmatrix_impl(r, smem_row, true); }

#if !defined(KILN_DTYPE_F32)
// mma.m16n8k16 row.col, fp32 accumulators. groupID g = lane >> 2, t = lane % 4:
//   A (16x16): a0 = (row g, cols 2t, 2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8):  b0 = (rows k 2t, 2t+1, col n g), b1 = (k 2t+8, 2t+9, n g)
//   C/D:       c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, cols 2t, 2t+1)
struct MmaIn { unsigned a[4]; unsigned b[2]; };
inline void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  MmaIn mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  MmaIn all[32];
  kiln_emu::warp_allgather(mine, all);
  auto A = [&](int row, int k) {
    const unsigned reg = all[(row & 7) * 4 + (k & 7) / 2].a[(row >= 8) + 2 * (k >= 8)];
    return attn_emu::half_to_float(k & 1 ? attn_emu::hi16(reg) : attn_emu::lo16(reg));
  };
  auto B = [&](int k, int n) {
    const unsigned reg = all[n * 4 + (k & 7) / 2].b[k >= 8];
    return attn_emu::half_to_float(k & 1 ? attn_emu::hi16(reg) : attn_emu::lo16(reg));
  };
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  for (int i = 0; i < 4; i++) {
    const int row = g + 8 * (i >= 2), col = 2 * t + (i & 1);
    double s = 0;
    for (int k = 0; k < 16; k++) s += (double)A(row, k) * (double)B(k, col);
    d[i] = (float)((double)d[i] + s);
  }
}

// Two floats rounded to the element type, packed as one 32-bit operand (lo = first).
inline unsigned pack2(float lo, float hi) {
  kiln_t e[2] = {from_float(lo), from_float(hi)};
  unsigned u;
  std::memcpy(&u, e, 4);
  return u;
}
#endif

}  // namespace attn
