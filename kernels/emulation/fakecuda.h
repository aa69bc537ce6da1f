// A CPU emulation of enough of CUDA's execution model to run kiln's kernels: each CUDA thread of a block
// is a fiber (ucontext) on one OS thread, switched cooperatively at __syncthreads, __syncwarp, warp
// shuffles and the warp-collective helpers below (warp_allgather: ldmatrix/mma emulation). Blocks run
// one at a time (in order, or shuffled by launch's order_seed); a launch with thread-block clusters runs
// the blocks of one cluster together (cluster_sync, cluster_peer: distributed shared memory, which must be
// dynamic shared memory, the one kind of shared memory each block has its own copy of). Checks a kernel's logic (indexing,
// barriers, reductions, control flow), not its speed or its memory model; shuffles need all 32 lanes
// (kiln's kernels only shuffle warp-uniformly). A barrier nobody can complete (e.g. __syncthreads in
// divergent code) is reported as a deadlock and aborts.
// __shared__ becomes `static`, so a kernel's shared variables persist (uninitialised in CUDA) across
// blocks. Dynamic shared memory (`extern __shared__ T name[];`) cannot be written as a `static`: the
// build rewrites those declarations to KILN_DYN_SHARED(T, name) (see attention_run.sh's sed), a pointer
// to g_dyn_smem, which launch fills with 0xff bytes (NaN) before every block and checks past the
// requested size afterwards.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __cluster_dims__(...)
struct dim3 { unsigned x = 1, y = 1, z = 1; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline dim3 threadIdx;  // of the running fiber (set by the scheduler on every switch, as is blockIdx)
inline dim3 blockIdx, blockDim, gridDim;

namespace kiln_emu {
struct Fiber { ucontext_t ctx; unsigned tid, blk; bool done; };  // blk: block within the cluster
inline ucontext_t g_sched;
inline std::vector<Fiber> g_fibers;
inline size_t g_cur;
inline uint64_t g_progress;  // barrier arrivals and finished fibers: no change in a full pass = deadlock
inline const std::function<void()>* g_body;
inline void yield() { swapcontext(&g_fibers[g_cur].ctx, &g_sched); }
struct Barrier {
  unsigned expected = 0, count = 0, gen = 0;
  void arrive_and_wait() {
    g_progress++;
    const unsigned g = gen;
    if (++count == expected) { count = 0; gen++; return; }
    while (gen == g) yield();
  }
};
constexpr unsigned kMaxCluster = 8;
// Per block of the running cluster: its barriers and warp_allgather slots.
struct BlockState {
  Barrier bar;
  Barrier warp_bar[32];
  alignas(16) unsigned char slots[32][32][64];
};
inline std::vector<BlockState> g_blocks;
inline std::vector<dim3> g_block_idx;
inline unsigned g_blk;  // the running fiber's block within its cluster
inline Barrier g_cluster_bar;
inline void trampoline() {
  (*g_body)();
  g_fibers[g_cur].done = true;
  g_progress++;
  swapcontext(&g_fibers[g_cur].ctx, &g_sched);
}
// All 32 lanes of the caller's warp contribute `mine`; every lane gets the 32 values (lane order).
template <class T> void warp_allgather(const T& mine, T (&all)[32]) {
  static_assert(sizeof(T) <= 64, "slot size");
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  BlockState& b = g_blocks[g_blk];
  std::memcpy(b.slots[w][lane], &mine, sizeof(T));
  b.warp_bar[w].arrive_and_wait();
  for (int l = 0; l < 32; l++) std::memcpy(&all[l], g_blocks[g_blk].slots[w][l], sizeof(T));
  g_blocks[g_blk].warp_bar[w].arrive_and_wait();  // slots free again
}
// Dynamic shared memory: one buffer per block of a cluster (the H100/H200 per-block maximum is 227 KiB);
// g_dyn_smem_cur is the running fiber's block's.
constexpr size_t kDynSmemMax = 228 * 1024;
alignas(256) inline unsigned char g_dyn_smem[kMaxCluster][kDynSmemMax];
inline unsigned char* g_dyn_smem_cur = g_dyn_smem[0];
inline size_t g_dyn_smem_bytes;
// Called before every block (per-thread emulator state, e.g. cp.async queues, is reset there).
inline std::vector<std::function<void()>>& block_start_hooks() { static std::vector<std::function<void()>> h; return h; }
}  // namespace kiln_emu

#define KILN_DYN_SHARED(T, name) T* const name = reinterpret_cast<T*>(::kiln_emu::g_dyn_smem_cur)

inline void __syncthreads() { kiln_emu::g_blocks[kiln_emu::g_blk].bar.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { kiln_emu::g_blocks[kiln_emu::g_blk].warp_bar[threadIdx.x >> 5].arrive_and_wait(); }
// Thread-block clusters: the barrier of every thread of the cluster, and the address of *p (the running
// block's dynamic shared memory) in the cluster block `rank`'s.
namespace kiln_emu {
inline void cluster_sync() { g_cluster_bar.arrive_and_wait(); }
template <class T> T* cluster_peer(T* p, unsigned rank) {
  const auto* c = reinterpret_cast<const unsigned char*>(p);
  if (c < g_dyn_smem_cur || c >= g_dyn_smem_cur + g_dyn_smem_bytes || rank >= g_blocks.size()) {
    fprintf(stderr, "cluster_peer: %p is not in the block's dynamic shared memory, or rank %u ≥ the cluster's %zu blocks\n",
            (const void*)p, rank, g_blocks.size());
    abort();
  }
  return reinterpret_cast<T*>(g_dyn_smem[rank] + (c - g_dyn_smem_cur));
}
}  // namespace kiln_emu
template <class T, class F> T shfl_impl(T v, F src) {
  T all[32];
  kiln_emu::warp_allgather(v, all);
  return all[src(threadIdx.x & 31) & 31];
}
template <class T> T __shfl_xor_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l ^ o; }); }
template <class T> T __shfl_up_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l >= o ? l - o : l; }); }
template <class T> T __shfl_down_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l + o < 32 ? l + o : l; }); }
template <class T> T __shfl_sync(unsigned, T v, int src) { return shfl_impl(v, [src](int) { return src; }); }
// Lanes of the warp (all 32 take part) whose v equals the caller's; the sum of v over the lanes of mask
// (the caller's group: every lane of mask passes the same mask).
template <class T> unsigned __match_any_sync(unsigned, T v) {
  T all[32];
  kiln_emu::warp_allgather(v, all);
  unsigned m = 0;
  for (int l = 0; l < 32; l++) m |= (all[l] == v ? 1u : 0u) << l;
  return m;
}
// The lanes of the warp (all 32 take part) whose predicate is non-zero.
inline unsigned __ballot_sync(unsigned, int pred) {
  int all[32];
  kiln_emu::warp_allgather(pred != 0 ? 1 : 0, all);
  unsigned m = 0;
  for (int l = 0; l < 32; l++) m |= (all[l] ? 1u : 0u) << l;
  return m;
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
  unsigned all[32];
  kiln_emu::warp_allgather(v, all);
  unsigned s = 0;
  for (int l = 0; l < 32; l++) s += (mask >> l & 1u) ? all[l] : 0u;
  return s;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
// Loads through the caches: plain loads here (one CTA at a time, single OS thread).
template <class T> T __ldg(const T* p) { return *p; }
template <class T> T __ldcg(const T* p) { return *p; }
template <class T> T __ldcs(const T* p) { return *p; }
template <class T> T __ldca(const T* p) { return *p; }
template <class T> T __ldlu(const T* p) { return *p; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline int atomicAdd(int* p, int v) { int o = *p; *p = o + v; return o; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { auto o = *p; *p = o + v; return o; }
inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }
inline double atomicAdd(double* p, double v) { double o = *p; *p = o + v; return o; }
inline int atomicOr(int* p, int v) { int o = *p; *p = o | v; return o; }
inline int atomicMax(int* p, int v) { int o = *p; *p = std::max(o, v); return o; }
inline int atomicExch(int* p, int v) { int o = *p; *p = v; return o; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
// Double-precision intrinsics: one IEEE rounding each (the build passes -ffp-contract=off).
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::min; using std::max;

// Runs body for every thread of every block of grid. dyn_smem: the launch's dynamic shared memory
// bytes (≤ kDynSmemMax). order_seed ≠ 0 runs the clusters in a shuffled order. cluster_z > 1: blocks
// (x, y, c·cluster_z + r), r < cluster_z, form cluster c of (x, y) (cluster dims (1, 1, cluster_z), rank
// r) and run together.
inline void launch(dim3 grid, dim3 block, std::function<void()> body, size_t dyn_smem = 0, unsigned order_seed = 0,
                   unsigned cluster_z = 1) {
  using namespace kiln_emu;
  if (dyn_smem > kDynSmemMax) { fprintf(stderr, "launch: %zu B of dynamic shared memory > %zu\n", dyn_smem, kDynSmemMax); abort(); }
  if (cluster_z == 0 || cluster_z > kMaxCluster || grid.z % cluster_z != 0) { fprintf(stderr, "launch: cluster of %u blocks for grid z %u\n", cluster_z, grid.z); abort(); }
  const unsigned nthreads = block.x * block.y * block.z;
  if (block.y != 1 || block.z != 1 || nthreads > 1024 || nthreads == 0) { fprintf(stderr, "launch: 1-D blocks of ≤ 1024 threads only\n"); abort(); }
  gridDim = grid; blockDim = block; g_dyn_smem_bytes = dyn_smem; g_body = &body;
  std::vector<dim3> order;  // each cluster's first block
  for (unsigned bz = 0; bz < grid.z; bz += cluster_z) for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) order.push_back({bx, by, bz});
  if (order_seed) { std::mt19937 g(order_seed); std::shuffle(order.begin(), order.end(), g); }
  constexpr size_t kStack = 256 * 1024;
  const unsigned nfibers = nthreads * cluster_z;
  std::unique_ptr<char[]> stacks(new char[kStack * nfibers]);
  g_blocks.resize(cluster_z);
  for (const dim3& c : order) {
    g_block_idx.assign(cluster_z, c);
    for (unsigned r = 0; r < cluster_z; r++) {
      g_block_idx[r].z = c.z + r;
      std::memset(g_dyn_smem[r], 0xff, kDynSmemMax);
      BlockState& b = g_blocks[r];
      b.bar = Barrier{nthreads};
      for (unsigned w = 0; w < 32; w++) b.warp_bar[w] = Barrier{std::min(32u, nthreads > 32 * w ? nthreads - 32 * w : 0u)};
    }
    for (auto& h : block_start_hooks()) h();
    g_cluster_bar = Barrier{nfibers};
    g_fibers.assign(nfibers, Fiber{});
    for (unsigned t = 0; t < nfibers; t++) {
      Fiber& f = g_fibers[t];
      f.tid = t % nthreads; f.blk = t / nthreads; f.done = false;
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = stacks.get() + kStack * t;
      f.ctx.uc_stack.ss_size = kStack;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, trampoline, 0);
    }
    for (unsigned live = nfibers; live > 0;) {
      const uint64_t before = g_progress;
      live = 0;
      for (size_t i = 0; i < g_fibers.size(); i++) {
        if (g_fibers[i].done) continue;
        g_cur = i; g_blk = g_fibers[i].blk;
        threadIdx = dim3{g_fibers[i].tid, 0, 0}; blockIdx = g_block_idx[g_blk]; g_dyn_smem_cur = g_dyn_smem[g_blk];
        swapcontext(&g_sched, &g_fibers[i].ctx);
        live += !g_fibers[i].done;
      }
      if (live > 0 && g_progress == before) {
        fprintf(stderr, "launch: deadlock in cluster of block (%u,%u,%u): %u threads wait at barriers no one else reaches\n", c.x, c.y, c.z, live);
        abort();
      }
    }
    for (unsigned r = 0; r < cluster_z; r++) {
      for (size_t i = dyn_smem; i < kDynSmemMax; i++) {
        if (g_dyn_smem[r][i] != 0xff) { fprintf(stderr, "launch: block (%u,%u,%u) wrote dynamic shared memory byte %zu ≥ the launch's %zu\n", c.x, c.y, c.z + r, i, dyn_smem); abort(); }
      }
    }
  }
  g_blk = 0; g_dyn_smem_cur = g_dyn_smem[0];
}
