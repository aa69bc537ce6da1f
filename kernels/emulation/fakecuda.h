// A CPU emulation of enough of CUDA's execution model to run kiln's kernels: each CUDA thread of a block
// is a fiber (ucontext) on one OS thread, switched cooperatively at __syncthreads, __syncwarp, warp
// shuffles and the warp-collective helpers below (warp_allgather: ldmatrix/mma emulation). Blocks run
// one at a time (in order, or shuffled by launch's order_seed). Checks a kernel's logic (indexing,
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
struct dim3 { unsigned x = 1, y = 1, z = 1; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline dim3 threadIdx;  // of the running fiber (set by the scheduler on every switch)
inline dim3 blockIdx, blockDim, gridDim;

namespace kiln_emu {
struct Fiber { ucontext_t ctx; unsigned tid; bool done; };
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
inline Barrier g_block_bar;
inline Barrier g_warp_bar[32];
inline void trampoline() {
  (*g_body)();
  g_fibers[g_cur].done = true;
  g_progress++;
  swapcontext(&g_fibers[g_cur].ctx, &g_sched);
}
// All 32 lanes of the caller's warp contribute `mine`; every lane gets the 32 values (lane order).
alignas(16) inline unsigned char g_slots[32][32][64];
template <class T> void warp_allgather(const T& mine, T (&all)[32]) {
  static_assert(sizeof(T) <= 64, "slot size");
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  std::memcpy(g_slots[w][lane], &mine, sizeof(T));
  g_warp_bar[w].arrive_and_wait();
  for (int l = 0; l < 32; l++) std::memcpy(&all[l], g_slots[w][l], sizeof(T));
  g_warp_bar[w].arrive_and_wait();  // slots free again
}
// Dynamic shared memory: one buffer (the H100/H200 per-block maximum is 227 KiB).
constexpr size_t kDynSmemMax = 228 * 1024;
alignas(256) inline unsigned char g_dyn_smem[kDynSmemMax];
inline size_t g_dyn_smem_bytes;
// Called before every block (per-thread emulator state, e.g. cp.async queues, is reset there).
inline std::vector<std::function<void()>>& block_start_hooks() { static std::vector<std::function<void()>> h; return h; }
}  // namespace kiln_emu

#define KILN_DYN_SHARED(T, name) T* const name = reinterpret_cast<T*>(::kiln_emu::g_dyn_smem)

inline void __syncthreads() { kiln_emu::g_block_bar.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { kiln_emu::g_warp_bar[threadIdx.x >> 5].arrive_and_wait(); }
template <class T, class F> T shfl_impl(T v, F src) {
  T all[32];
  kiln_emu::warp_allgather(v, all);
  return all[src(threadIdx.x & 31) & 31];
}
template <class T> T __shfl_xor_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l ^ o; }); }
template <class T> T __shfl_up_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l >= o ? l - o : l; }); }
template <class T> T __shfl_down_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l + o < 32 ? l + o : l; }); }
template <class T> T __shfl_sync(unsigned, T v, int src) { return shfl_impl(v, [src](int) { return src; }); }
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
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::min; using std::max;

// Runs body for every thread of every block of grid. dyn_smem: the launch's dynamic shared memory
// bytes (≤ kDynSmemMax). order_seed ≠ 0 runs the blocks in a shuffled order.
inline void launch(dim3 grid, dim3 block, std::function<void()> body, size_t dyn_smem = 0, unsigned order_seed = 0) {
  using namespace kiln_emu;
  if (dyn_smem > kDynSmemMax) { fprintf(stderr, "launch: %zu B of dynamic shared memory > %zu\n", dyn_smem, kDynSmemMax); abort(); }
  const unsigned nthreads = block.x * block.y * block.z;
  if (block.y != 1 || block.z != 1 || nthreads > 1024 || nthreads == 0) { fprintf(stderr, "launch: 1-D blocks of ≤ 1024 threads only\n"); abort(); }
  gridDim = grid; blockDim = block; g_dyn_smem_bytes = dyn_smem; g_body = &body;
  std::vector<dim3> order;
  for (unsigned bz = 0; bz < grid.z; bz++) for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) order.push_back({bx, by, bz});
  if (order_seed) { std::mt19937 g(order_seed); std::shuffle(order.begin(), order.end(), g); }
  constexpr size_t kStack = 256 * 1024;
  std::unique_ptr<char[]> stacks(new char[kStack * nthreads]);
  for (const dim3& b : order) {
    blockIdx = b;
    std::memset(g_dyn_smem, 0xff, kDynSmemMax);
    for (auto& h : block_start_hooks()) h();
    g_block_bar = Barrier{nthreads};
    for (unsigned w = 0; w < 32; w++) g_warp_bar[w] = Barrier{std::min(32u, nthreads > 32 * w ? nthreads - 32 * w : 0u)};
    g_fibers.assign(nthreads, Fiber{});
    for (unsigned t = 0; t < nthreads; t++) {
      Fiber& f = g_fibers[t];
      f.tid = t; f.done = false;
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = stacks.get() + kStack * t;
      f.ctx.uc_stack.ss_size = kStack;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, trampoline, 0);
    }
    for (unsigned live = nthreads; live > 0;) {
      const uint64_t before = g_progress;
      live = 0;
      for (size_t i = 0; i < g_fibers.size(); i++) {
        if (g_fibers[i].done) continue;
        g_cur = i; threadIdx = dim3{g_fibers[i].tid, 0, 0};
        swapcontext(&g_sched, &g_fibers[i].ctx);
        live += !g_fibers[i].done;
      }
      if (live > 0 && g_progress == before) {
        fprintf(stderr, "launch: deadlock in block (%u,%u,%u): %u threads wait at barriers no one else reaches\n", b.x, b.y, b.z, live);
        abort();
      }
    }
    for (size_t i = dyn_smem; i < kDynSmemMax; i++) {
      if (g_dyn_smem[i] != 0xff) { fprintf(stderr, "launch: block (%u,%u,%u) wrote dynamic shared memory byte %zu ≥ the launch's %zu\n", b.x, b.y, b.z, i, dyn_smem); abort(); }
    }
  }
}
