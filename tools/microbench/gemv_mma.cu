// Tensor-core GEMV (gemv_mma.cuh) against kiln's CUDA-core GEMV (kernels/gemv.cu) for decode GEMMs of
// 1-8 rows: time per launch and bandwidth for the Llama-3.1-8B shapes, and the largest difference of
// their outputs. Standalone (CUDA runtime only), for the GPU machine:
//   nvcc -O3 -arch=sm_90 -DKILN_DTYPE_BF16 -DGEMV_ACT=0 -Ikernels -o .devbin/gemv_mma tools/microbench/gemv_mma.cu
//   .devbin/gemv_mma
// Each timing cycles over enough copies of the weight that none is in L2 when it is read again.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "gemv.cu"
#include "gemv_mma.cuh"

#define CK(x)                                                                            \
  do {                                                                                   \
    cudaError_t e = (x);                                                                 \
    if (e != cudaSuccess) {                                                              \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

typedef __nv_bfloat16 bf16;

__global__ void fill(bf16* p, size_t n, unsigned seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    p[i] = __float2bfloat16_rn(((h & 0xffff) / 65536.0f - 0.5f) * scale);
  }
}

struct Kernel {
  const char* name;
  void (*launch)(const bf16*, const bf16*, bf16*, int, int, int);
};

static void run_r2u8w4(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
  gemv_r2u8w4<<<(n + 7) / 8, 128>>>(x, w, nullptr, y, m, n, k);
}
static void run_r1u4w8(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
  gemv_r1u4w8<<<(n + 7) / 8, 256>>>(x, w, nullptr, y, m, n, k);
}
static void run_mma4x4(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
  gemv_mma<4, 4><<<(n + 15) / 16, 128>>>(x, w, y, m, n, k);
}
static void run_mma8x2(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
  gemv_mma<8, 2><<<(n + 15) / 16, 256>>>(x, w, y, m, n, k);
}
static void run_mma8x4(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
  gemv_mma<8, 4><<<(n + 15) / 16, 256>>>(x, w, y, m, n, k);
}

int main() {
  const Kernel kernels[] = {{"r2u8w4", run_r2u8w4},       {"r1u4w8", run_r1u4w8}, {"mma w4 u4", run_mma4x4},
                            {"mma w8 u2", run_mma8x2}, {"mma w8 u4", run_mma8x4}};
  const int shapes[][2] = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}, {128256, 4096}};
  const int ms[] = {1, 2, 4, 8};
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("%s\n%-14s %-10s %2s %10s %10s %12s\n", prop.name, "shape", "kernel", "m", "us", "GB/s", "max|d|/max");
  for (const auto& s : shapes) {
    const int n = s[0], k = s[1];
    const size_t wn = (size_t)n * k;
    const int copies = (int)std::max<size_t>(2, (size_t)(200u << 20) / (wn * 2) + 1);  // > 200 MB in rotation
    std::vector<bf16*> ws(copies);
    for (int c = 0; c < copies; c++) {
      CK(cudaMalloc(&ws[c], wn * 2));
      fill<<<1024, 256>>>(ws[c], wn, 17, 0.1f);  // the same values in every copy
    }
    bf16 *x, *y, *yref;
    CK(cudaMalloc(&x, 8 * (size_t)k * 2));
    CK(cudaMalloc(&y, 8 * (size_t)n * 2));
    CK(cudaMalloc(&yref, 8 * (size_t)n * 2));
    fill<<<64, 256>>>(x, 8 * (size_t)k, 5, 2.f);
    std::vector<bf16> h(8 * (size_t)n), href(8 * (size_t)n);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int m : ms) {
      run_r2u8w4(x, ws[0], yref, m, n, k);
      CK(cudaMemcpy(href.data(), yref, (size_t)m * n * 2, cudaMemcpyDeviceToHost));
      float ref_max = 0.f;
      for (size_t i = 0; i < (size_t)m * n; i++) ref_max = fmaxf(ref_max, fabsf(__bfloat162float(href[i])));
      for (const Kernel& kn : kernels) {
        for (int c = 0; c < copies; c++) kn.launch(x, ws[c], y, m, n, k);  // warm-up
        const int reps = 20 * copies;
        CK(cudaEventRecord(a));
        for (int r = 0; r < reps; r++) kn.launch(x, ws[r % copies], y, m, n, k);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        CK(cudaGetLastError());
        float ms_total;
        CK(cudaEventElapsedTime(&ms_total, a, b));
        const double us = 1000.0 * ms_total / reps;
        CK(cudaMemcpy(h.data(), y, (size_t)m * n * 2, cudaMemcpyDeviceToHost));
        float d = 0.f;
        for (size_t i = 0; i < (size_t)m * n; i++)
          d = fmaxf(d, fabsf(__bfloat162float(h[i]) - __bfloat162float(href[i])));
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%d", n, k);
        printf("%-14s %-10s %2d %10.2f %10.1f %12.2e\n", shape, kn.name, m, us, wn * 2 / us / 1e3, d / ref_max);
      }
    }
    for (bf16* p : ws) CK(cudaFree(p));
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(yref));
  }
  return 0;
}
