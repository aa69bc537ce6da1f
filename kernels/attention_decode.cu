// Paged decode attention (one query token per sequence), split over the context ("flash-decoding").
// Reference: src/backends/cpu/kernels/attention.ts (pagedAttention with queryLen 1); layout:
// paged_kv.ts. Arguments, launch configuration and tolerances: kernels/attention_README.md.
//
// Sequence s's query (row s of q) sits at position p = context_len[s] - 1 and attends to keys
// [lo, p] with lo = max(0, p - w + 1) for a sliding window w > 0, else 0. Those keys are cut into
// num_splits equal ranges of at least 64 keys (rounded up to 16 keys; trailing splits may be empty); CTA (x, s, z) handles range z for the query heads
// of one kv head that x names, so each K/V row is read from memory once for all of them (GQA/MQA):
//
//   x = kvHead * HEAD_GROUPS + headGroup,  query heads kvHead*GROUP + headGroup*HEADS_PER_CTA + [0, HEADS_PER_CTA)
//
// Inside a CTA each warp takes steps of KEYS_PER_STEP keys in turn; LANES_PER_KEY lanes share a key,
// each loading 16-byte vectors of its K and V rows, so a warp reads whole rows with coalesced loads
// and keeps K and V of the step in registers. Scores reduce over the lanes of a key by shuffles; the
// online softmax state (max m, sum l, acc) lives in registers, is merged over the warps of the CTA in
// shared memory, and written either as the output (num_splits == 1) or as a partial (m, l, acc).
//
// With num_splits > 1 the splits are merged in the same launch (one graph node per layer, not two):
// every CTA writes its partial, fences, and counts itself in split_counter[s, x]; the CTA that counts
// last merges all splits of its heads into out and sets the counter back to 0 for the next launch.
//
//   split CTAs of (s, x):   z=0 ──┐   z=1 ──┐   …   z=n-1 ──┐    (any order)
//                          write partial, __threadfence, atomicAdd(counter) → old
//   old == n-1 (the last):  __threadfence, read every partial (L2, __ldcg), merge, counter = 0
//
// attention_decode_c{2,4,8} (sm_90+) merge in a thread-block cluster instead: each split pushes its
// partial straight into the shared memory of the CTAs that merge it (distributed shared memory, the
// items dealt round the cluster), one cluster barrier, then each CTA merges its items locally:
//
//   split CTAs of (s, x):   z=0 … z=n-1 (one cluster)
//                          partial → st to the owner's gather_acc[z][item], m, l → every CTA's gather_m/l[z]
//                          barrier.cluster (arrive.release, wait.acquire)
//                          merge own items from own shared memory, write out
//
// attention_decode_batch{,_rope} (at the end) serve steps of many sequences: no splits, one CTA per
// (kv head group, sequence) over its whole context, K/V tiles staged through shared memory by cp.async.
//
// All arithmetic is fp32.
#include "attention_common.cuh"
#include "decode_rope.cuh"  // attention_decode_rope*: the fused RoPE prologue (RopeIn, rope.cuh)
#include "split_merge.cuh"  // load_partial, merge_batch, store_merged: the splits' merge

namespace attn {

constexpr int kDecodeWarps = 4;  // attention_decode_batch's warps
constexpr int kDecodeThreads = kDecodeWarps * kWarp;
constexpr int kSplitWarps = 8;  // the split kernels' (attention_decode*): see Split
constexpr int kSplitThreads = kSplitWarps * kWarp;

constexpr int next_pow2(int x) {
  int p = 1;
  while (p < x) p *= 2;
  return p;
}
constexpr int kNumVecs = HEAD_DIM / kVec;                                   // vectors per K/V row
constexpr int kLanesPerKey = next_pow2(kNumVecs) < kWarp ? next_pow2(kNumVecs) : kWarp;
constexpr int kVecsPerLane = (kNumVecs + kLanesPerKey - 1) / kLanesPerKey;  // per key
constexpr int kKeysAbreast = kWarp / kLanesPerKey;                          // keys a warp loads at once
constexpr int kHeadsPerCta = ATTN_GROUP < 8 ? ATTN_GROUP : 8;
constexpr int kHeadGroups = (ATTN_GROUP + kHeadsPerCta - 1) / kHeadsPerCta;
constexpr int kSplitAlign = 16;                            // split ranges are multiples of 16 keys
constexpr int kMinSplitKeys = 64;                          // keys of every non-empty split but the last (≥)
constexpr int kAccVec = HEAD_DIM % 4 == 0 ? 4 : HEAD_DIM % 2 == 0 ? 2 : 1;  // floats per partial_acc load
constexpr int kAccRowVecs = HEAD_DIM / kAccVec;

// The split kernels' (attention_decode*) geometry for kWarps warps a CTA (kSplitWarps: 8, so that each
// warp's chain of dependent loads, shuffles and FMAs is short, two warps share an SM sub-partition, and
// the fused-RoPE prologue's query heads plus the new key's K and V rows take one round). Keys per lane
// per step: enough that one step of the CTA covers a split of kMinSplitKeys (a short
// context's split is one round of loads), within a budget of K and V vectors in flight per lane (4 with
// more than 4 heads per CTA, so the scores and accumulators of 8 heads fit in registers). The merge of
// the splits (last CTA): a thread's items ((head, vector) slices of the CTA's heads' rows), and splits
// whose partials one thread loads at once per item.
template <int kWarps>
struct Split {
  static constexpr int kThreads = kWarps * kWarp;
  static constexpr int kVecBudget = kHeadsPerCta > 4 ? 4 : 8;
  static constexpr int kKeysWanted = kMinSplitKeys / (kWarps * kKeysAbreast);
  static constexpr int kKeysPerLane = kKeysWanted < 1                           ? 1
                                      : kKeysWanted < kVecBudget / kVecsPerLane ? kKeysWanted
                                      : kVecBudget / kVecsPerLane > 0           ? kVecBudget / kVecsPerLane
                                                                                : 1;
  static constexpr int kKeysPerStep = kKeysPerLane * kKeysAbreast;  // keys per warp step
  static constexpr int kMergeItems = (kHeadsPerCta * kAccRowVecs + kThreads - 1) / kThreads;
  static constexpr int kMergeBatch = 64 / (kMergeItems * kAccVec) < 1   ? 1
                                     : 64 / (kMergeItems * kAccVec) > 8 ? 8
                                                                        : 64 / (kMergeItems * kAccVec);
};

// Element offset of key `pos`'s row for kv head kvh in a pool (paged_kv.ts), its block from the table.
__device__ __forceinline__ size_t kv_row(const int* table, int table_step, int pos, int kvh) {
  return ((size_t)(table[(pos / BLOCK_SIZE) * table_step] * BLOCK_SIZE + pos % BLOCK_SIZE) * NUM_KV_HEADS + kvh) * HEAD_DIM;
}

// Its row index (slot · NUM_KV_HEADS + kvh): where an FP8 pool keeps the row's scale.
__device__ __forceinline__ size_t kv_index(const int* table, int table_step, int pos, int kvh) {
  return (size_t)(table[(pos / BLOCK_SIZE) * table_step] * BLOCK_SIZE + pos % BLOCK_SIZE) * NUM_KV_HEADS + kvh;
}

// The word of the new key's shared-memory row (new_k, new_v: kRowWords words) that holds its scale when
// the pools are FP8: past the row's HEAD_DIM bytes.
constexpr int kRowWordsOf(int d) { return (d + 3) / 4 * 4; }
constexpr int kNewScaleWord = kRowWordsOf(HEAD_DIM) - 1;
static_assert((HEAD_DIM + 3) / 4 <= kNewScaleWord, "an FP8 row and its scale fit a row of words");

// One step of a warp's keys: lane (key_lane, vec_lane) loads vectors vec_lane + i·kLanesPerKey of the K and
// V rows of keys base + k·kKeysAbreast + key_lane, k < kKeysPerLane; keys ≥ end, and key `skip`, are zeros.
// FP8 pools (KvFp8): each key's row scales too, into ks, vs (0 for the zeros).
template <class KV, int kKeysPerLane>
__device__ __forceinline__ void load_step(typename KV::vec_t (&kr)[kKeysPerLane][kVecsPerLane],
                                          typename KV::vec_t (&vr)[kKeysPerLane][kVecsPerLane],
                                          float (&ks)[kKeysPerLane], float (&vs)[kKeysPerLane],
                                          const typename KV::elem_t* k_cache, const typename KV::elem_t* v_cache,
                                          const float* k_scale, const float* v_scale, const int* table,
                                          int table_step, int base, int end, int kvh, int key_lane, int vec_lane,
                                          int skip) {
#pragma unroll
  for (int k = 0; k < kKeysPerLane; k++) {
    const int pos = base + k * kKeysAbreast + key_lane;
    const bool in = pos < end && pos != skip;
    const size_t off = in ? kv_row(table, table_step, pos, kvh) : 0;
    if constexpr (KV::kFp8) {
      const size_t row = in ? kv_index(table, table_step, pos, kvh) : 0;
      ks[k] = in ? load_kv_scale<KV>(k_scale, row) : 0.f;
      vs[k] = in ? load_kv_scale<KV>(v_scale, row) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kVecsPerLane; i++) {
      const int v = vec_lane + i * kLanesPerKey;
      if (in && v < kNumVecs) {
        kr[k][i] = load_kv<KV>(k_cache + off + v * kVec);
        vr[k][i] = load_kv<KV>(v_cache + off + v * kVec);
      } else {
        kr[k][i] = zero_kv<KV>();
        vr[k][i] = zero_kv<KV>();
      }
    }
  }
}

// attention_decode_rope*: the new key's K and V rows, rotated by this CTA into shared memory (new_k,
// new_v), replace the zeros load_step left for key `pos` of the step at base (pos < 0: none); FP8
// pools: with its scales new_ks, new_vs.
template <class KV, int kKeysPerLane>
__device__ __forceinline__ void take_new_key(typename KV::vec_t (&kr)[kKeysPerLane][kVecsPerLane],
                                             typename KV::vec_t (&vr)[kKeysPerLane][kVecsPerLane],
                                             float (&ks)[kKeysPerLane], float (&vs)[kKeysPerLane],
                                             const typename KV::vec_t* new_k, const typename KV::vec_t* new_v,
                                             float new_ks, float new_vs, int pos, int base, int key_lane,
                                             int vec_lane) {
#pragma unroll
  for (int k = 0; k < kKeysPerLane; k++) {
    if (base + k * kKeysAbreast + key_lane == pos) {
      if constexpr (KV::kFp8) {
        ks[k] = new_ks;
        vs[k] = new_vs;
      }
#pragma unroll
      for (int i = 0; i < kVecsPerLane; i++) {
        const int v = vec_lane + i * kLanesPerKey;
        if (v < kNumVecs) {
          kr[k][i] = new_k[v];
          vr[k][i] = new_v[v];
        }
      }
    }
  }
}

// kVec consecutive floats of shared memory (16-byte aligned when kVec ≥ 4).
__device__ __forceinline__ void load_smem_vec(const float* p, float (&f)[kVec]) {
  if constexpr (kVec % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kVec; i += 4) {
      const float4 x = *reinterpret_cast<const float4*>(p + i);
      f[i] = x.x;
      f[i + 1] = x.y;
      f[i + 2] = x.z;
      f[i + 3] = x.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kVec; i++) f[i] = p[i];
  }
}

// kAccVec floats of shared memory (aligned to kAccVec floats): a gathered item (cluster merge).
__device__ __forceinline__ void load_smem_item(const float* p, float (&f)[kAccVec]) {
  if constexpr (kAccVec == 4) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    f[0] = x.x;
    f[1] = x.y;
    f[2] = x.z;
    f[3] = x.w;
  } else if constexpr (kAccVec == 2) {
    const float2 x = *reinterpret_cast<const float2*>(p);
    f[0] = x.x;
    f[1] = x.y;
  } else {
    f[0] = *p;
  }
}

// kAccVec floats to p (aligned to kAccVec floats; shared, a peer's shared or global memory): an item.
__device__ __forceinline__ void store_item(float* p, const float (&f)[kAccVec]) {
  if constexpr (kAccVec == 4) {
    *reinterpret_cast<float4*>(p) = float4{f[0], f[1], f[2], f[3]};
  } else if constexpr (kAccVec == 2) {
    *reinterpret_cast<float2*>(p) = float2{f[0], f[1]};
  } else {
    *p = f[0];
  }
}

// A warp's kVec accumulated dims of one K/V vector into its shared-memory row p (aligned to kAccVec
// floats: HEAD_DIM and kVec are multiples of kAccVec where it is more than 1), in items.
__device__ __forceinline__ void store_acc_vec(float* p, const float (&f)[kVec]) {
  if constexpr (kVec % kAccVec == 0) {
#pragma unroll
    for (int j = 0; j < kVec; j += kAccVec) {
      float x[kAccVec];
#pragma unroll
      for (int e = 0; e < kAccVec; e++) x[e] = f[j + e];
      store_item(p + j, x);
    }
  } else {
#pragma unroll
    for (int e = 0; e < kVec; e++) p[e] = f[e];
  }
}

// Online softmax over one step of a lane's kKeys keys (sc [key][head]: scores in, numerators out): each
// head's running max m and sum l (this lane's keys; summed over the keys abreast at the end), and the
// lane's accumulator rescaled to the new max. The split and batch kernels' common step.
template <int kKeys>
__device__ __forceinline__ void softmax_step(float (&sc)[kKeys][kHeadsPerCta], float (&m)[kHeadsPerCta],
                                             float (&l)[kHeadsPerCta],
                                             float (&acc)[kHeadsPerCta][kVecsPerLane][kVec]) {
#pragma unroll
  for (int g = 0; g < kHeadsPerCta; g++) {
    float mx = sc[0][g];
#pragma unroll
    for (int k = 1; k < kKeys; k++) mx = fmaxf(mx, sc[k][g]);
    mx = xor_max(mx, kLanesPerKey, kWarp / 2);
    const float m_new = fmaxf(m[g], mx);
    const float m_use = m_new == neg_inf() ? 0.f : m_new;
    const float corr = score_exp(m[g] - m_use);
    m[g] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < kKeys; k++) {
      sc[k][g] = score_exp(sc[k][g] - m_use);
      sum += sc[k][g];
    }
    l[g] = l[g] * corr + sum;
#pragma unroll
    for (int i = 0; i < kVecsPerLane; i++) {
#pragma unroll
      for (int e = 0; e < kVec; e++) acc[g][i][e] *= corr;
    }
  }
}

// After the key loop: l and acc summed over the keys abreast (lanes with the same vec_lane), then the
// warp's state into shared memory for the warps' merge: s_m, s_l [warp][head], s_acc [warp][head][HEAD_DIM].
__device__ __forceinline__ void stash_warp_state(const float (&m)[kHeadsPerCta], float (&l)[kHeadsPerCta],
                                                 float (&acc)[kHeadsPerCta][kVecsPerLane][kVec], float* s_m,
                                                 float* s_l, float* s_acc, int warp, int lane, int vec_lane) {
#pragma unroll
  for (int g = 0; g < kHeadsPerCta; g++) {
    l[g] = xor_sum(l[g], kLanesPerKey, kWarp / 2);
#pragma unroll
    for (int i = 0; i < kVecsPerLane; i++) {
#pragma unroll
      for (int e = 0; e < kVec; e++) acc[g][i][e] = xor_sum(acc[g][i][e], kLanesPerKey, kWarp / 2);
    }
  }
  if (lane < kLanesPerKey) {
#pragma unroll
    for (int g = 0; g < kHeadsPerCta; g++) {
#pragma unroll
      for (int i = 0; i < kVecsPerLane; i++) {
        const int v = vec_lane + i * kLanesPerKey;
        if (v < kNumVecs) store_acc_vec(&s_acc[(warp * kHeadsPerCta + g) * HEAD_DIM + v * kVec], acc[g][i]);
      }
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < kHeadsPerCta; g++) {
      s_m[warp * kHeadsPerCta + g] = m[g];
      s_l[warp * kHeadsPerCta + g] = l[g];
    }
  }
}

// The merge of N states of one item (kAccVec dims of a head) held in shared memory — the CTA's warps, or
// a cluster's splits — in order: state n's m and l at ms[n · kHeadsPerCta], ls[…], its acc at
// acc + n · acc_step. The splits' merge (merge_batch), so its sums are a global merge's bits.
template <int N>
__device__ __forceinline__ void merge_shared(const float* ms, const float* ls, const float* acc, int acc_step,
                                             float& mx, float& sum, float (&a)[kAccVec]) {
  float mz[N], lz[N], v[N][kAccVec];
#pragma unroll
  for (int n = 0; n < N; n++) {
    mz[n] = ms[n * kHeadsPerCta];
    lz[n] = ls[n * kHeadsPerCta];
    load_smem_item(acc + n * acc_step, v[n]);
  }
  mx = neg_inf();
  sum = 0.f;
#pragma unroll
  for (int e = 0; e < kAccVec; e++) a[e] = 0.f;
#pragma unroll
  for (int n = 0; n < N; n++) mx = fmaxf(mx, mz[n]);
  merge_batch(mz, lz, v, mx, sum, a);
}

// The first 32 bits of a raw vector (the profiling stops' keep-alive test).
template <class V>
__device__ __forceinline__ unsigned raw_bits(const V& r) {
  unsigned u = 0;
  memcpy(&u, &r, sizeof(u) < sizeof(V) ? sizeof(u) : sizeof(V));
  return u;
}

// The CTA's shared memory, dynamic: a launch passes sizeof(DecodeSmem<kWarps>) bytes (attention_splits.ts
// decodeSharedBytes mirrors it, checked below at build time; the kernel traps on less). Dynamic so that
// the CPU emulator can give each CTA of a cluster its own copy.
constexpr int kRowWords = kRowWordsOf(HEAD_DIM);  // a row of ≤ 4-byte elements in 16-byte units (any dtype)
// Cluster launches (kCluster CTAs, ≤ kMaxCluster): the merge items (kAccVec dims of a head) are dealt
// round the cluster, item i to CTA i % kCluster as its item i / kCluster; every split pushes its partial
// of an item into the owner's gather buffer, [split][owned item][kAccVec] floats. The size fits every
// cluster size (kCluster · ceil(items / kCluster) ≤ items rounded up to kMaxCluster), so one module has
// one DecodeSmem whatever its cluster kernels.
constexpr int kMaxCluster = 8;
constexpr int kMergeItemsCta = kHeadsPerCta * kAccRowVecs;  // items of a CTA's heads
constexpr int kGatherAcc = (kMergeItemsCta + kMaxCluster - 1) / kMaxCluster * kMaxCluster * kAccVec;

template <int kWarps>
struct alignas(16) DecodeSmem {
  unsigned new_k[kRowWords];                          // attention_decode_rope*: the new key's rotated K row
  unsigned new_v[kRowWords];                          //   and its V row (kiln_t), 16-byte aligned
  float gather_acc[kGatherAcc];                       // cluster launches: [split][owned item][kAccVec] (16-byte
                                                      //   aligned: kGatherAcc is a multiple of 8)
  float q[kHeadsPerCta * HEAD_DIM];                   // [head][HEAD_DIM] queries
  float acc[kWarps * kHeadsPerCta * HEAD_DIM];        // [warp][head][HEAD_DIM] the warps' acc
  float m[kWarps * kHeadsPerCta];                     // [warp][head]
  float l[kWarps * kHeadsPerCta];
  float gather_m[kMaxCluster * kHeadsPerCta];         // cluster launches: [split][head] every split's m and l
  float gather_l[kMaxCluster * kHeadsPerCta];
  int last;                                           // global merge: this CTA counted last
};

// The new key's row scales in shared memory (FP8 pools; see rope_prologue): a word of new_k / new_v.
template <class Smem>
__device__ __forceinline__ float new_ks(const Smem& sm) { return reinterpret_cast<const float*>(sm.new_k)[kNewScaleWord]; }
template <class Smem>
__device__ __forceinline__ float new_vs(const Smem& sm) { return reinterpret_cast<const float*>(sm.new_v)[kNewScaleWord]; }

#if defined(DECODE_SMEM_BYTES)  // the host's mirror (attention_splits.ts decodeSharedBytes), passed by the builder
static_assert(sizeof(DecodeSmem<kSplitWarps>) == DECODE_SMEM_BYTES, "DECODE_SMEM_BYTES is not sizeof(attn::DecodeSmem<8>)");
#endif

}  // namespace attn

// out          [S, NUM_HEADS, HEAD_DIM]  kiln_t
// partial_acc  [S, NUM_HEADS, num_splits, HEAD_DIM] fp32, unnormalized Σ_j e^(s_j - m)·v_j of a split
//              (not written for an empty split, whose m = -inf tells the merge to skip it)
// partial_m    [S, NUM_HEADS, num_splits] fp32, the split's max score m (× log2 e for 16-bit builds)
// partial_l    [S, NUM_HEADS, num_splits] fp32, Σ_j e^(s_j - m); an empty split has m = -inf, l = 0
// split_counter [S, NUM_KV_HEADS * HEAD_GROUPS] int32 arrival counts; zero before the launch, left zero
//              (the partials and counters are untouched when num_splits == 1 and may then be null)
// q            [S, NUM_HEADS, HEAD_DIM]  kiln_t, already rotated (attention_decode_rope*: unrotated, row s at
//              q + s·q_stride, e.g. the packed q|k|v rows of the QKV GEMM)
// k_cache, v_cache  [numBlocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM]  this layer's pools (new key written;
//              attention_decode_rope*: written here, into slot_mapping[s])
// attention_decode_rope* only, after stop: k_new, v_new (unrotated k and v rows, stride kv_stride), q_stride,
//              kv_stride, positions, slot_mapping, inv_freq, inv_freq_index, attention_scaling, q_norm,
//              k_norm, norm_eps, num_slots: rope_qkv_fused's arguments (rope_kv.cu), see RopeIn
// context_len  [S] int32, ≥ 1 (a sequence with 0 gets zeros: padding rows of a graph bucket)
// block_tables int32: sequence s's block j at block_tables[s · block_table_stride + j · block_table_step]
//              ([S, stride] row-major: step 1; a decode graph's [stride, S]: stride 1, step S, so the
//              entries in use form one prefix of the buffer)
// trigger      when the next kernel may launch (PDL): 0 right after the wait, 1 after the key loop, 2 as
//              the CTAs exit (A/B switch for measurements, KILN_ATTN_TRIGGER; the results are the same)
// stop         profiling only (KILN_ATTN_STOP; the output is then wrong): 0 runs the kernel whole; 1 returns
//              right after the wait, 2 after the key loop, 3 after writing the partials (before the fence or
//              the cluster barrier; a cluster CTA then stores its partial into its own shared memory, not
//              its peers'), so TPOT with each shows what the stages cost inside the decode graph
// Grid (NUM_KV_HEADS * HEAD_GROUPS, S, num_splits), block (256), sizeof(attn::DecodeSmem<8>) bytes of
// dynamic shared memory. attention_decode_c{2,4,8} (sm_90+): the same with num_splits = 2, 4, 8, whose
// splits form one thread-block cluster (1, 1, num_splits) and merge through distributed shared memory
// (each split pushes its partial to the CTAs that merge it; one cluster barrier): no partials in global
// memory, no fence or counter (partial_* and split_counter are not used).
namespace attn {

// kCluster = 1: the splits merge through global memory (the last CTA to count merges); 2, 4, 8: the
// launch's num_splits (= gridDim.z) CTAs of (x, s) are one cluster, rank = split, and merge through
// distributed shared memory (pushed partials, one barrier).
// attention_decode_rope*'s prologue inputs (RopeIn): decode_rope.cuh.

// attention_decode_rope*'s prologue, the work rope_qkv_fused would do (rope.cuh: the same bits), after the
// PDL wait, by all threads, with the token's angles `an` (computed before the wait): the CTA's nh query
// heads (from h0), rotated (and normed), into sq
// ([kHeadsPerCta][HEAD_DIM] floats, zeros past nh), and, when the CTA `holds_new` key ctx − 1, that key's
// K (normed, rotated) and V rows into new_k / new_v (shared memory, from where the key loop takes them);
// the CTA of head group 0 also stores them to the cache slot slot_mapping[s]. Ends with a barrier.
// FP8 pools (KvFp8): the rows are quantized as rope_qkv_fused_kv8 does (kv_fp8.cuh), and new_k / new_v
// hold the bytes, their scales at new_k[kNewScaleWord] / new_v[kNewScaleWord] (as words): the key loop
// reads the new key as it reads every other, through the cache's format.
template <class KV, int kWarps>
__device__ __forceinline__ void rope_prologue(const kiln_t* __restrict__ q, const RopeIn& ri,
                                              const typename KV::elem_t* __restrict__ k_cache,
                                              const typename KV::elem_t* __restrict__ v_cache,
                                              const float* __restrict__ k_scale, const float* __restrict__ v_scale,
                                              int s, int kvh, int h0, int nh, bool holds_new, float* sq,
                                              unsigned* new_k_words, unsigned* new_v_words,
                                              const kiln::rope::Angles& an) {
  typedef typename KV::elem_t elem_t;
  elem_t* const new_k = reinterpret_cast<elem_t*>(new_k_words);
  elem_t* const new_v = reinterpret_cast<elem_t*>(new_v_words);
  const int tasks = nh + (holds_new ? 2 : 0);
  const int slot = ri.slot_mapping[s];
  const bool store = holds_new && blockIdx.x % kHeadGroups == 0 && slot >= 0 && slot < ri.num_slots;
  const size_t cache_row = ((size_t)slot * NUM_KV_HEADS + kvh) * HEAD_DIM;
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  for (int t = warp; t < tasks; t += kWarps) {  // one head per warp
    if (t < nh) {
      kiln::rope::Head h;
      kiln::rope::load(q + (size_t)s * ri.q_stride + (size_t)(h0 + t) * HEAD_DIM, h);
      if (ri.q_norm != nullptr) kiln::rope::norm(h, ri.q_norm, ri.norm_eps);
      if (ROTARY_DIM > 0) kiln::rope::rotate(h, an);
      float* const dst = sq + t * HEAD_DIM;
      kiln::rope::for_each(h, [dst](int d, kiln_t x) { dst[d] = to_float(x); });
    } else if (t == nh) {
      kiln::rope::Head h;
      kiln::rope::load(ri.k + (size_t)s * ri.kv_stride + (size_t)kvh * HEAD_DIM, h);
      if (ri.k_norm != nullptr) kiln::rope::norm(h, ri.k_norm, ri.norm_eps);
      if (ROTARY_DIM > 0) kiln::rope::rotate(h, an);
      elem_t* const cache = const_cast<elem_t*>(k_cache) + cache_row;  // never read here: the loop reads smem
      if constexpr (KV::kFp8) {
        float amax = 0.f;
        kiln::rope::for_each(h, [&amax](int, kiln_t x) { amax = kiln::kv8::absmax(amax, to_float(x)); });
        const float sc = kiln::kv8::row_scale(kiln::kv8::warp_absmax(amax));
        kiln::rope::for_each(h, [new_k, cache, store, sc](int d, kiln_t x) {
          const unsigned char b = kiln::kv8::encode(to_float(x), sc);
          new_k[d] = b;
          if (store) cache[d] = b;
        });
        if (lane == 0) {
          reinterpret_cast<float*>(new_k_words)[kNewScaleWord] = sc;
          if (store) const_cast<float*>(k_scale)[(size_t)slot * NUM_KV_HEADS + kvh] = sc;
        }
      } else {
        kiln::rope::for_each(h, [new_k, cache, store](int d, kiln_t x) {
          new_k[d] = x;
          if (store) cache[d] = x;
        });
      }
    } else {
      const kiln_t* const src = ri.v + (size_t)s * ri.kv_stride + (size_t)kvh * HEAD_DIM;
      if constexpr (KV::kFp8) {
        float amax = 0.f;
        for (int d = lane; d < HEAD_DIM; d += kWarp) amax = kiln::kv8::absmax(amax, to_float(src[d]));
        const float sc = kiln::kv8::row_scale(kiln::kv8::warp_absmax(amax));
        for (int d = lane; d < HEAD_DIM; d += kWarp) {
          const unsigned char b = kiln::kv8::encode(to_float(src[d]), sc);
          new_v[d] = b;
          if (store) const_cast<elem_t*>(v_cache)[cache_row + d] = b;
        }
        if (lane == 0) {
          reinterpret_cast<float*>(new_v_words)[kNewScaleWord] = sc;
          if (store) const_cast<float*>(v_scale)[(size_t)slot * NUM_KV_HEADS + kvh] = sc;
        }
      } else {
        for (int d = lane; d < HEAD_DIM; d += kWarp) {
          const kiln_t x = src[d];
          new_v[d] = x;
          if (store) const_cast<kiln_t*>(v_cache)[cache_row + d] = x;
        }
      }
    }
  }
  for (int i = nh * HEAD_DIM + threadIdx.x; i < kHeadsPerCta * HEAD_DIM; i += kWarps * kWarp) sq[i] = 0.f;
  __syncthreads();
}

// KV: the pools' storage (KvPlain, KvFp8 with the row scales k_scale, v_scale; attention_common.cuh).
template <int kCluster, bool kRope, class KV, int kWarps>
__device__ __forceinline__ void decode(kiln_t* __restrict__ out, float* __restrict__ partial_acc,
                                       float* __restrict__ partial_m, float* __restrict__ partial_l,
                                       int* __restrict__ split_counter, const kiln_t* __restrict__ q,
                                       const typename KV::elem_t* __restrict__ k_cache,
                                       const typename KV::elem_t* __restrict__ v_cache,
                                       const int* __restrict__ context_len, const int* __restrict__ block_tables,
                                       int block_table_stride, int block_table_step, int num_splits, float scale,
                                       int sliding_window, int trigger, int stop, const RopeIn& ri,
                                       const float* __restrict__ k_scale, const float* __restrict__ v_scale) {
  typedef typename KV::vec_t vec_t;
  typedef Split<kWarps> P;
  constexpr int kKeysPerLane = P::kKeysPerLane;
  constexpr int kKeysPerStep = P::kKeysPerStep;
  constexpr int kThreads = P::kThreads;
  extern __shared__ __align__(16) unsigned char decode_smem[];
  if (dynamic_smem_bytes() < sizeof(DecodeSmem<kWarps>)) __trap();  // the launch must pass its size
  DecodeSmem<kWarps>& sm = *reinterpret_cast<DecodeSmem<kWarps>*>(decode_smem);
  float* const sq = sm.q;
  float* const s_acc = sm.acc;
  float* const s_m = sm.m;
  float* const s_l = sm.l;
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int kvh = blockIdx.x / kHeadGroups;
  const int h0 = kvh * ATTN_GROUP + (blockIdx.x % kHeadGroups) * kHeadsPerCta;  // first query head
  const int nh = min(kHeadsPerCta, (kvh + 1) * ATTN_GROUP - h0);              // query heads here
  const int s = blockIdx.y;
  const int split = blockIdx.z;
  // Before the wait (pdl.cuh: what was written before the previous kernel began): the step metadata and
  // the K/V rows of keys < ctx - 1, cached by earlier steps. Key ctx - 1 is this step's, written by the
  // kernel before this one (rope_kv), and q too: both are read after the wait (attention_decode_rope*:
  // computed here after the wait from the q|k|v rows the kernel before wrote).
  const int ctx = context_len[s];
  const int* table = block_tables + (size_t)s * block_table_stride;
  const int lo = sliding_window > 0 ? max(0, ctx - sliding_window) : 0;
  // At least kMinSplitKeys keys per split: a graph launches num_splits for the longest context it may
  // see, and at short contexts the splits past the keys stay empty (cheap) instead of each taking a
  // sliver (every non-empty split costs the merge a partial). Eager launches pick num_splits from the
  // context with the same minimum, so both partition a context alike.
  int per = max((ctx - lo + num_splits - 1) / num_splits, kMinSplitKeys);
  per = (per + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  const int ks = lo + split * per;
  const int ke = min(ctx, ks + per);
  const int key_lane = lane / kLanesPerKey;  // which of the keys abreast
  const int vec_lane = lane % kLanesPerKey;  // vectors vec_lane + i * kLanesPerKey of the row
  int base = ks + warp * kKeysPerStep;       // the warp's first step
  vec_t kr[kKeysPerLane][kVecsPerLane], vr[kKeysPerLane][kVecsPerLane];
  float ksc[kKeysPerLane], vsc[kKeysPerLane];  // FP8 pools: the keys' row scales
  load_step<KV>(kr, vr, ksc, vsc, k_cache, v_cache, k_scale, v_scale, table, block_table_step, base, min(ke, ctx - 1),
                kvh, key_lane, vec_lane, -1);
  kiln::rope::Angles an{};  // attention_decode_rope*: the new token's angles, from the step metadata
  if constexpr (kRope) an = kiln::rope::angles(ri.rope, s);

  kiln::pdl_wait();  // q and the new key come from the previous kernel (see pdl.cuh)
  if (trigger == 0) kiln::pdl_launch_dependents();
  if (stop == 1) {  // profiling: keep the pre-wait loads (a store no real value reaches), then leave
    if (raw_bits(kr[0][0]) == 0x7fc00001u && raw_bits(vr[0][0]) == 0x7fc00001u) out[0] = from_float(0.f);
    return;
  }

  // attention_decode_rope*: the new key (position new_pos, else −1) comes from shared memory, not the cache.
  int new_pos = -1;
  const vec_t* const sm_new_k = reinterpret_cast<const vec_t*>(sm.new_k);
  const vec_t* const sm_new_v = reinterpret_cast<const vec_t*>(sm.new_v);
  if constexpr (kRope) {
    // The prologue rope_qkv_fused would run (rope.cuh: the same bits): the CTA's query heads, rotated
    // into sq, and, in the split that holds the new key, its K (normed, rotated) and V rows into shared
    // memory, from where the key loop takes them; the CTA of head group 0 also stores them to the cache.
    const bool holds_new = ks <= ctx - 1 && ctx - 1 < ke;
    rope_prologue<KV, kWarps>(q, ri, k_cache, v_cache, k_scale, v_scale, s, kvh, h0, nh, holds_new, sq, sm.new_k, sm.new_v,
                      an);
    if (holds_new) new_pos = ctx - 1;
    take_new_key<KV>(kr, vr, ksc, vsc, sm_new_k, sm_new_v, new_ks(sm), new_vs(sm), new_pos, base, key_lane,
                     vec_lane);  // if in the first step
  } else {
  #pragma unroll
    for (int k = 0; k < kKeysPerLane; k++) {  // the new key, if it falls in the first step
      const int pos = base + k * kKeysAbreast + key_lane;
      if (pos == ctx - 1 && pos < ke) {
        const size_t off = kv_row(table, block_table_step, pos, kvh);
        if constexpr (KV::kFp8) {
          const size_t row = kv_index(table, block_table_step, pos, kvh);
          ksc[k] = load_kv_scale<KV>(k_scale, row);
          vsc[k] = load_kv_scale<KV>(v_scale, row);
        }
  #pragma unroll
        for (int i = 0; i < kVecsPerLane; i++) {
          const int v = vec_lane + i * kLanesPerKey;
          if (v < kNumVecs) {
            kr[k][i] = load_kv<KV>(k_cache + off + v * kVec);
            vr[k][i] = load_kv<KV>(v_cache + off + v * kVec);
          }
        }
      }
    }
    for (int i = threadIdx.x; i < kHeadsPerCta * HEAD_DIM; i += kThreads) {
      const int g = i / HEAD_DIM;
      sq[i] = g < nh ? to_float(q[((size_t)s * NUM_HEADS + h0 + g) * HEAD_DIM + i % HEAD_DIM]) : 0.f;
    }
    __syncthreads();
  }

  const float sl = scale * kExpScale;
  float m[kHeadsPerCta], l[kHeadsPerCta];
  float acc[kHeadsPerCta][kVecsPerLane][kVec];  // this lane's dims of its keys' weighted V sum
#pragma unroll
  for (int g = 0; g < kHeadsPerCta; g++) {
    m[g] = neg_inf();
    l[g] = 0.f;
#pragma unroll
    for (int i = 0; i < kVecsPerLane; i++) {
#pragma unroll
      for (int e = 0; e < kVec; e++) acc[g][i][e] = 0.f;
    }
  }

  for (bool first = true; base < ke; base += kWarps * kKeysPerStep, first = false) {
    if (!first) {
      load_step<KV>(kr, vr, ksc, vsc, k_cache, v_cache, k_scale, v_scale, table, block_table_step, base, ke, kvh,
                    key_lane, vec_lane, new_pos);
      if constexpr (kRope)
        take_new_key<KV>(kr, vr, ksc, vsc, sm_new_k, sm_new_v, new_ks(sm), new_vs(sm), new_pos, base, key_lane,
                         vec_lane);
    }

    float sc[kKeysPerLane][kHeadsPerCta];  // scores, then softmax numerators
#pragma unroll
    for (int k = 0; k < kKeysPerLane; k++) {
      float kf[kVecsPerLane][kVec];
#pragma unroll
      for (int i = 0; i < kVecsPerLane; i++) unpack_kv<KV>(kr[k][i], ksc[k], kf[i]);
#pragma unroll
      for (int g = 0; g < kHeadsPerCta; g++) {
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < kVecsPerLane; i++) {
          const int v = vec_lane + i * kLanesPerKey;
          if (v < kNumVecs) {
            float qf[kVec];
            load_smem_vec(&sq[g * HEAD_DIM + v * kVec], qf);
#pragma unroll
            for (int e = 0; e < kVec; e++) dot = fmaf(qf[e], kf[i][e], dot);
          }
        }
        dot = xor_sum(dot, 1, kLanesPerKey / 2);
        sc[k][g] = base + k * kKeysAbreast + key_lane < ke ? dot * sl : neg_inf();
      }
    }
    softmax_step(sc, m, l, acc);
#pragma unroll
    for (int k = 0; k < kKeysPerLane; k++) {
#pragma unroll
      for (int i = 0; i < kVecsPerLane; i++) {
        float vf[kVec];
        unpack_kv<KV>(vr[k][i], vsc[k], vf);
#pragma unroll
        for (int g = 0; g < kHeadsPerCta; g++) {
#pragma unroll
          for (int e = 0; e < kVec; e++) acc[g][i][e] = fmaf(sc[k][g], vf[e], acc[g][i][e]);
        }
      }
    }
  }

  // trigger 1: the next kernel (the o-projection GEMV) may launch now and prefetch its weights while this
  // one writes and merges the splits, rather than during the key loads. (trigger 2: when CTAs exit.)
  if (trigger == 1) kiln::pdl_launch_dependents();
  if (stop == 2) {  // profiling: keep the key loop's results alive (l is never negative), then leave
    if (l[0] < 0.f) out[0] = from_float(acc[0][0][0]);
    return;
  }
  // Cluster launches: this CTA has started (the first half of a barrier whose wait, before the first
  // store into a peer's shared memory, rarely waits: every CTA of the cluster has long arrived).
  if constexpr (kCluster > 1) cluster_arrive_relaxed();

  stash_warp_state(m, l, acc, s_m, s_l, s_acc, warp, lane, vec_lane);
  __syncthreads();

  // Cluster launches: each CTA owns kOwnItems items (the last CTAs maybe fewer) of the merge.
  constexpr int kOwnItems = (kMergeItemsCta + kCluster - 1) / kCluster;
  static_assert(kCluster <= kMaxCluster && kCluster * kOwnItems * kAccVec <= kGatherAcc, "gather_acc too small");
  if constexpr (kCluster > 1) cluster_wait();  // every CTA of the cluster has started: peers' stores are safe
  // The warps' merge, an item (kAccVec dims of one head) a thread: the splits' merge (merge_batch) over
  // the warps in warp order, so its sums are those of a merge dim by dim, and each warp's weight
  // e^(m_w − M) serves kAccVec dims.
  for (int i = threadIdx.x; i < nh * kAccRowVecs; i += kThreads) {
    const int g = i / kAccRowVecs;
    const int d = i % kAccRowVecs * kAccVec;
    float mx, sum, a[kAccVec];
    merge_shared<kWarps>(s_m + g, s_l + g, s_acc + g * HEAD_DIM + d, kHeadsPerCta * HEAD_DIM, mx, sum, a);
    const size_t row = (size_t)s * NUM_HEADS + h0 + g;  // [S, NUM_HEADS]
    if (kCluster > 1) {
      // Push: the item goes straight into the gather buffer of the CTA that merges it, m and l of the
      // head into every CTA's (plain stores to distributed shared memory, not waited on). With stop 3
      // all go to this CTA's own buffers (wrong slots, no matter): a CTA that leaves at once must not
      // store into a peer that may have left.
      const unsigned owner = stop == 3 ? split : i % kCluster;
      store_item(cluster_peer(&sm.gather_acc[(split * kOwnItems + i / kCluster) * kAccVec], owner), a);
      for (int r = i % kAccRowVecs; r < kCluster; r += kAccRowVecs) {
        const unsigned dst = stop == 3 ? split : r;
        *cluster_peer(&sm.gather_m[split * kHeadsPerCta + g], dst) = mx;
        *cluster_peer(&sm.gather_l[split * kHeadsPerCta + g], dst) = sum;
      }
    } else if (num_splits == 1) {
      store_merged(out + row * HEAD_DIM + d, sum, a);
    } else {
      const size_t part = row * num_splits + split;
      if (mx != neg_inf()) store_item(&partial_acc[part * HEAD_DIM + d], a);  // the merge skips an empty split's acc
      if (d == 0) {
        partial_m[part] = mx;
        partial_l[part] = sum;
      }
    }
  }
  if (stop == 3) return;  // profiling: every CTA leaves here, so no cluster barrier is left waiting
  if constexpr (kCluster > 1) {
    // One cluster barrier: its release/acquire makes every split's pushes visible, and the items this
    // CTA owns are then whole in its own shared memory. Each thread merges its items in split order with
    // the global merge's operations (the same bits); no peer's shared memory is touched after the
    // barrier, so no CTA need wait for another to exit.
    cluster_sync();
    const size_t row0 = (size_t)s * NUM_HEADS + h0;  // [S, NUM_HEADS] row of the CTA's first head
    for (int j = threadIdx.x; j < kOwnItems; j += kThreads) {
      const int i = split + kCluster * j;  // the item
      if (i >= nh * kAccRowVecs) break;
      const int g = i / kAccRowVecs;
      const int d = i % kAccRowVecs * kAccVec;
      float mx, sum, a[kAccVec];
      merge_shared<kCluster>(sm.gather_m + g, sm.gather_l + g, sm.gather_acc + j * kAccVec, kOwnItems * kAccVec, mx,
                             sum, a);
      store_merged(out + (row0 + g) * HEAD_DIM + d, sum, a);
    }
    return;
  }
  if (num_splits == 1) return;

  // Count this split in; the CTA that counts last merges. Each thread fences its partial writes before
  // the count, and the last CTA fences after seeing it, so it reads every split's partial.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = split_counter + (size_t)s * gridDim.x + blockIdx.x;  // [S, NUM_KV_HEADS * HEAD_GROUPS]
    const bool last = atomicAdd(counter, 1) == num_splits - 1;
    if (last) *counter = 0;  // every split has counted: the next launch starts from zero
    __threadfence();
    sm.last = last;
  }
  __syncthreads();
  if (!sm.last) return;

  // Merge (merge_batch). Each thread merges its items (kAccVec dims of one head) on its own: it issues the loads of m, l and
  // acc of kMergeBatch splits at once (an empty split's acc is loaded but not used), so a merge of up to
  // kMergeBatch splits waits on memory once; nothing is shared, no barrier.
  const size_t row0 = (size_t)s * NUM_HEADS + h0;  // [S, NUM_HEADS] row of the CTA's first head
#pragma unroll
  for (int k = 0; k < P::kMergeItems; k++) {
    const int i = threadIdx.x + k * kThreads;
    const int g = i / kAccRowVecs;
    if (g >= nh) continue;
    const float* pm = partial_m + (row0 + g) * num_splits;
    const float* pl = partial_l + (row0 + g) * num_splits;
    const float* pa = partial_acc + (row0 + g) * num_splits * HEAD_DIM + i % kAccRowVecs * kAccVec;
    float mz[P::kMergeBatch], lz[P::kMergeBatch], v[P::kMergeBatch][kAccVec];
    float mx = neg_inf(), sum = 0.f, a[kAccVec];
#pragma unroll
    for (int e = 0; e < kAccVec; e++) a[e] = 0.f;
    for (int z0 = 0; z0 < num_splits; z0 += P::kMergeBatch) {
#pragma unroll
      for (int b = 0; b < P::kMergeBatch; b++) {
        const int z = z0 + b;
        if (z < num_splits) {
          mz[b] = __ldcg(pm + z);
          lz[b] = __ldcg(pl + z);
          load_partial(pa + (size_t)z * HEAD_DIM, v[b]);
        } else {
          mz[b] = neg_inf();
        }
      }
      if (z0 == 0) {  // M over every split: the first batch's m, then any further ones
#pragma unroll
        for (int b = 0; b < P::kMergeBatch; b++) mx = fmaxf(mx, mz[b]);
        for (int z = P::kMergeBatch; z < num_splits; z++) mx = fmaxf(mx, __ldcg(pm + z));
      }
      merge_batch(mz, lz, v, mx, sum, a);
    }
    store_merged(out + (row0 + g) * HEAD_DIM + i % kAccRowVecs * kAccVec, sum, a);
  }
}

// ---------------------------------------------------------------------------------------------------
// attention_decode_batch (and _rope): many sequences, no context splits. When S × (kv head groups) CTAs
// already fill the GPU, splitting contexts only adds partials and merges; this kernel gives one CTA to
// each (kv head group x, sequence s) and walks the whole range [lo, ctx) in tiles of kTileKeys keys,
// the block table in order. Each tile's K and V rows come into shared memory by 16-byte cp.async
// (a plain copy where a row's vectors are narrower), kBatchStages tiles in flight, so the next tiles'
// loads run while this one is computed; the first kBatchStages − 1 tiles are issued before the PDL wait
// (keys < ctx − 1 only). Every key of a tile is read once for all the CTA's query heads (GQA). The
// lanes then work as attention_decode's do (LANES_PER_KEY lanes per key, q in registers here, online
// softmax per warp, the warps merged in shared memory), in sub-steps of at most 4 keys per lane.
//
//   tile t (kTileKeys keys):  cp.async K|V → stage t % kBatchStages  ─┐ issued kBatchStages − 1 tiles ahead
//   wait, barrier, scores + softmax + P·V from the stage, barrier ◀─┘
//
// The new key (ctx − 1) is never read from a tile (its slot is zero-filled): it comes from shared memory
// (new_k, new_v), rotated there by the fused RoPE prologue or copied from the cache after the wait.
constexpr int kBatchStages = 3;
constexpr int kBatchTileBytes = 8192;  // a K (or V) tile at 4 bytes an element
constexpr int floor_pow2(int x) {
  int p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}
// Keys one round of the CTA's lanes takes for an element size of `bytes` (the kCtaKeys of that dtype).
constexpr int cta_keys_for(int bytes) {
  int v = 16 / bytes;
  while (v > 1 && HEAD_DIM % v != 0) v /= 2;
  const int lanes = next_pow2(HEAD_DIM / v) < kWarp ? next_pow2(HEAD_DIM / v) : kWarp;
  return kDecodeWarps * (kWarp / lanes);
}
// Tile keys at 4 bytes an element (a power of two, ≤ 64, at least the fp32 round), so the shared memory
// is one size whatever the dtype; 16-bit dtypes take twice the keys in the same bytes.
constexpr int kTileKeysFit = floor_pow2(kBatchTileBytes / (kRowWords * 4) > 64   ? 64
                                        : kBatchTileBytes / (kRowWords * 4) < 1 ? 1
                                                                                : kBatchTileBytes / (kRowWords * 4));
constexpr int kTileKeysF32 = kTileKeysFit < cta_keys_for(4) ? cta_keys_for(4) : kTileKeysFit;
constexpr int kTileKeys = kTileKeysF32 * (4 / (int)sizeof(kiln_t));
constexpr int kCtaKeys = kDecodeWarps * kKeysAbreast;
static_assert(kTileKeys % kCtaKeys == 0, "a tile is whole rounds of the CTA's keys");
constexpr int kTileWords = kTileKeysF32 * kRowWords;  // one K or V tile, in 4-byte words
static_assert(kTileKeys * kNumVecs * (int)sizeof(raw_t) <= kTileWords * 4, "a tile fits its words");
constexpr int kBatchKeysPerLane = kTileKeys / kCtaKeys < 4 ? kTileKeys / kCtaKeys : 4;  // per sub-step
constexpr int kBatchSubSteps = kTileKeys / (kCtaKeys * kBatchKeysPerLane);
// q and acc of every head live in registers: fewer resident CTAs where they are large (more than 4
// heads, or more than 32 floats of q per lane), so that ptxas need not spill.
constexpr int kBatchMinBlocks = kHeadsPerCta <= 4 && kHeadsPerCta * kVecsPerLane * kVec <= 32 ? 4 : 2;

struct alignas(16) BatchSmem {
  unsigned new_k[kRowWords];  // the new key's K row (kiln_t), rotated by the RoPE prologue or copied
  unsigned new_v[kRowWords];  //   from the cache, and its V row
  union {
    unsigned tiles[kBatchStages][2][kTileWords];       // [stage][K, V][key][vector] (raw_t)
    float acc[kDecodeWarps * kHeadsPerCta * HEAD_DIM];  // after the key loop: [warp][head][HEAD_DIM]
  } u;
  float q[kHeadsPerCta * HEAD_DIM];  // [head][HEAD_DIM]
  float m[kDecodeWarps * kHeadsPerCta];
  float l[kDecodeWarps * kHeadsPerCta];
};

#if defined(DECODE_BATCH_SMEM_BYTES)  // the host's mirror (attention_splits.ts decodeBatchSharedBytes)
static_assert(sizeof(BatchSmem) == DECODE_BATCH_SMEM_BYTES, "DECODE_BATCH_SMEM_BYTES is not sizeof(attn::BatchSmem)");
#endif

// FP8 pools (KvFp8): a K (V) stage holds the tile's bytes, then from word kTileScaleWord its kTileKeys
// row scales (0 for the zeros), copied with the bytes; its vectors (kVec bytes) are narrower than 16
// bytes, so they take the plain copy.
constexpr int kTileScaleWord = (kTileKeys * HEAD_DIM + 15) / 16 * 4;
static_assert(kTileScaleWord + kTileKeys <= kTileWords, "an FP8 tile and its scales fit a stage");

// Issues the copies of the tile of keys [base, base + kTileKeys) (those < end, other than `skip`; the
// rest zero-filled) into one stage, all threads; the caller commits the group.
template <class KV>
__device__ __forceinline__ void load_tile(unsigned* stage, const typename KV::elem_t* __restrict__ k_cache,
                                          const typename KV::elem_t* __restrict__ v_cache,
                                          const float* __restrict__ k_scale, const float* __restrict__ v_scale,
                                          const int* table, int table_step, int base, int end, int skip, int kvh) {
  typedef typename KV::vec_t vec_t;
  vec_t* const tk = reinterpret_cast<vec_t*>(stage);
  vec_t* const tv = reinterpret_cast<vec_t*>(stage + kTileWords);
  for (int c = threadIdx.x; c < kTileKeys * kNumVecs; c += kDecodeThreads) {
    const int key = c / kNumVecs;
    const int v = c % kNumVecs;
    const int pos = base + key;
    const bool in = pos < end && pos != skip;
    const size_t off = in ? kv_row(table, table_step, pos, kvh) + (size_t)v * kVec : 0;
    if constexpr (sizeof(vec_t) == 16) {
      cp_async_16(tk + c, k_cache + off, in ? 16 : 0);
      cp_async_16(tv + c, v_cache + off, in ? 16 : 0);
    } else {
      tk[c] = in ? load_kv<KV>(k_cache + off) : zero_kv<KV>();
      tv[c] = in ? load_kv<KV>(v_cache + off) : zero_kv<KV>();
    }
  }
  if constexpr (KV::kFp8) {
    float* const sk = reinterpret_cast<float*>(stage) + kTileScaleWord;
    float* const sv = reinterpret_cast<float*>(stage + kTileWords) + kTileScaleWord;
    for (int key = threadIdx.x; key < kTileKeys; key += kDecodeThreads) {
      const int pos = base + key;
      const bool in = pos < end && pos != skip;
      const size_t row = in ? kv_index(table, table_step, pos, kvh) : 0;
      sk[key] = in ? load_kv_scale<KV>(k_scale, row) : 0.f;
      sv[key] = in ? load_kv_scale<KV>(v_scale, row) : 0.f;
    }
  }
}

template <bool kRope, class KV>
__device__ __forceinline__ void decode_batch(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                                             const typename KV::elem_t* __restrict__ k_cache,
                                             const typename KV::elem_t* __restrict__ v_cache,
                                             const int* __restrict__ context_len, const int* __restrict__ block_tables,
                                             int block_table_stride, int block_table_step, float scale,
                                             int sliding_window, int trigger, int stop, const RopeIn& ri,
                                             const float* __restrict__ k_scale, const float* __restrict__ v_scale) {
  typedef typename KV::vec_t vec_t;
  extern __shared__ __align__(16) unsigned char decode_batch_smem[];
  if (dynamic_smem_bytes() < sizeof(BatchSmem)) __trap();  // the launch must pass sizeof(BatchSmem)
  BatchSmem& sm = *reinterpret_cast<BatchSmem*>(decode_batch_smem);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int kvh = blockIdx.x / kHeadGroups;
  const int h0 = kvh * ATTN_GROUP + (blockIdx.x % kHeadGroups) * kHeadsPerCta;  // first query head
  const int nh = min(kHeadsPerCta, (kvh + 1) * ATTN_GROUP - h0);              // query heads here
  const int s = blockIdx.y;
  const int ctx = context_len[s];
  const int* table = block_tables + (size_t)s * block_table_stride;
  const int lo = sliding_window > 0 ? max(0, ctx - sliding_window) : 0;
  const int new_pos = ctx - 1;  // −1 for a padding row (ctx 0): no new key, no tiles
  const int tiles = ctx > lo ? (ctx - lo + kTileKeys - 1) / kTileKeys : 0;
  auto issue = [&](int t) {  // tile t into stage t % kBatchStages (an empty group past the last tile)
    if (t < tiles) load_tile<KV>(sm.u.tiles[t % kBatchStages][0], k_cache, v_cache, k_scale, v_scale, table,
                                 block_table_step, lo + t * kTileKeys, ctx, new_pos, kvh);
    cp_async_commit();
  };
  // Before the wait (pdl.cuh): the step metadata and keys < ctx − 1, cached by earlier steps.
#pragma unroll
  for (int t = 0; t < kBatchStages - 1; t++) issue(t);
  kiln::rope::Angles an{};  // attention_decode_batch_rope*: the new token's angles, from the step metadata
  if constexpr (kRope) an = kiln::rope::angles(ri.rope, s);

  kiln::pdl_wait();  // q and the new key come from the previous kernel (see pdl.cuh)
  if (trigger == 0) kiln::pdl_launch_dependents();
  if (stop == 1) {  // profiling: let the pre-wait copies land, then leave
    cp_async_wait<0>();
    return;
  }
  if constexpr (kRope) {
    rope_prologue<KV, kDecodeWarps>(q, ri, k_cache, v_cache, k_scale, v_scale, s, kvh, h0, nh, ctx > lo, sm.q, sm.new_k, sm.new_v,
                      an);
  } else {
    for (int i = threadIdx.x; i < kHeadsPerCta * HEAD_DIM; i += kDecodeThreads) {
      const int g = i / HEAD_DIM;
      sm.q[i] = g < nh ? to_float(q[((size_t)s * NUM_HEADS + h0 + g) * HEAD_DIM + i % HEAD_DIM]) : 0.f;
    }
    if (ctx > lo) {  // the new key's rows, written by the kernel before (rope_kv)
      const size_t off = kv_row(table, block_table_step, new_pos, kvh);
      for (int v = threadIdx.x; v < kNumVecs; v += kDecodeThreads) {
        reinterpret_cast<vec_t*>(sm.new_k)[v] = load_kv<KV>(k_cache + off + v * kVec);
        reinterpret_cast<vec_t*>(sm.new_v)[v] = load_kv<KV>(v_cache + off + v * kVec);
      }
      if constexpr (KV::kFp8) {
        if (threadIdx.x == 0) {
          const size_t row = kv_index(table, block_table_step, new_pos, kvh);
          reinterpret_cast<float*>(sm.new_k)[kNewScaleWord] = load_kv_scale<KV>(k_scale, row);
          reinterpret_cast<float*>(sm.new_v)[kNewScaleWord] = load_kv_scale<KV>(v_scale, row);
        }
      }
    }
    __syncthreads();
  }

  const int key_lane = lane / kLanesPerKey;  // which of the keys abreast
  const int vec_lane = lane % kLanesPerKey;  // vectors vec_lane + i * kLanesPerKey of the row
  float qr[kHeadsPerCta][kVecsPerLane][kVec];
#pragma unroll
  for (int g = 0; g < kHeadsPerCta; g++) {
#pragma unroll
    for (int i = 0; i < kVecsPerLane; i++) {
      const int v = vec_lane + i * kLanesPerKey;
      if (v < kNumVecs) {
        load_smem_vec(&sm.q[g * HEAD_DIM + v * kVec], qr[g][i]);
      } else {
#pragma unroll
        for (int e = 0; e < kVec; e++) qr[g][i][e] = 0.f;
      }
    }
  }
  const vec_t* const new_k = reinterpret_cast<const vec_t*>(sm.new_k);
  const vec_t* const new_v = reinterpret_cast<const vec_t*>(sm.new_v);

  const float sl = scale * kExpScale;
  float m[kHeadsPerCta], l[kHeadsPerCta];
  float acc[kHeadsPerCta][kVecsPerLane][kVec];  // this lane's dims of its keys' weighted V sum
#pragma unroll
  for (int g = 0; g < kHeadsPerCta; g++) {
    m[g] = neg_inf();
    l[g] = 0.f;
#pragma unroll
    for (int i = 0; i < kVecsPerLane; i++) {
#pragma unroll
      for (int e = 0; e < kVec; e++) acc[g][i][e] = 0.f;
    }
  }

  for (int t = 0; t < tiles; t++) {
    issue(t + kBatchStages - 1);
    cp_async_wait<kBatchStages - 1>();  // tile t has landed (this thread's copies) …
    __syncthreads();                    // … and every thread's
    const vec_t* const tk = reinterpret_cast<const vec_t*>(sm.u.tiles[t % kBatchStages][0]);
    const vec_t* const tv = reinterpret_cast<const vec_t*>(sm.u.tiles[t % kBatchStages][1]);
    const float* const tks = reinterpret_cast<const float*>(sm.u.tiles[t % kBatchStages][0]) + kTileScaleWord;
    const float* const tvs = reinterpret_cast<const float*>(sm.u.tiles[t % kBatchStages][1]) + kTileScaleWord;
    const int base = lo + t * kTileKeys;
#pragma unroll
    for (int sub = 0; sub < kBatchSubSteps; sub++) {
      float sc[kBatchKeysPerLane][kHeadsPerCta];  // scores, then softmax numerators
#pragma unroll
      for (int k = 0; k < kBatchKeysPerLane; k++) {
        const int idx = ((sub * kBatchKeysPerLane + k) * kDecodeWarps + warp) * kKeysAbreast + key_lane;
        const int pos = base + idx;
        const vec_t* const row = pos == new_pos ? new_k : tk + idx * kNumVecs;
        float rs = 0.f;  // FP8 pools: the row's scale
        if constexpr (KV::kFp8) rs = pos == new_pos ? new_ks(sm) : tks[idx];
        float kf[kVecsPerLane][kVec];
#pragma unroll
        for (int i = 0; i < kVecsPerLane; i++) {
          const int v = vec_lane + i * kLanesPerKey;
          if (v < kNumVecs) {
            unpack_kv<KV>(row[v], rs, kf[i]);
          } else {
#pragma unroll
            for (int e = 0; e < kVec; e++) kf[i][e] = 0.f;
          }
        }
#pragma unroll
        for (int g = 0; g < kHeadsPerCta; g++) {
          float dot = 0.f;
#pragma unroll
          for (int i = 0; i < kVecsPerLane; i++) {
#pragma unroll
            for (int e = 0; e < kVec; e++) dot = fmaf(qr[g][i][e], kf[i][e], dot);
          }
          dot = xor_sum(dot, 1, kLanesPerKey / 2);
          sc[k][g] = pos < ctx ? dot * sl : neg_inf();
        }
      }
      softmax_step(sc, m, l, acc);
#pragma unroll
      for (int k = 0; k < kBatchKeysPerLane; k++) {
        const int idx = ((sub * kBatchKeysPerLane + k) * kDecodeWarps + warp) * kKeysAbreast + key_lane;
        const vec_t* const row = base + idx == new_pos ? new_v : tv + idx * kNumVecs;
        float rs = 0.f;  // FP8 pools: the row's scale
        if constexpr (KV::kFp8) rs = base + idx == new_pos ? new_vs(sm) : tvs[idx];
#pragma unroll
        for (int i = 0; i < kVecsPerLane; i++) {
          const int v = vec_lane + i * kLanesPerKey;
          if (v < kNumVecs) {
            float vf[kVec];
            unpack_kv<KV>(row[v], rs, vf);
#pragma unroll
            for (int g = 0; g < kHeadsPerCta; g++) {
#pragma unroll
              for (int e = 0; e < kVec; e++) acc[g][i][e] = fmaf(sc[k][g], vf[e], acc[g][i][e]);
            }
          }
        }
      }
    }
    __syncthreads();  // every thread is done with this stage before the next issue overwrites it
  }
  cp_async_wait<0>();  // (only empty groups remain) the stages are free: acc reuses them

  if (trigger == 1) kiln::pdl_launch_dependents();
  if (stop >= 2) {  // profiling: keep the key loop's results alive (l is never negative), then leave
    if (l[0] < 0.f) out[0] = from_float(acc[0][0][0]);
    return;
  }

  stash_warp_state(m, l, acc, sm.m, sm.l, sm.u.acc, warp, lane, vec_lane);
  __syncthreads();
  // The warps' merge, an item a thread, as the split kernels merge theirs.
  for (int i = threadIdx.x; i < nh * kAccRowVecs; i += kDecodeThreads) {
    const int g = i / kAccRowVecs;
    const int d = i % kAccRowVecs * kAccVec;
    float mx, sum, a[kAccVec];
    merge_shared<kDecodeWarps>(sm.m + g, sm.l + g, sm.u.acc + g * HEAD_DIM + d, kHeadsPerCta * HEAD_DIM, mx, sum, a);
    store_merged(out + ((size_t)s * NUM_HEADS + h0 + g) * HEAD_DIM + d, sum, a);
  }
}

}  // namespace attn

// The exports' arguments, for pools of ELEM (kiln_t, or unsigned char for the _kv8 kernels, which take
// the row scales k_scale and v_scale at the end: [numBlocks, BLOCK_SIZE, NUM_KV_HEADS] fp32).
#define KILN_DECODE_ARGS_OF(ELEM)                                                                               \
  kiln_t *__restrict__ out, float *__restrict__ partial_acc, float *__restrict__ partial_m,                     \
      float *__restrict__ partial_l, int *__restrict__ split_counter, const kiln_t *__restrict__ q,             \
      const ELEM *__restrict__ k_cache, const ELEM *__restrict__ v_cache,                                       \
      const int *__restrict__ context_len, const int *__restrict__ block_tables, int block_table_stride,        \
      int block_table_step, int num_splits, float scale, int sliding_window, int trigger, int stop
#define KILN_DECODE_ARGS KILN_DECODE_ARGS_OF(kiln_t)
#define KILN_DECODE_PASS                                                                                         \
  out, partial_acc, partial_m, partial_l, split_counter, q, k_cache, v_cache, context_len, block_tables,         \
      block_table_stride, block_table_step, num_splits, scale, sliding_window, trigger, stop
#define KILN_DECODE_ROPE_ARGS_OF(ELEM)                                                                           \
  KILN_DECODE_ARGS_OF(ELEM), const kiln_t *__restrict__ k_new, const kiln_t *__restrict__ v_new, int q_stride,   \
      int kv_stride, const int *__restrict__ positions, const int *__restrict__ slot_mapping,                     \
      const float *__restrict__ inv_freq, const int *__restrict__ inv_freq_index, float attention_scaling,       \
      const kiln_t *__restrict__ q_norm, const kiln_t *__restrict__ k_norm, float norm_eps, int num_slots
#define KILN_DECODE_ROPE_ARGS KILN_DECODE_ROPE_ARGS_OF(kiln_t)
#define KILN_KV8_SCALES const float *__restrict__ k_scale, const float *__restrict__ v_scale
#define KILN_DECODE_ROPE_IN                                                                                      \
  attn::RopeIn {                                                                                                 \
    k_new, v_new, q_stride, kv_stride, {positions, inv_freq, inv_freq_index, attention_scaling}, slot_mapping,   \
        q_norm, k_norm, norm_eps, num_slots                                                                      \
  }

extern "C" __global__ void __launch_bounds__(attn::kSplitThreads, 1) attention_decode(KILN_DECODE_ARGS) {
  attn::decode<1, false, attn::KvPlain, attn::kSplitWarps>(KILN_DECODE_PASS, attn::RopeIn{}, nullptr, nullptr);
}
extern "C" __global__ void __launch_bounds__(attn::kSplitThreads, 1) attention_decode_rope(KILN_DECODE_ROPE_ARGS) {
  attn::decode<1, true, attn::KvPlain, attn::kSplitWarps>(KILN_DECODE_PASS, KILN_DECODE_ROPE_IN, nullptr, nullptr);
}
extern "C" __global__ void __launch_bounds__(attn::kSplitThreads, 1)
    attention_decode_kv8(KILN_DECODE_ARGS_OF(unsigned char), KILN_KV8_SCALES) {
  attn::decode<1, false, attn::KvFp8, attn::kSplitWarps>(KILN_DECODE_PASS, attn::RopeIn{}, k_scale, v_scale);
}
extern "C" __global__ void __launch_bounds__(attn::kSplitThreads, 1)
    attention_decode_rope_kv8(KILN_DECODE_ROPE_ARGS_OF(unsigned char), KILN_KV8_SCALES) {
  attn::decode<1, true, attn::KvFp8, attn::kSplitWarps>(KILN_DECODE_PASS, KILN_DECODE_ROPE_IN, k_scale, v_scale);
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define KILN_DECODE_CLUSTER(C)                                                                                 \
  extern "C" __global__ void __cluster_dims__(1, 1, C) __launch_bounds__(attn::kSplitThreads, 1)               \
      attention_decode_c##C(KILN_DECODE_ARGS) {                                                                \
    attn::decode<C, false, attn::KvPlain, attn::kSplitWarps>(KILN_DECODE_PASS, attn::RopeIn{}, nullptr, nullptr);                 \
  }                                                                                                            \
  extern "C" __global__ void __cluster_dims__(1, 1, C) __launch_bounds__(attn::kSplitThreads, 1)               \
      attention_decode_rope_c##C(KILN_DECODE_ROPE_ARGS) {                                                      \
    attn::decode<C, true, attn::KvPlain, attn::kSplitWarps>(KILN_DECODE_PASS, KILN_DECODE_ROPE_IN, nullptr, nullptr);             \
  }                                                                                                            \
  extern "C" __global__ void __cluster_dims__(1, 1, C) __launch_bounds__(attn::kSplitThreads, 1)               \
      attention_decode_c##C##_kv8(KILN_DECODE_ARGS_OF(unsigned char), KILN_KV8_SCALES) {                       \
    attn::decode<C, false, attn::KvFp8, attn::kSplitWarps>(KILN_DECODE_PASS, attn::RopeIn{}, k_scale, v_scale);                   \
  }                                                                                                            \
  extern "C" __global__ void __cluster_dims__(1, 1, C) __launch_bounds__(attn::kSplitThreads, 1)               \
      attention_decode_rope_c##C##_kv8(KILN_DECODE_ROPE_ARGS_OF(unsigned char), KILN_KV8_SCALES) {             \
    attn::decode<C, true, attn::KvFp8, attn::kSplitWarps>(KILN_DECODE_PASS, KILN_DECODE_ROPE_IN, k_scale, v_scale);               \
  }
KILN_DECODE_CLUSTER(2)
KILN_DECODE_CLUSTER(4)
KILN_DECODE_CLUSTER(8)
#endif

// attention_decode_batch / attention_decode_batch_rope: attention_decode's arguments (the partials,
// counters and num_splits unused: num_splits must be 1), grid (NUM_KV_HEADS * HEAD_GROUPS, S, 1), block
// 128, sizeof(attn::BatchSmem) bytes of dynamic shared memory (attention_splits.ts decodeBatchSharedBytes).
#define KILN_DECODE_BATCH_PASS \
  out, q, k_cache, v_cache, context_len, block_tables, block_table_stride, block_table_step, scale, sliding_window, trigger, stop
extern "C" __global__ void __launch_bounds__(attn::kDecodeThreads, attn::kBatchMinBlocks)
    attention_decode_batch(KILN_DECODE_ARGS) {
  attn::decode_batch<false, attn::KvPlain>(KILN_DECODE_BATCH_PASS, attn::RopeIn{}, nullptr, nullptr);
}
extern "C" __global__ void __launch_bounds__(attn::kDecodeThreads, attn::kBatchMinBlocks)
    attention_decode_batch_rope(KILN_DECODE_ROPE_ARGS) {
  attn::decode_batch<true, attn::KvPlain>(KILN_DECODE_BATCH_PASS, KILN_DECODE_ROPE_IN, nullptr, nullptr);
}
extern "C" __global__ void __launch_bounds__(attn::kDecodeThreads, attn::kBatchMinBlocks)
    attention_decode_batch_kv8(KILN_DECODE_ARGS_OF(unsigned char), KILN_KV8_SCALES) {
  attn::decode_batch<false, attn::KvFp8>(KILN_DECODE_BATCH_PASS, attn::RopeIn{}, k_scale, v_scale);
}
extern "C" __global__ void __launch_bounds__(attn::kDecodeThreads, attn::kBatchMinBlocks)
    attention_decode_batch_rope_kv8(KILN_DECODE_ROPE_ARGS_OF(unsigned char), KILN_KV8_SCALES) {
  attn::decode_batch<true, attn::KvFp8>(KILN_DECODE_BATCH_PASS, KILN_DECODE_ROPE_IN, k_scale, v_scale);
}
