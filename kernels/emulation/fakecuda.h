// A CPU emulation of enough of CUDA's execution model to run kiln's kernels: one std::thread per CUDA
// thread of a block, std::barrier for __syncthreads and for warp shuffles. Blocks run one at a time.
// Checks a kernel's logic (indexing, barriers, reductions, control flow), not its speed or its memory
// model; shuffles need all 32 lanes (kiln's kernels only shuffle warp-uniformly). __shared__ becomes
// `static`, so a kernel's shared variables persist (uninitialised in CUDA) across blocks.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(x)
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
inline std::barrier<>* g_block_bar;
inline std::vector<std::barrier<>*> g_warp_bar;
inline uint64_t g_warp_buf[32][32];
inline void __syncthreads() { g_block_bar->arrive_and_wait(); }
template <class T, class F> T shfl_impl(T v, F src) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  uint64_t s = 0; std::memcpy(&s, &v, sizeof(T)); g_warp_buf[w][lane] = s;
  g_warp_bar[w]->arrive_and_wait();
  T r; uint64_t g = g_warp_buf[w][src(lane)]; std::memcpy(&r, &g, sizeof(T));
  g_warp_bar[w]->arrive_and_wait();
  return r;
}
template <class T> T __shfl_xor_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l ^ o; }); }
template <class T> T __shfl_up_sync(unsigned, T v, int o) { return shfl_impl(v, [o](int l) { return l >= o ? l - o : l; }); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline int atomicOr(int* p, int v) { return std::atomic_ref<int>(*p).fetch_or(v); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::min; using std::max;
inline void launch(dim3 grid, dim3 block, std::function<void()> body) {
  gridDim = grid; blockDim = block;
  for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) {
    blockIdx.x = bx; blockIdx.y = by;
    std::barrier<> bar(block.x); g_block_bar = &bar;
    std::vector<std::barrier<>*> wb; for (unsigned w = 0; w < (block.x + 31) / 32; w++) wb.push_back(new std::barrier<>(32));
    g_warp_bar = wb;
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < block.x; t++) ts.emplace_back([t, &body] { threadIdx.x = t; body(); });
    for (auto& th : ts) th.join();
    for (auto* b : wb) delete b;
  }
}
