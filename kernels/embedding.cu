// Token embedding: out[t] = table[ids[t] - vocab_start], a row gather. Reference: the CPU backend's
// "embedding" op (src/backends/cpu/cpu_backend.ts), an exact copy, so every dtype must match bit for bit.
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   dtype of the table and the output
//   HIDDEN        row width (hidden size)
//   VOCAB         rows of the table (this rank's shard of the vocabulary)
//
// extern "C" __global__ void embedding(
//     const int* ids,         // [num_tokens]
//     const int* feed,        // [num_tokens] or null: feed[t] ≥ 0 takes token t's id from fed[feed[t]]
//     const int* fed,         //   (tokens an earlier queued step sampled on the device), −1 from ids[t]
//     const kiln_t* table,    // [VOCAB, HIDDEN]
//     kiln_t* out,            // [num_tokens, HIDDEN]
//     int num_tokens,
//     int vocab_start)        // first id of this shard; 0 without tensor parallelism
//   grid  = (num_tokens)      one block per token
//   block = (128)             any multiple of 32 works; 128 moves a 4096-wide bf16 row in 4 vectors/thread
//   shared memory: none
// An id outside [vocab_start, vocab_start + VOCAB) writes a row of zeros and reads nothing: the runtime
// validates ids; with a vocabulary split over ranks the zeros are what the all-reduce sums over.
#include "common.cuh"

#if !KILN_HAS_DTYPE
#error "embedding.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif
#if !defined(HIDDEN) || !defined(VOCAB)
#error "embedding.cu needs HIDDEN and VOCAB"
#endif

namespace {

template <int V>
__device__ __forceinline__ void copy_row(const kiln_t* src, kiln_t* dst) {
  constexpr int n = HIDDEN / V;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    kiln::store_vec<kiln_t, V>(dst + i * V, kiln::load_vec<kiln_t, V>(src + i * V));
  }
}

template <int V>
__device__ __forceinline__ void zero_row(kiln_t* dst) {
  constexpr int n = HIDDEN / V;
  kiln::Vec<kiln_t, V> z;
#pragma unroll
  for (int j = 0; j < V; j++) z.v[j] = kiln::from_float(0.0f);
  for (int i = threadIdx.x; i < n; i += blockDim.x) kiln::store_vec<kiln_t, V>(dst + i * V, z);
}

}  // namespace

extern "C" __global__ void embedding(const int* ids, const int* feed, const int* fed, const kiln_t* table,
                                     kiln_t* out, int num_tokens, int vocab_start) {
  kiln::pdl_wait();  // ids, fed tokens and out belong to the step (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int t = blockIdx.x;
  if (t >= num_tokens) return;
  constexpr int V = kiln::vec_for(HIDDEN);
  const int from = feed != nullptr ? feed[t] : -1;
  const long long local = (long long)(from >= 0 ? fed[from] : ids[t]) - vocab_start;
  kiln_t* dst = out + (long long)t * HIDDEN;
  const bool vec = kiln::aligned16(table) && kiln::aligned16(out);
  if (local < 0 || local >= VOCAB) {
    if (vec) zero_row<V>(dst);
    else zero_row<1>(dst);
    return;
  }
  const kiln_t* src = table + local * HIDDEN;
  if (vec) copy_row<V>(src, dst);
  else copy_row<1>(src, dst);
}
