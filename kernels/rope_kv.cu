// The attention prologue in one pass: QKV split + optional per-head q/k RMSNorm (Qwen3) + RoPE on q
// and k + the paged KV-cache write of k and v. Reference, in order: rmsNorm over each head
// (groupWidth = HEAD_DIM), applyRope (rope.ts) and kvCacheWrite (paged_kv.ts) of
// src/backends/cpu/kernels/.
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   dtype of q/k/v, the norm weights and the KV pools
//   NUM_HEADS, NUM_KV_HEADS, HEAD_DIM
//   ROTARY_DIM    rotated dims at the start of each head (partial rotary); even, ≤ HEAD_DIM; default HEAD_DIM
//
// extern "C" __global__ void rope_qkv_fused(
//     const kiln_t* qkv,           // [num_tokens, (NUM_HEADS + 2·NUM_KV_HEADS)·HEAD_DIM]: q | k | v per row
//     const int* positions,        // [num_tokens]
//     const int* slot_mapping,     // [num_tokens]; −1 = padding token, k/v not stored
//     const float* inv_freq,       // [num_freq_rows, ROTARY_DIM / 2], computed on the host (every scaling type)
//     const int* inv_freq_index,   // [num_tokens]: each token's row of inv_freq (dynamic NTK: per sequence); null = row 0
//     float attention_scaling,     // multiplies cos and sin (HF attention_scaling); 1 for every type we support
//     const kiln_t* q_norm_weight, // [HEAD_DIM] Qwen3 q_norm, or null (no norm)
//     const kiln_t* k_norm_weight, // [HEAD_DIM] Qwen3 k_norm, or null
//     float norm_eps,
//     kiln_t* q_out,               // [num_tokens, NUM_HEADS·HEAD_DIM]
//     kiln_t* k_cache,             // [num_blocks, block_size, NUM_KV_HEADS, HEAD_DIM] (paged_kv.ts layout)
//     kiln_t* v_cache,             // [num_blocks, block_size, NUM_KV_HEADS, HEAD_DIM]
//     int num_tokens,
//     int num_slots,               // num_blocks · block_size; a slot outside [0, num_slots) is not written
//     int early_trigger)           // 1: the next kernel may launch before this one's wait (see below)
// extern "C" __global__ void rope_qkv(
//     const kiln_t* q,             // [num_tokens, NUM_HEADS·HEAD_DIM]
//     const kiln_t* k,             // [num_tokens, NUM_KV_HEADS·HEAD_DIM]
//     const kiln_t* v,             // [num_tokens, NUM_KV_HEADS·HEAD_DIM]
//     ...the same arguments from positions on...; q_out may be q (rotated in place)
// extern "C" __global__ void rope_qkv_fused_kv8(...), rope_qkv_kv8(...)   `--kv-cache-dtype fp8`
//     the same arguments, but k_cache and v_cache are E4M3 pools (unsigned char*, the same layout),
//     and two more at the end: float* k_scale, float* v_scale  // [num_blocks, block_size, NUM_KV_HEADS]
//   each k and v head is stored as one FP8 row (kv_fp8.cuh: the warp's max, the scale, the bytes) of
//   the kiln_t values the plain kernels store, bit for bit the CPU's kvCacheWrite with an fp8 pool.
//   early_trigger = 1 (decode steps, KILN_ROPE_TRIGGER=early): pdl_launch_dependents before pdl_wait, so
//   the decode attention after this kernel launches while the QKV GEMV before it still runs, and its
//   pre-wait loads (the step metadata, the K/V rows of earlier steps: pdl.cuh) are done by the time this
//   kernel ends, instead of starting then. Safe because the attention reads nothing before its wait that
//   this step's kernels write.
//   grid  = (num_tokens, ceil((NUM_HEADS + 2·NUM_KV_HEADS) / (block / 32)))
//   block = (128): one warp per head (q heads, then k heads, then v heads); any multiple of 32 works
//   shared memory: none
//
// Per head, the norm and rotation of rope.cuh (lane layout and arithmetic there).
#include "kv_fp8.cuh"
#include "rope.cuh"

#if !defined(NUM_HEADS) || !defined(NUM_KV_HEADS) || !defined(HEAD_DIM)
#error "rope_kv.cu needs NUM_HEADS, NUM_KV_HEADS and HEAD_DIM"
#endif

namespace {

constexpr int kHeads = NUM_HEADS + 2 * NUM_KV_HEADS;
constexpr int kKvRow = NUM_KV_HEADS * HEAD_DIM;              // one slot of a KV pool

// How the KV pools store a row: the engine dtype (Plain) or FP8 E4M3 bytes with a scale (Fp8).
struct KvPlain {
  static constexpr bool kFp8 = false;
  typedef kiln_t elem_t;
};
struct KvFp8 {
  static constexpr bool kFp8 = true;
  typedef unsigned char elem_t;
};

template <class KV>
struct RopeArgs {
  kiln::rope::Params rope;
  const int* slot_mapping;
  const kiln_t* q_norm_weight;
  const kiln_t* k_norm_weight;
  float norm_eps;
  kiln_t* q_out;
  typename KV::elem_t* k_cache;
  typename KV::elem_t* v_cache;
  int num_slots;
  float* k_scale;  // Fp8: [num_slots, NUM_KV_HEADS] row scales (null for Plain)
  float* v_scale;
};

/**
 * One head of token t by one warp: load, optional RMSNorm over the head, optional RoPE, store to dst
 * (null: nothing stored). src and dst may be the same memory: every lane loads before the warp's
 * reduction and stores after it.
 */
template <class A>
__device__ __forceinline__ void process_head(const kiln_t* src, kiln_t* dst, const kiln_t* norm_w, bool rotate,
                                             const A& a, int t) {
  kiln::rope::Head h;
  kiln::rope::load(src, h);
  if (norm_w != nullptr) kiln::rope::norm(h, norm_w, a.norm_eps);  // warp-uniform
  if (rotate) kiln::rope::rotate(h, a.rope, t);
  if (dst != nullptr) kiln::rope::for_each(h, [dst](int d, kiln_t v) { dst[d] = v; });
}

/** process_head for a k head of the FP8 pools: the head's kiln_t values as one FP8 row, bytes at dst
 * and its scale at *scale (the warp's max first: every lane takes part). */
template <class A>
__device__ __forceinline__ void process_head_fp8(const kiln_t* src, unsigned char* dst, float* scale,
                                                 const kiln_t* norm_w, bool rotate, const A& a, int t) {
  kiln::rope::Head h;
  kiln::rope::load(src, h);
  if (norm_w != nullptr) kiln::rope::norm(h, norm_w, a.norm_eps);  // warp-uniform
  if (rotate) kiln::rope::rotate(h, a.rope, t);
  float amax = 0.f;
  kiln::rope::for_each(h, [&amax](int, kiln_t v) { amax = kiln::kv8::absmax(amax, kiln::to_float(v)); });
  const float s = kiln::kv8::row_scale(kiln::kv8::warp_absmax(amax));
  kiln::rope::for_each(h, [dst, s](int d, kiln_t v) { dst[d] = kiln::kv8::encode(kiln::to_float(v), s); });
  if ((threadIdx.x & 31) == 0) *scale = s;
}

/** Copies one v head into its cache slot (no arithmetic). */
__device__ __forceinline__ void copy_head(const kiln_t* src, kiln_t* dst) {
  for (int d = threadIdx.x & 31; d < HEAD_DIM; d += 32) dst[d] = src[d];
}

/** copy_head for the FP8 pools: one v head as one FP8 row (every lane of the warp takes part). */
__device__ __forceinline__ void copy_head_fp8(const kiln_t* src, unsigned char* dst, float* scale) {
  float amax = 0.f;
  for (int d = threadIdx.x & 31; d < HEAD_DIM; d += 32) amax = kiln::kv8::absmax(amax, kiln::to_float(src[d]));
  const float s = kiln::kv8::row_scale(kiln::kv8::warp_absmax(amax));
  for (int d = threadIdx.x & 31; d < HEAD_DIM; d += 32) dst[d] = kiln::kv8::encode(kiln::to_float(src[d]), s);
  if ((threadIdx.x & 31) == 0) *scale = s;
}

/** The head this warp handles; q heads, k heads, v heads, each with its source row. */
template <class KV>
__device__ __forceinline__ void rope_token_head(const kiln_t* q_row, const kiln_t* k_row, const kiln_t* v_row,
                                                const RopeArgs<KV>& a, int t) {
  const int head = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (head >= kHeads) return;
  const int slot = a.slot_mapping[t];
  const bool store_kv = slot >= 0 && slot < a.num_slots;
  const long long kv_off = (long long)slot * kKvRow;
  if (head < NUM_HEADS) {
    const int h = head;
    process_head(q_row + h * HEAD_DIM, a.q_out + (long long)t * NUM_HEADS * HEAD_DIM + h * HEAD_DIM,
                 a.q_norm_weight, ROTARY_DIM > 0, a, t);
  } else if (head < NUM_HEADS + NUM_KV_HEADS) {
    if (!store_kv) return;
    const int h = head - NUM_HEADS;
    if constexpr (KV::kFp8) {
      process_head_fp8(k_row + h * HEAD_DIM, a.k_cache + kv_off + h * HEAD_DIM,
                       a.k_scale + (long long)slot * NUM_KV_HEADS + h, a.k_norm_weight, ROTARY_DIM > 0, a, t);
    } else {
      process_head(k_row + h * HEAD_DIM, a.k_cache + kv_off + h * HEAD_DIM, a.k_norm_weight, ROTARY_DIM > 0, a, t);
    }
  } else {
    if (!store_kv) return;
    const int h = head - NUM_HEADS - NUM_KV_HEADS;
    if constexpr (KV::kFp8) {
      copy_head_fp8(v_row + h * HEAD_DIM, a.v_cache + kv_off + h * HEAD_DIM,
                    a.v_scale + (long long)slot * NUM_KV_HEADS + h);
    } else {
      copy_head(v_row + h * HEAD_DIM, a.v_cache + kv_off + h * HEAD_DIM);
    }
  }
}

// The kernels' bodies, for either pool type (the exports below).
#define KILN_ROPE_BODY(KV, ROW_CALL)                                                                               \
  if (early_trigger) kiln::pdl_launch_dependents();                                                                \
  kiln::pdl_wait(); /* qkv, positions, slots and the KV cache belong to the step (see pdl.cuh) */                  \
  if (!early_trigger) kiln::pdl_launch_dependents();                                                               \
  const int t = blockIdx.x;                                                                                        \
  if (t >= num_tokens) return;                                                                                     \
  const RopeArgs<KV> a{{positions, inv_freq, inv_freq_index, attention_scaling}, slot_mapping, q_norm_weight,      \
                       k_norm_weight, norm_eps, q_out, k_cache, v_cache, num_slots, k_scale, v_scale};             \
  ROW_CALL

}  // namespace

#define KILN_ROPE_FUSED_ROWS                                                                                       \
  const kiln_t* row = qkv + (long long)t * kHeads * HEAD_DIM;                                                      \
  rope_token_head(row, row + NUM_HEADS * HEAD_DIM, row + (NUM_HEADS + NUM_KV_HEADS) * HEAD_DIM, a, t);
#define KILN_ROPE_SPLIT_ROWS \
  rope_token_head(q + (long long)t * NUM_HEADS * HEAD_DIM, k + (long long)t * kKvRow, v + (long long)t * kKvRow, a, t);

extern "C" __global__ void rope_qkv_fused(const kiln_t* qkv, const int* positions, const int* slot_mapping,
                                          const float* inv_freq, const int* inv_freq_index, float attention_scaling,
                                          const kiln_t* q_norm_weight, const kiln_t* k_norm_weight, float norm_eps,
                                          kiln_t* q_out, kiln_t* k_cache, kiln_t* v_cache, int num_tokens,
                                          int num_slots, int early_trigger) {
  float* const k_scale = nullptr;
  float* const v_scale = nullptr;
  KILN_ROPE_BODY(KvPlain, KILN_ROPE_FUSED_ROWS)
}

extern "C" __global__ void rope_qkv(const kiln_t* q, const kiln_t* k, const kiln_t* v, const int* positions,
                                    const int* slot_mapping, const float* inv_freq, const int* inv_freq_index,
                                    float attention_scaling, const kiln_t* q_norm_weight, const kiln_t* k_norm_weight,
                                    float norm_eps, kiln_t* q_out, kiln_t* k_cache, kiln_t* v_cache, int num_tokens,
                                    int num_slots, int early_trigger) {
  float* const k_scale = nullptr;
  float* const v_scale = nullptr;
  KILN_ROPE_BODY(KvPlain, KILN_ROPE_SPLIT_ROWS)
}

extern "C" __global__ void rope_qkv_fused_kv8(const kiln_t* qkv, const int* positions, const int* slot_mapping,
                                              const float* inv_freq, const int* inv_freq_index,
                                              float attention_scaling, const kiln_t* q_norm_weight,
                                              const kiln_t* k_norm_weight, float norm_eps, kiln_t* q_out,
                                              unsigned char* k_cache, unsigned char* v_cache, int num_tokens,
                                              int num_slots, int early_trigger, float* k_scale, float* v_scale) {
  KILN_ROPE_BODY(KvFp8, KILN_ROPE_FUSED_ROWS)
}

extern "C" __global__ void rope_qkv_kv8(const kiln_t* q, const kiln_t* k, const kiln_t* v, const int* positions,
                                        const int* slot_mapping, const float* inv_freq, const int* inv_freq_index,
                                        float attention_scaling, const kiln_t* q_norm_weight,
                                        const kiln_t* k_norm_weight, float norm_eps, kiln_t* q_out,
                                        unsigned char* k_cache, unsigned char* v_cache, int num_tokens, int num_slots,
                                        int early_trigger, float* k_scale, float* v_scale) {
  KILN_ROPE_BODY(KvFp8, KILN_ROPE_SPLIT_ROWS)
}
