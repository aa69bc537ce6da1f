// Decode-step GEMV microbenchmark: which GEMV shape of work (rows per warp, vectors in flight) and
// which launch mode (plain, programmatic dependent launch with the weights prefetched before the
// grid-dependency wait) gets a batch-1 decode step closest to its bandwidth floor. Standalone (CUDA
// runtime only) so it runs on the GPU machine without Node:
//   nvcc -O3 -arch=sm_90 -o /tmp/gemv_pdl tools/microbench/gemv_pdl.cu && /tmp/gemv_pdl [8b|1b]
// It times a whole model's chain of decode GEMVs (qkv, o, gate_up, down per layer, then the LM head),
// with a small "norm-like" kernel between GEMVs as in a real step, captured in one CUDA graph, against
// bytes / measured device copy bandwidth (read + written, as `kiln bench` measures it).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e = (x);                                                                   \
    if (e != cudaSuccess) {                                                                \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e));   \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" :::); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ void dot8(const uint4& wv, const uint4& xv, float& acc) {
  const __nv_bfloat162* w = reinterpret_cast<const __nv_bfloat162*>(&wv);
  const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 a = __bfloat1622float2(w[i]);
    float2 b = __bfloat1622float2(x[i]);
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
  }
}

// R rows per warp, U 16-byte vectors per lane per row in flight, WARPS per block. PREFETCH: the first
// U vectors of each row are loaded before the grid-dependency wait (weights never depend on the
// previous kernel), so under PDL they stream while the previous kernel drains.
template <int R, int U, int WARPS, bool PREFETCH>
__global__ void __launch_bounds__(WARPS * 32) gemv(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                                   bf16* __restrict__ y, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * R;
  const int vecs = k / 8;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  float acc[R];
  uint4 wv[R][U];
#pragma unroll
  for (int r = 0; r < R; r++) acc[r] = 0.f;
  int v = lane;
  bool have = false;
  if (PREFETCH && row0 < n && v + 32 * (U - 1) < vecs) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int u = 0; u < U; u++)
        wv[r][u] = __ldcs(reinterpret_cast<const uint4*>(w + (size_t)min(row0 + r, n - 1) * k) + v + 32 * u);
    have = true;
  }
  pdl_wait();
  pdl_trigger();
  if (row0 >= n) return;
  for (; v + 32 * (U - 1) < vecs; v += 32 * U) {
    if (!have) {
#pragma unroll
      for (int r = 0; r < R; r++)
#pragma unroll
        for (int u = 0; u < U; u++)
          wv[r][u] = __ldcs(reinterpret_cast<const uint4*>(w + (size_t)min(row0 + r, n - 1) * k) + v + 32 * u);
    }
    have = false;
#pragma unroll
    for (int u = 0; u < U; u++) {
      const uint4 xv = __ldg(xr + v + 32 * u);
#pragma unroll
      for (int r = 0; r < R; r++) dot8(wv[r][u], xv, acc[r]);
    }
  }
  for (; v < vecs; v += 32) {
    const uint4 xv = __ldg(xr + v);
#pragma unroll
    for (int r = 0; r < R; r++)
      dot8(__ldcs(reinterpret_cast<const uint4*>(w + (size_t)min(row0 + r, n - 1) * k) + v), xv, acc[r]);
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    const float s = warp_sum(acc[r]);
    if (lane == 0 && row0 + r < n) y[row0 + r] = __float2bfloat16_rn(s);
  }
}

// Stand-in for the small kernels between GEMVs (add + RMSNorm of one row): one block, reads two
// vectors of h, writes two.
__global__ void __launch_bounds__(512) norm_like(const bf16* __restrict__ a, bf16* __restrict__ res,
                                                 bf16* __restrict__ out, int h) {
  pdl_wait();
  pdl_trigger();
  __shared__ float part[16];
  float ss = 0.f;
  for (int i = threadIdx.x; i < h; i += blockDim.x) {
    float v = __bfloat162float(a[i]) * 1e-3f + __bfloat162float(res[i]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += part[i];
  const float inv = rsqrtf(t / h + 1e-5f);
  for (int i = threadIdx.x; i < h; i += blockDim.x) {
    float v = __bfloat162float(a[i]) * 1e-3f + __bfloat162float(res[i]);
    out[i] = __float2bfloat16_rn(v * inv);
  }
}

__global__ void fill(bf16* p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    p[i] = __float2bfloat16_rn(((h & 0xffff) / 65536.f - 0.5f) * 0.05f);
  }
}

struct Shape {
  int n, k;
};

typedef void (*GemvFn)(const bf16*, const bf16*, bf16*, int, int);

struct Variant {
  const char* name;
  GemvFn fn;
  int rowsPerBlock;
  int threads;
};

template <int R, int U, int W, bool P>
Variant mk(const char* name) {
  return {name, gemv<R, U, W, P>, R * W, W * 32};
}

static void launch(cudaStream_t s, const void* fn, dim3 grid, dim3 block, bool pdl, void** args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  CK(cudaLaunchKernelExC(&cfg, fn, args));
}

/** Ends the capture on `s`, replays the graph `warmups` times, then returns the median of `runs`
 * timed replays in ms (and destroys the graph). */
static float time_captured_graph(cudaStream_t s, cudaEvent_t e0, cudaEvent_t e1, int warmups, int runs) {
  cudaGraph_t g;
  CK(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t ge;
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < warmups; i++) CK(cudaGraphLaunch(ge, s));
  std::vector<float> t;
  for (int i = 0; i < runs; i++) {
    CK(cudaEventRecord(e0, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  return t[t.size() / 2];
}

int main(int argc, char** argv) {
  const bool one = argc > 1 && strcmp(argv[1], "1b") == 0;
  const int H = one ? 2048 : 4096, I = one ? 8192 : 14336, L = one ? 16 : 32, QKV = one ? 3072 : 6144;
  const int V = 128256;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device %s, %d SMs, shape %s\n", prop.name, prop.multiProcessorCount, one ? "llama-3.2-1b" : "llama-3.1-8b");
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));

  // Copy bandwidth (read + written), as kiln bench measures it.
  double copyBw;
  {
    size_t bytes = 1ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
    CK(cudaEventRecord(e0, s));
    for (int i = 0; i < 10; i++) CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    copyBw = 2.0 * bytes * 10 / (ms * 1e-3);
    printf("copy bandwidth (read+written) %.0f GB/s\n", copyBw / 1e9);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }

  // One layer's GEMVs, L layers, then the LM head. Every layer has its own weights (no L2 reuse).
  std::vector<Shape> shapes;
  for (int l = 0; l < L; l++) {
    shapes.push_back({QKV, H});
    shapes.push_back({H, H});
    shapes.push_back({2 * I, H});
    shapes.push_back({H, I});
  }
  shapes.push_back({V, H});
  size_t total = 0;
  for (auto& sh : shapes) total += (size_t)sh.n * sh.k;
  bf16* W;
  CK(cudaMalloc(&W, total * sizeof(bf16)));
  fill<<<4096, 256, 0, s>>>(W, total, 1234);
  bf16 *x, *y, *res, *ref, *out;
  const int maxN = std::max(V, 2 * I);
  CK(cudaMalloc(&x, maxN * sizeof(bf16)));
  CK(cudaMalloc(&y, maxN * sizeof(bf16)));
  CK(cudaMalloc(&ref, maxN * sizeof(bf16)));
  CK(cudaMalloc(&res, maxN * sizeof(bf16)));
  CK(cudaMalloc(&out, maxN * sizeof(bf16)));
  fill<<<64, 256, 0, s>>>(x, maxN, 77);
  fill<<<64, 256, 0, s>>>(res, maxN, 78);
  CK(cudaStreamSynchronize(s));
  const double bytes = total * 2.0;
  printf("weights %.2f GB, floor %.3f ms\n", bytes / 1e9, bytes / copyBw * 1e3);

  std::vector<Variant> vs = {
      mk<1, 4, 8, false>("r1u4w8 (current)"), mk<1, 8, 8, false>("r1u8w8"),     mk<1, 16, 8, false>("r1u16w8"),
      mk<2, 4, 8, false>("r2u4w8"),          mk<2, 8, 4, false>("r2u8w4"),     mk<4, 4, 4, false>("r4u4w4"),
      mk<1, 8, 4, false>("r1u8w4"),          mk<1, 8, 8, true>("r1u8w8+pf"),   mk<2, 4, 8, true>("r2u4w8+pf"),
      mk<1, 16, 8, true>("r1u16w8+pf"),      mk<2, 8, 4, true>("r2u8w4+pf"),
  };

  // Correctness: every variant equals the first on one shape of each kind.
  for (auto sh : {Shape{QKV, H}, Shape{H, I}, Shape{V, H}}) {
    void* a0[] = {&x, &W, &ref, &sh.n, &sh.k};
    launch(s, (const void*)vs[0].fn, dim3((sh.n + vs[0].rowsPerBlock - 1) / vs[0].rowsPerBlock), dim3(vs[0].threads), false, a0);
    std::vector<bf16> hr(sh.n), hy(sh.n);
    CK(cudaMemcpyAsync(hr.data(), ref, sh.n * 2, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    for (auto& v : vs) {
      CK(cudaMemsetAsync(y, 0, sh.n * 2, s));
      void* a[] = {&x, &W, &y, &sh.n, &sh.k};
      launch(s, (const void*)v.fn, dim3((sh.n + v.rowsPerBlock - 1) / v.rowsPerBlock), dim3(v.threads), true, a);
      CK(cudaMemcpyAsync(hy.data(), y, sh.n * 2, cudaMemcpyDeviceToHost, s));
      CK(cudaStreamSynchronize(s));
      double maxd = 0;
      for (int i = 0; i < sh.n; i++)
        maxd = std::max(maxd, (double)fabsf(__bfloat162float(hr[i]) - __bfloat162float(hy[i])));
      if (maxd > 2e-2) printf("MISMATCH %s n=%d k=%d max |d| %.4f\n", v.name, sh.n, sh.k, maxd);
    }
  }

  // The chain, captured in one graph: [norm_like] gemv per shape. Modes: no norms, with norms; PDL off/on.
  printf("\n%-20s %10s %10s %10s %10s   (ms per step; x floor)\n", "variant", "gemv", "gemv+pdl", "+norm", "+norm+pdl");
  for (auto& v : vs) {
    double res4[4];
    for (int mode = 0; mode < 4; mode++) {
      const bool norms = mode >= 2, pdl = mode & 1;
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      size_t off = 0;
      int h = H;
      for (auto sh : shapes) {
        if (norms) {
          void* an[] = {&y, &res, &out, &h};
          launch(s, (const void*)norm_like, dim3(1), dim3(512), pdl, an);
        }
        const bf16* wp = W + off;
        void* a[] = {&x, (void*)&wp, &y, &sh.n, &sh.k};
        launch(s, (const void*)v.fn, dim3((sh.n + v.rowsPerBlock - 1) / v.rowsPerBlock), dim3(v.threads), pdl, a);
        off += (size_t)sh.n * sh.k;
      }
      res4[mode] = time_captured_graph(s, e0, e1, 3, 15);
    }
    const double floorMs = bytes / copyBw * 1e3;
    printf("%-20s", v.name);
    for (double r : res4) printf(" %6.3f %4.2fx", r, r / floorMs);
    printf("\n");
  }

  // Per-shape bandwidth of the best plain variants (single kernel, graph of 20 launches over distinct weights).
  printf("\nper shape, GB/s read (graph of repeated launches, PDL on):\n");
  for (auto sh : {Shape{QKV, H}, Shape{H, H}, Shape{2 * I, H}, Shape{H, I}, Shape{V, H}}) {
    printf("n=%6d k=%6d:", sh.n, sh.k);
    const int reps = std::min<size_t>(20, total / ((size_t)sh.n * sh.k));
    for (auto& v : vs) {
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (int r = 0; r < reps; r++) {
        const bf16* wp = W + (size_t)r * sh.n * sh.k;
        void* a[] = {&x, (void*)&wp, &y, &sh.n, &sh.k};
        launch(s, (const void*)v.fn, dim3((sh.n + v.rowsPerBlock - 1) / v.rowsPerBlock), dim3(v.threads), true, a);
      }
      const float ms = time_captured_graph(s, e0, e1, 1, 9);
      printf(" %s=%.0f", v.name, reps * (double)sh.n * sh.k * 2 / (ms * 1e-3) / 1e9);
    }
    printf("\n");
  }
  return 0;
}
