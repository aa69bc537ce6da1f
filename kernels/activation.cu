// MLP activations (HF ACT2FN), gated and plain, plus the elementwise bias and residual adds.
// Reference: src/backends/cpu/kernels/activation.ts (gatedAct, act and the scalar functions) and the
// CPU backend's "add" op.
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   dtype of every tensor
//
// Kernels, one triple per HF `hidden_act` name ACT ∈ {silu, gelu, gelu_pytorch_tanh, gelu_new, relu}:
// extern "C" __global__ void gated_act_ACT(
//     const kiln_t* gate_up,   // [rows, 2·inter]: gate in columns [0, inter), up in [inter, 2·inter)
//     kiln_t* out,             // [rows, inter]
//     int rows, int inter)
// extern "C" __global__ void gated_act2_ACT(
//     const kiln_t* gate,      // [rows, inter]
//     const kiln_t* up,        // [rows, inter]
//     kiln_t* out,             // [rows, inter]; may be gate or up
//     int rows, int inter)
// extern "C" __global__ void act_ACT(
//     const kiln_t* x,         // [n]
//     kiln_t* out,             // [n]; may be x
//     int n)
// extern "C" __global__ void bias_add(
//     kiln_t* x,               // [rows, n], x += bias per row, in place
//     const kiln_t* bias,      // [n]
//     int rows, int n)
// extern "C" __global__ void residual_add(
//     kiln_t* out,             // [n] = a + b; may be a or b
//     const kiln_t* a,         // [n]
//     const kiln_t* b,         // [n]
//     int n)
//   grid  = (max(1, min(ceil(elements / (256 · vec)), 65535))), vec = 16 bytes / sizeof(kiln_t) (4 or 8);
//           every kernel is a grid-stride loop, so any grid size is correct
//   block = (256); any size works
//   shared memory: none
// 16-byte vectors are used when the row width (inter, n) is a multiple of vec and every pointer is
// 16-byte aligned; otherwise one element per thread.
//
// Arithmetic. The fp32 formulas are the reference's, op for op (no FMA); expf, erff and tanhf are
// CUDA's (≤ 2 ulp), where the reference's are correctly rounded, so fp32 results differ by a few ulps.
// For 16-bit T, HF's torch ops round to T: act(gate) is one torch kernel (computed in fp32, rounded
// once to T), then `* up` is a T × T product rounded to T. gelu_new is HF Python, so each of its
// tensor ops rounds to T; we round after each (round_t is the identity in fp32).
#include "common.cuh"
#include "activations.cuh"

#if !KILN_HAS_DTYPE
#error "activation.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif

namespace {

using kiln::Silu;
using kiln::Gelu;
using kiln::GeluTanh;
using kiln::GeluNew;
using kiln::Relu;

__device__ __forceinline__ long long grid_start() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_stride() { return (long long)gridDim.x * blockDim.x; }

template <class Act, int V>
__device__ __forceinline__ void gated_rows(const kiln_t* gate_up, kiln_t* out, int rows, int inter) {
  const int per_row = inter / V;
  const long long total = (long long)rows * per_row;
  for (long long i = grid_start(); i < total; i += grid_stride()) {
    const long long r = i / per_row;
    const int c = (int)(i - r * per_row) * V;
    const kiln_t* g = gate_up + r * 2 * inter + c;
    const kiln::Vec<kiln_t, V> gv = kiln::load_vec<kiln_t, V>(g);
    const kiln::Vec<kiln_t, V> uv = kiln::load_vec<kiln_t, V>(g + inter);
    kiln::Vec<kiln_t, V> ov;
#pragma unroll
    for (int j = 0; j < V; j++) {
      ov.v[j] = kiln::from_float(__fmul_rn(Act::apply(kiln::to_float(gv.v[j])), kiln::to_float(uv.v[j])));
    }
    kiln::store_vec<kiln_t, V>(out + r * inter + c, ov);
  }
}

template <class Act, int V>
__device__ __forceinline__ void gated2_elems(const kiln_t* gate, const kiln_t* up, kiln_t* out, long long n) {
  const long long total = n / V;
  for (long long i = grid_start(); i < total; i += grid_stride()) {
    const kiln::Vec<kiln_t, V> gv = kiln::load_vec<kiln_t, V>(gate + i * V);
    const kiln::Vec<kiln_t, V> uv = kiln::load_vec<kiln_t, V>(up + i * V);
    kiln::Vec<kiln_t, V> ov;
#pragma unroll
    for (int j = 0; j < V; j++) {
      ov.v[j] = kiln::from_float(__fmul_rn(Act::apply(kiln::to_float(gv.v[j])), kiln::to_float(uv.v[j])));
    }
    kiln::store_vec<kiln_t, V>(out + i * V, ov);
  }
}

template <class Act, int V>
__device__ __forceinline__ void act_elems(const kiln_t* x, kiln_t* out, long long n) {
  const long long total = n / V;
  for (long long i = grid_start(); i < total; i += grid_stride()) {
    const kiln::Vec<kiln_t, V> xv = kiln::load_vec<kiln_t, V>(x + i * V);
    kiln::Vec<kiln_t, V> ov;
#pragma unroll
    for (int j = 0; j < V; j++) ov.v[j] = kiln::from_float(Act::apply(kiln::to_float(xv.v[j])));
    kiln::store_vec<kiln_t, V>(out + i * V, ov);
  }
}

template <int V>
__device__ __forceinline__ void bias_rows(kiln_t* x, const kiln_t* bias, int rows, int n) {
  const int per_row = n / V;
  const long long total = (long long)rows * per_row;
  for (long long i = grid_start(); i < total; i += grid_stride()) {
    const int c = (int)(i % per_row) * V;
    kiln::Vec<kiln_t, V> xv = kiln::load_vec<kiln_t, V>(x + i * V);
    const kiln::Vec<kiln_t, V> bv = kiln::load_vec<kiln_t, V>(bias + c);
#pragma unroll
    for (int j = 0; j < V; j++) xv.v[j] = kiln::from_float(__fadd_rn(kiln::to_float(xv.v[j]), kiln::to_float(bv.v[j])));
    kiln::store_vec<kiln_t, V>(x + i * V, xv);
  }
}

template <int V>
__device__ __forceinline__ void add_elems(kiln_t* out, const kiln_t* a, const kiln_t* b, long long n) {
  const long long total = n / V;
  for (long long i = grid_start(); i < total; i += grid_stride()) {
    const kiln::Vec<kiln_t, V> av = kiln::load_vec<kiln_t, V>(a + i * V);
    const kiln::Vec<kiln_t, V> bv = kiln::load_vec<kiln_t, V>(b + i * V);
    kiln::Vec<kiln_t, V> ov;
#pragma unroll
    for (int j = 0; j < V; j++) ov.v[j] = kiln::from_float(__fadd_rn(kiln::to_float(av.v[j]), kiln::to_float(bv.v[j])));
    kiln::store_vec<kiln_t, V>(out + i * V, ov);
  }
}

__device__ __forceinline__ bool vec_ok(long long width, const void* a, const void* b, const void* c) {
  return width % kiln::kVec == 0 && kiln::aligned16(a) && kiln::aligned16(b) && kiln::aligned16(c);
}

}  // namespace

#define KILN_ACT_KERNELS(NAME, ACT)                                                                           \
  extern "C" __global__ void gated_act_##NAME(const kiln_t* gate_up, kiln_t* out, int rows, int inter) {   \
    kiln::pdl_wait();                                                                                      \
    kiln::pdl_launch_dependents();                                                                         \
    if (vec_ok(inter, gate_up, out, out)) gated_rows<ACT, kiln::kVec>(gate_up, out, rows, inter);         \
    else gated_rows<ACT, 1>(gate_up, out, rows, inter);                                                   \
  }                                                                                                        \
  extern "C" __global__ void gated_act2_##NAME(const kiln_t* gate, const kiln_t* up, kiln_t* out, int rows, \
                                              int inter) {                                                 \
    kiln::pdl_wait();                                                                                      \
    kiln::pdl_launch_dependents();                                                                         \
    const long long n = (long long)rows * inter;                                                           \
    if (vec_ok(n, gate, up, out)) gated2_elems<ACT, kiln::kVec>(gate, up, out, n);                        \
    else gated2_elems<ACT, 1>(gate, up, out, n);                                                          \
  }                                                                                                        \
  extern "C" __global__ void act_##NAME(const kiln_t* x, kiln_t* out, int n) {                             \
    kiln::pdl_wait();                                                                                      \
    kiln::pdl_launch_dependents();                                                                         \
    if (vec_ok(n, x, out, out)) act_elems<ACT, kiln::kVec>(x, out, n);                                    \
    else act_elems<ACT, 1>(x, out, n);                                                                    \
  }

KILN_ACT_KERNELS(silu, Silu)
KILN_ACT_KERNELS(gelu, Gelu)
KILN_ACT_KERNELS(gelu_pytorch_tanh, GeluTanh)
KILN_ACT_KERNELS(gelu_new, GeluNew)
KILN_ACT_KERNELS(relu, Relu)

extern "C" __global__ void bias_add(kiln_t* x, const kiln_t* bias, int rows, int n) {
  kiln::pdl_wait();
  kiln::pdl_launch_dependents();
  if (vec_ok(n, x, bias, x)) bias_rows<kiln::kVec>(x, bias, rows, n);
  else bias_rows<1>(x, bias, rows, n);
}

extern "C" __global__ void residual_add(kiln_t* out, const kiln_t* a, const kiln_t* b, int n) {
  kiln::pdl_wait();
  kiln::pdl_launch_dependents();
  if (vec_ok(n, out, a, b)) add_elems<kiln::kVec>(out, a, b, n);
  else add_elems<1>(out, a, b, n);
}
