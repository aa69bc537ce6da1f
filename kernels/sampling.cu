// GPU decoding over a batch of fp32 logits rows [B, VOCAB]: the decoding ops of
// src/runtime/decoding/ops.ts, so no logits cross to the host per step. Reference: cpuDecodingOps in
// src/backends/cpu/decoding.ts (with argmax / logSoftmax of src/backends/cpu/kernels/sampling_math.ts
// and the counter-based generator of src/runtime/decoding/counter_rng.ts). Per-row settings come from
// device arrays [B], so one launch serves a batch with different settings.
//
// Macros:
//   VOCAB         row width of the logits (no dtype macro: logits are fp32)
//
// extern "C" __global__ void add_logit_bias(float* logits /*[B, VOCAB]*/, const float* bias /*[VOCAB]*/, int rows)
//   grid = (min(ceil(rows·VOCAB / 256), 65535)), block = (256): grid-stride, any shape works. fp32 add.
//
// extern "C" __global__ void apply_penalties(
//     float* logits,            // [B, VOCAB], in place
//     const int* tokens,        // [B, max_tokens]: row b's prompt + generated ids in its first token_lens[b]
//     const int* token_lens,    // [B]
//     const int* prompt_lens,   // [B]: presence/frequency count only tokens[prompt_lens[b] .. token_lens[b])
//     const float* repetition,  // [B] HF: l < 0 ? l·p : l/p, once per distinct id of the sequence; 1 = off
//     const float* presence,    // [B] OpenAI: l −= p for ids generated at least once; 0 = off
//     const float* frequency,   // [B] OpenAI: l −= p·count for generated ids; 0 = off
//     int* counts,              // [B, VOCAB] workspace: must be all zero on entry (memset once at
//                               //   allocation); the kernel leaves it all zero again
//     int max_tokens,
//     const int* sampled,       // may be null: the sampled-token buffer of queued steps (the one the
//                               //   embedding reads fed tokens from; written by an earlier step)
//     const int* fed)           // [B], may be null (with sampled): fed[b] ≥ 0 → row b's last list entry
//                               //   (tokens[b][token_lens[b] − 1], a placeholder) is sampled[fed[b]];
//                               //   −1 → the list is complete. Null: every list is complete.
//   grid = (B), block = (1024) (any multiple of 32), shared memory: none.
//   Ids outside [0, VOCAB) are ignored. `sampled` is read only after kiln::pdl_wait().
//
// extern "C" __global__ void ban_tokens(float* logits /*[B, VOCAB]*/, const int* banned /*[B, max_banned]*/,
//                                       int max_banned)
//   logits[b][id] = −∞ for each id of row b's list (−1 or any id outside [0, VOCAB): unused entry);
//   min-length (end ids banned), bad words and no-repeat-ngram bans all arrive this way.
//   grid = (B), block = (128) (any).
//
// extern "C" __global__ void log_softmax(const float* logits /*[B, VOCAB]*/, const float* temperature /*[B]*/,
//                                        const unsigned char* greedy /*[B]*/, float* out /*[B, VOCAB]*/)
//   out = log_softmax(logits / t) with t = greedy ? 1 : temperature (no division when t == 1).
//   grid = (B), block = (1024) (any multiple of 32), shared memory: static, < 1 KB.
//
// extern "C" __global__ void argmax_logprob(const float* logits /*[B, VOCAB]*/, int* out_token /*[B]*/,
//                                           float* out_logprob /*[B]*/)
//   Greedy: the first maximum (torch.argmax; the first NaN wins) and its log-softmax value.
//   grid = (B), block = (1024) (any multiple of 32).
//
// extern "C" __global__ void sample_topk_topp(
//     const float* logits,           // [B, VOCAB] (after bias, penalties and bans)
//     const unsigned char* greedy,   // [B] argmax when 1 (also when top_k == 1)
//     const float* temperature,      // [B] > 0 for sampled rows
//     const int* top_k,              // [B] 0 = off
//     const float* top_p,            // [B] 1 = off
//     const float* min_p,            // [B] 0 = off
//     const double* seed,            // [B] the runtime's Float64Array as is (integers in [0, 2^53))
//     const int* sequence,           // [B]
//     const int* step,               // [B]
//     int* out_token,                // [B]; −1 if launched with a block other than 1024 threads
//     float* out_logprob,            // [B] log-softmax(logits / t)[token], t = greedy ? 1 : temperature
//     SliceStats* partials,          // [B, P] workspace, 24 bytes each: f64 Σ exp | f32 max | f32 argmax
//                                    //   value | i32 argmax id | i32 count ≠ −∞ (unused, may be null, at P = 1)
//     unsigned* counters,            // [B] arrival counts: all zero on entry (memset once at allocation);
//                                    //   the kernel leaves them zero, so a CUDA graph can replay it
//     int slices)                    // P: slices per row
//   grid = (Q, B), block = (1024) exactly, shared memory: ~33 KB static. P = samplingSlices(VOCAB), Q =
//   samplingCtas(P, B, SMs) CTAs per row (src/backends/cuda/sampling_launch.ts); any P ≥ 1 gives the same
//   tokens, any Q the same tokens and (but for fp64 rounding) log-probs. Q < ⌈P / 32⌉: token −1.
//
// The row statistics (max, argmax, count of entries ≠ −∞, log-softmax shift) take P slices per row:
//
//   row b:  [ slice 0 | slice 1 | … | slice P−1 ]   slice p = [p·S, min((p+1)·S, VOCAB)), S = ⌈VOCAB/P⌉
//                                                     rounded up to 32 (trailing slices may be empty)
//
// CTA x reduces slices x·per … x·per + per − 1, per = ⌈P / Q⌉ rounded up to a power of two, with a team
// of 32 / per warps each (a few rows: a CTA a slice, the row over many SMs; many rows: a warp a slice,
// so the launch is a CTA or two per SM rather than waves of CTAs that each reduce 4 K logits). A team
// writes its slice's max m_p, argmax, count and s_p = Σ exp(l/t − m_p/t) (fp64 sum of expf) to
// partials[b][p]; the CTA fences and counts in on counters[b]. The CTA that counts last resets the counter and
// merges in slice order (the same result whichever CTA that is): M = max m_p, Σ = Σ_p s_p·exp(m_p/t − M/t)
// (fp64 exp), shift = M/t + log Σ; then, alone with its 1024 threads, it writes the greedy token or runs
// the draw below over the whole row. Tokens do not depend on P; log-probs differ by a few fp32 ulps.
//
// sample_topk_topp is draw() of decoding.ts: candidates are the ids with a logit ≠ −∞ sorted by logit
// descending, ties by id; keep the first top_k; weights w = exp((l − max) / t) in fp64; keep the
// shortest prefix whose mass Σ w/total reaches top_p; keep the prefix with w ≥ min_p (w of the first
// is 1); u = uniform(seed, sequence, step) · Σ kept w; the token is the first whose running sum of w
// exceeds u (else the last kept). How, without sorting the vocabulary: the sorted order is the order
// of a 64-bit key (order-preserving bits of −logit, then id), so a radix select over the key finds a
// prefix of at most 1024 candidates (a "chunk"; one histogram pass over the row per 10–12 key bits),
// which is gathered into shared memory, bitonic-sorted, weighted and scanned in fp64. The walk stops
// in the first chunk unless the kept set or the draw reaches past its 1024 most likely tokens; then
// it selects the next chunk, after a jump (see "jumping ahead" below) to just before the chunk where the
// top-p mass or the draw's running sum reaches its target. Sums are fp64 but not in the reference's
// sequential order, so a draw can differ from the CPU's only when u lies within ~1e-16 relative of a
// boundary between two tokens.
// Weights of tokens more than 30 nats (at temperature t) below the maximum use fp32 exp in the one
// full-row sum (their total error is < 1e-13 · VOCAB relative to the max's weight).
#include "common.cuh"

#if !defined(VOCAB)
#error "sampling.cu needs VOCAB"
#endif

/** One slice's statistics in sample_topk_topp's partials [B, P]. */
struct SliceStats {
  double sum;        // Σ exp(l/t − max/t) over the slice, fp64 (0 when it has no finite entry)
  float max;         // max logit, NaN ignored (−∞ when none)
  float best_value;  // torch.argmax over the slice: its value
  int best_index;    //   and id (0x7fffffff for an empty slice)
  int valid;         // logits ≠ −∞
};
static_assert(sizeof(SliceStats) == 24, "SLICE_STATS_BYTES in src/backends/cuda/sampling_launch.ts");

namespace {

constexpr int kThreads = 1024;  // sample_topk_topp's block: one chunk element per thread
constexpr int kChunk = 1024;    // candidates sorted at once
constexpr int kMaxBins = 4096;  // widest radix digit: 12 bits

// ---- counter-based generator (counter_rng.ts), bit for bit ------------------------------------------

__device__ __forceinline__ unsigned mix32(unsigned x) {
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}

__device__ __forceinline__ unsigned hash_key(unsigned seed_lo, unsigned seed_hi, unsigned sequence, unsigned step,
                                             unsigned draw, unsigned lane) {
  unsigned h = mix32(seed_lo ^ 0x9e3779b9u);
  h = mix32(h ^ seed_hi);
  h = mix32(h ^ sequence);
  h = mix32(h ^ step);
  h = mix32(h ^ draw);
  return mix32(h ^ lane);
}

/** uniform(seed, sequence, step, 0): a double in [0, 1) with 53 random bits. */
__device__ __forceinline__ double uniform(double seed, int sequence, int step) {
  // JS: seedLo = seed >>> 0, seedHi = floor(seed / 2^32) >>> 0 — the two halves of the 64-bit integer.
  const unsigned long long s = (unsigned long long)seed;
  const unsigned lo32 = (unsigned)s, hi32 = (unsigned)(s >> 32);
  const unsigned hi = hash_key(lo32, hi32, (unsigned)sequence, (unsigned)step, 0u, 1u) >> 5;  // 27 bits
  const unsigned lo = hash_key(lo32, hi32, (unsigned)sequence, (unsigned)step, 0u, 2u) >> 6;  // 26 bits
  return ((double)hi * 67108864.0 + (double)lo) / 9007199254740992.0;
}

// ---- sort keys ----------------------------------------------------------------------------------------

/** Ascending key order = descending logit; −0 and +0 are one value (the reference compares with −). */
__device__ __forceinline__ unsigned desc_key(float x) {
  if (x == 0.0f) x = 0.0f;
  const unsigned b = __float_as_uint(x);
  const unsigned asc = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return ~asc;
}

/** The sorted position's key: logit descending, then id ascending. */
__device__ __forceinline__ unsigned long long key64(float x, int id) {
  return ((unsigned long long)desc_key(x) << 32) | (unsigned)id;
}

// desc_key(−∞) = 0xff800000: keys at or above it are −∞ (excluded from the candidates) or negative NaN.
constexpr unsigned long long kValidEnd = 0xff80000000000000ull;

// ---- row reductions -----------------------------------------------------------------------------------

struct ArgMax {
  float value;
  int index;
};

/** a before b in torch.argmax's choice: the first NaN, else the larger value, else the smaller index. */
__device__ __forceinline__ bool better(ArgMax a, ArgMax b) {
  const bool an = kiln::is_nan(a.value), bn = kiln::is_nan(b.value);
  if (an || bn) return an && bn ? a.index < b.index : an;
  if (a.value != b.value) return a.value > b.value;
  return a.index < b.index;
}

__device__ __forceinline__ ArgMax warp_argmax(ArgMax a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ArgMax b;
    b.value = __shfl_xor_sync(kiln::kFullMask, a.value, o);
    b.index = __shfl_xor_sync(kiln::kFullMask, a.index, o);
    if (better(b, a)) a = b;
  }
  return a;
}

struct RowStats {
  ArgMax best;  // torch.argmax and its value
  float max;    // max over the logits, NaN ignored
  int valid;    // logits ≠ −∞
};

/**
 * A team of consecutive warps that reduces one range together: the whole block (the default), or in
 * sample_topk_topp one of the block's slices. Its threads stride the range by the team's width, so a
 * thread's share and the order of its fp64 sum are those of a block as wide as the team.
 */
struct Team {
  int warps;  // warps in the team (the block's `warps / warps` teams, side by side)
  __device__ static Team block() { return Team{(int)(blockDim.x >> 5)}; }
  __device__ int first_warp() const { return (int)(threadIdx.x >> 5) / warps * warps; }
  __device__ int rank() const { return (int)threadIdx.x - 32 * first_warp(); }
  __device__ int threads() const { return 32 * warps; }
};

/** Reads a team's per-warp partials (lane z: warp z of the team; the others `none`). */
template <class T>
__device__ __forceinline__ T team_gather(const T* per_warp, Team team, T none) {
  const int lane = threadIdx.x & 31;
  return lane < team.warps ? per_warp[team.first_warp() + lane] : none;
}

/** Calls f(i, row[i]) for the elements of row[begin, end) this thread holds in `team`: i = begin + rank,
 * + the team's width, …, in that order, four loads in flight. */
template <class F>
__device__ __forceinline__ void team_for_each(const float* row, int begin, int end, Team team, F&& f) {
  const int stride = team.threads();
  for (int i0 = begin + team.rank(); i0 < end; i0 += 4 * stride) {
    float x[4];
#pragma unroll
    for (int u = 0; u < 4; u++) x[u] = i0 + u * stride < end ? row[i0 + u * stride] : 0.f;
#pragma unroll
    for (int u = 0; u < 4; u++)
      if (i0 + u * stride < end) f(i0 + u * stride, x[u]);
  }
}

/** Statistics of row[begin, end) over `team` (each team its own range; every thread of the block must
 * call it: it syncs the block); an empty range gives max −∞, index 0x7fffffff, count 0. Max, argmax
 * (a total order) and count do not depend on the visiting order. */
__device__ RowStats row_stats(const float* row, int begin = 0, int end = VOCAB, Team team = Team::block()) {
  __shared__ float s_val[32];
  __shared__ int s_idx[32];
  __shared__ float s_max[32];
  __shared__ int s_cnt[32];
  ArgMax best{kiln::neg_inf(), 0x7fffffff};
  float mx = kiln::neg_inf();
  int valid = 0;
  team_for_each(row, begin, end, team, [&](int i, float x) {
    const ArgMax c{x, i};
    if (better(c, best)) best = c;
    mx = fmaxf(mx, x);
    valid += x != kiln::neg_inf();
  });
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  best = warp_argmax(best);
  mx = kiln::warp_max(mx);
  valid = kiln::warp_sum(valid);
  if (lane == 0) {
    s_val[warp] = best.value;
    s_idx[warp] = best.index;
    s_max[warp] = mx;
    s_cnt[warp] = valid;
  }
  __syncthreads();
  ArgMax b{team_gather(s_val, team, kiln::neg_inf()), team_gather(s_idx, team, 0x7fffffff)};
  float m = team_gather(s_max, team, kiln::neg_inf());
  int v = team_gather(s_cnt, team, 0);
  b = warp_argmax(b);
  m = kiln::warp_max(m);
  v = kiln::warp_sum(v);
  __syncthreads();
  return RowStats{b, m, v};
}

/** max/t: the maximum of l/t (division by t > 0 is monotone; none when t == 1, as the reference). */
__device__ __forceinline__ float scaled_max(float max, float t) { return t != 1.0f ? __fdiv_rn(max, t) : max; }

/**
 * Σ exp(l/t − m) over row[begin, end) in fp64 (expf terms), m = scaled_max(max of the range, t), over
 * `team` (as row_stats). Terms with l/t = −∞ add nothing (an exact 0 when m is finite), so a range
 * without a finite entry sums to 0 (NaN when it holds a NaN) and merges as an empty slice. A thread adds
 * its elements in index order (team_for_each).
 */
__device__ double exp_sum(const float* row, int begin, int end, float t, float m, Team team = Team::block()) {
  __shared__ double scratch[32];
  const bool scale = t != 1.0f;
  double sum = 0.0;
  team_for_each(row, begin, end, team, [&](int, float x) {
    const float y = scale ? __fdiv_rn(x, t) : x;
    if (y != kiln::neg_inf()) sum += (double)expf(__fsub_rn(y, m));
  });
  sum = kiln::warp_sum(sum);
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = sum;
  __syncthreads();
  const double r = kiln::warp_sum(team_gather(scratch, team, 0.0));
  __syncthreads();
  return r;
}

/** The log-softmax shift of the row scaled by 1/t: max + log Σ exp(l/t − max), in fp64 (as logSoftmax). */
__device__ double log_softmax_shift(const float* row, float t, float row_max) {
  const float m = scaled_max(row_max, t);
  return (double)m + log(exp_sum(row, 0, VOCAB, t, m));
}

__device__ __forceinline__ float log_prob(const float* row, int token, float t, double shift) {
  const float y = t != 1.0f ? __fdiv_rn(row[token], t) : row[token];
  return (float)((double)y - shift);
}

// ---- one row over P CTAs (sample_topk_topp) -----------------------------------------------------------

/** Slice p of P: [p·S, min((p+1)·S, VOCAB)) with S = ⌈VOCAB/P⌉ rounded up to 32; begin ≥ end when empty. */
__device__ __forceinline__ void slice_range(int p, int P, int& begin, int& end) {
  const int per = ((VOCAB + P - 1) / P + 31) & ~31;
  begin = min(p * per, VOCAB);
  end = min(begin + per, VOCAB);
}

/**
 * Slices of a row each of sample_topk_topp's `ctas` CTAs per row reduces, a team of warps each:
 * ⌈P / ctas⌉ rounded up to a power of two (teams of whole warps); 0 when that is more than a block's
 * warps (the launch is refused). CTA x takes slices x·per … x·per + per − 1 (those < P).
 */
__device__ __forceinline__ int slices_per_cta(int P, int ctas) {
  int per = 1;
  while (per * ctas < P) per <<= 1;
  return per <= kThreads / 32 ? per : 0;
}

/**
 * Counts this CTA in on `counter` (n CTAs in all); true in the last one, which resets the counter to 0
 * for the next launch. Every CTA fences its writes before counting and the last one after, so the last
 * one sees what all of them wrote before the call.
 */
__device__ bool last_to_arrive(unsigned* counter, int n) {
  __shared__ int s_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const bool last = atomicAdd(counter, 1u) == (unsigned)(n - 1);
    if (last) *counter = 0;  // every CTA of the row has counted
    __threadfence();
    s_last = last;
  }
  __syncthreads();
  return s_last;
}

/**
 * The row's statistics and log-softmax shift from its P slices, read from L2 (__ldcg). Warp 0 merges in
 * slice order (lane z takes slices z, z + 32, …, then a fixed butterfly), so the result does not depend
 * on which CTA merges: M = max m_p, shift = M/t + log Σ_p s_p·exp(m_p/t − M/t) in fp64. A slice whose
 * scaled max equals M/t adds s_p as is (this also keeps −∞ − −∞ out of exp); one without a finite
 * entry adds s_p·0 = 0. Every thread gets the result.
 */
__device__ void merge_slices(const SliceStats* parts, int P, float t, RowStats& st, double& shift) {
  __shared__ RowStats s_st;
  __shared__ double s_shift;
  if (threadIdx.x < kiln::kWarp) {
    const int lane = threadIdx.x;
    ArgMax best{kiln::neg_inf(), 0x7fffffff};
    float mx = kiln::neg_inf();
    int valid = 0;
    for (int z = lane; z < P; z += kiln::kWarp) {
      const ArgMax c{__ldcg(&parts[z].best_value), __ldcg(&parts[z].best_index)};
      if (better(c, best)) best = c;
      mx = fmaxf(mx, __ldcg(&parts[z].max));
      valid += __ldcg(&parts[z].valid);
    }
    best = warp_argmax(best);
    mx = kiln::warp_max(mx);
    valid = kiln::warp_sum(valid);
    const float m = scaled_max(mx, t);
    double total = 0.0;
    for (int z = lane; z < P; z += kiln::kWarp) {
      const float mz = scaled_max(__ldcg(&parts[z].max), t);
      const double sz = __ldcg(&parts[z].sum);
      total += mz == m ? sz : sz * exp((double)mz - (double)m);
    }
    total = kiln::warp_sum(total);
    if (lane == 0) {
      s_st = RowStats{best, mx, valid};
      s_shift = (double)m + log(total);
    }
  }
  __syncthreads();
  st = s_st;
  shift = s_shift;
}

// ---- block scans (blockDim.x == 1024 in the sampler) --------------------------------------------------

__device__ __forceinline__ double block_inclusive_scan(double v, double* warp_tot) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double n = __shfl_up_sync(kiln::kFullMask, v, o);
    if (lane >= o) v += n;
  }
  if (lane == 31) warp_tot[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double t = lane < warps ? warp_tot[lane] : 0.0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double n = __shfl_up_sync(kiln::kFullMask, t, o);
      if (lane >= o) t += n;
    }
    if (lane < warps) warp_tot[lane] = t;
  }
  __syncthreads();
  if (warp > 0) v += warp_tot[warp - 1];
  __syncthreads();
  return v;
}

template <typename T>  // int or unsigned long long: exact
__device__ __forceinline__ T block_exclusive_scan(T v, T* warp_tot) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  T inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T n = __shfl_up_sync(kiln::kFullMask, inc, o);
    if (lane >= o) inc += n;
  }
  if (lane == 31) warp_tot[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    T t = lane < warps ? warp_tot[lane] : T(0);
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const T n = __shfl_up_sync(kiln::kFullMask, t, o);
      if (lane >= o) t += n;
    }
    if (lane < warps) warp_tot[lane] = t;
  }
  __syncthreads();
  const T excl = inc - v + (warp > 0 ? warp_tot[warp - 1] : T(0));
  __syncthreads();
  return excl;
}

// ---- the sampler's shared state -----------------------------------------------------------------------

constexpr int kWeightBins = 1024;  // weighted radix select (jump): 10-bit digits, one bin per thread

struct SamplerShared {
  int hist[kMaxBins];                // radix histogram, then its inclusive prefix
  unsigned long long keys[kChunk];   // the current chunk, sorted
  double prefix[kChunk];             // inclusive prefix sums of the chunk's weights
  unsigned long long whist[kWeightBins];  // jump: fixed-point weight per bin
  double dtot[32];
  unsigned long long utot[32];
  int itot[32];
  int count;
  unsigned long long broadcast;
};

/** Keys in the candidate range: valid, above the last chunk (lo, when has_lo), at most hi. */
__device__ __forceinline__ bool in_range(unsigned long long k, bool has_lo, unsigned long long lo,
                                         unsigned long long hi) {
  return k <= hi && (!has_lo || k > lo);
}

/**
 * Calls f(i, row[i]) for every i in [0, VOCAB) this thread owns (in no particular order): the full-row
 * passes of the one CTA that draws. 16-byte loads, kRowUnroll of them in flight per thread, so the CTA
 * keeps 32 KB of the row in flight rather than 4 KB (a few percent faster than one element per thread:
 * docs/PERFORMANCE.md). Everything the passes compute from it is order-free (integer histograms, a set
 * of keys sorted later) or a per-thread fp64 sum, whose order is fixed by the thread's share.
 */
template <class F>
__device__ __forceinline__ void for_each_logit(const float* row, F&& f) {
  if constexpr (VOCAB % 4 == 0) {  // rows of VOCAB floats: each 16-byte aligned
    constexpr int kRowUnroll = 2;
    constexpr int kVecs = VOCAB / 4;
    const float4* r4 = reinterpret_cast<const float4*>(row);
    const int stride = blockDim.x;
    int v = threadIdx.x;
    for (; v + (kRowUnroll - 1) * stride < kVecs; v += kRowUnroll * stride) {
      float4 q[kRowUnroll];
#pragma unroll
      for (int u = 0; u < kRowUnroll; u++) q[u] = r4[v + u * stride];
#pragma unroll
      for (int u = 0; u < kRowUnroll; u++) {
        const int i = 4 * (v + u * stride);
        f(i, q[u].x);
        f(i + 1, q[u].y);
        f(i + 2, q[u].z);
        f(i + 3, q[u].w);
      }
    }
    for (; v < kVecs; v += stride) {
      const float4 q = r4[v];
      f(4 * v, q.x);
      f(4 * v + 1, q.y);
      f(4 * v + 2, q.z);
      f(4 * v + 3, q.w);
    }
  } else {
    for (int i = threadIdx.x; i < VOCAB; i += blockDim.x) f(i, row[i]);
  }
}

/**
 * hist[bin] += 1, and whist[bin] += w when kWeighted, for a bin ≥ 0 (bin < 0: nothing).
 */
template <bool kWeighted>
__device__ __forceinline__ void hist_add(int bin, unsigned long long w, int* hist, unsigned long long* whist) {
  if (bin < 0) return;
  if constexpr (kWeighted) atomicAdd(&whist[bin], w);
  atomicAdd(&hist[bin], 1);
}

/**
 * A histogram pass: for_each_logit's loop, calling f(i, x) for each element this thread owns, where f
 * returns the element's bin (< 0: none) and its weight, added by hist_add.
 */
template <bool kWeighted, class F>
__device__ __forceinline__ void histogram_pass(const float* row, int* hist, unsigned long long* whist, F&& f) {
  for_each_logit(row, [&](int i, float x) {
    unsigned long long w = 0ull;
    hist_add<kWeighted>(f(i, x, w), w, hist, whist);
  });
}

struct Selection {
  unsigned long long tau;  // candidates in (lo, tau] ∩ range
  int count;
};

/**
 * Radix select: a key tau such that the number of candidates (lo, tau] is in [need_min, need_max]
 * (all candidates when fewer than need_min). hi < kValidEnd. Block-uniform; one row pass per digit.
 */
__device__ Selection select_prefix(const float* row, bool has_lo, unsigned long long lo, unsigned long long hi,
                                   int need_min, int need_max, SamplerShared& sm) {
  const int shifts[6] = {52, 42, 32, 20, 10, 0};
  const int widths[6] = {12, 10, 10, 12, 10, 10};
  unsigned long long prefix = 0, prefix_mask = 0;
  int base = 0;  // candidates below the current prefix, already counted
  for (int level = 0; level < 6; level++) {
    const int shift = shifts[level], width = widths[level];
    const int bins = 1 << width;
    for (int b = threadIdx.x; b < bins; b += blockDim.x) sm.hist[b] = 0;
    __syncthreads();
    histogram_pass<false>(row, sm.hist, nullptr, [&](int i, float x, unsigned long long&) {
      const unsigned long long k = key64(x, i);
      if (!(in_range(k, has_lo, lo, hi) && (k & prefix_mask) == prefix)) return -1;
      return (int)((k >> shift) & (unsigned long long)(bins - 1));
    });
    __syncthreads();
    // Inclusive prefix over the bins: each thread owns `per` consecutive bins.
    const int per = (bins + blockDim.x - 1) / blockDim.x;
    const int first = threadIdx.x * per;
    int mine = 0;
    for (int j = 0; j < per; j++)
      if (first + j < bins) mine += sm.hist[first + j];
    int run = block_exclusive_scan(mine, sm.itot);
    int fits = 0;  // bins whose cumulative count stays within need_max
    for (int j = 0; j < per; j++) {
      if (first + j < bins) {
        run += sm.hist[first + j];
        sm.hist[first + j] = run;
        fits += base + run <= need_max;
      }
    }
    __syncthreads();
    const int last = kiln::block_sum(fits, sm.itot) - 1;  // largest bin with base + cum ≤ need_max, or −1
    const int total = sm.hist[bins - 1];
    const int cum = last >= 0 ? sm.hist[last] : 0;
    __syncthreads();
    if (level == 0 && base + total < need_min) return Selection{hi, base + total};
    if (last >= 0 && base + cum >= need_min) {
      const unsigned long long low_ones = shift == 0 ? 0ull : ((1ull << shift) - 1ull);
      unsigned long long tau = prefix | ((unsigned long long)last << shift) | low_ones;
      if (tau > hi) tau = hi;
      return Selection{tau, base + cum};
    }
    // Descend into the first bin that overflows need_max.
    base += cum;
    prefix |= (unsigned long long)(last + 1) << shift;
    prefix_mask |= (unsigned long long)(bins - 1) << shift;
  }
  return Selection{hi, base};  // not reached: bins of the last digit hold one key each
}

/** Gathers the candidates (lo, tau] (at most kChunk) into sm.keys and sorts them; returns their number. */
__device__ int gather_chunk(const float* row, bool has_lo, unsigned long long lo, unsigned long long tau,
                            SamplerShared& sm) {
  if (threadIdx.x == 0) sm.count = 0;
  __syncthreads();
  for_each_logit(row, [&](int i, float x) {
    const unsigned long long k = key64(x, i);
    if (in_range(k, has_lo, lo, tau)) {
      const int s = atomicAdd(&sm.count, 1);
      if (s < kChunk) sm.keys[s] = k;
    }
  });
  __syncthreads();
  const int n = min(sm.count, kChunk);
  for (int j = threadIdx.x; j < kChunk; j += blockDim.x)
    if (j >= n) sm.keys[j] = ~0ull;
  __syncthreads();
  // Bitonic sort, ascending (the slot order above depends on timing; the sorted order does not).
  for (int size = 2; size <= kChunk; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < kChunk; i += blockDim.x) {
        const int j = i ^ stride;
        if (j > i) {
          const unsigned long long a = sm.keys[i], b = sm.keys[j];
          const bool ascending = (i & size) == 0;
          if ((a > b) == ascending) {
            sm.keys[i] = b;
            sm.keys[j] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  return n;
}

/** Where a walk over the sorted candidates stands: chunks before the current one are summed up. */
struct Walk {
  bool has_lo;
  unsigned long long lo;  // last key of the previous chunk
  int pos;                // candidates before the current chunk
  double acc;             // Σ w before the current chunk
  double mass;            // Σ w/total before the current chunk (top-p)
};

struct Row {
  const float* logits;
  unsigned long long hi;  // last candidate key (top-k)
  int size;               // candidates (top-k set)
  double max;             // the largest logit
  double t;               // temperature
};

/**
 * Loads the chunk after `w` into shared memory: sorted keys, and each thread j < n gets its weight in
 * `wj` and sm.prefix[j] = Σ_{i ≤ j} w_i of the chunk. Returns n (0 when the candidates are exhausted).
 */
__device__ int load_chunk(const Row& r, const Walk& w, SamplerShared& sm, double& wj) {
  unsigned long long tau = r.hi;
  if (!(w.pos == 0 && r.size <= kChunk)) tau = select_prefix(r.logits, w.has_lo, w.lo, r.hi, 1, kChunk, sm).tau;
  const int n = gather_chunk(r.logits, w.has_lo, w.lo, tau, sm);
  const int j = threadIdx.x;
  wj = 0.0;
  if (j < n) wj = exp(((double)r.logits[(int)(sm.keys[j] & 0xffffffffull)] - r.max) / r.t);
  sm.prefix[j] = block_inclusive_scan(wj, sm.dtot);
  __syncthreads();
  return n;
}

__device__ __forceinline__ void advance(Walk& w, const SamplerShared& sm, int n, double mass_in_chunk) {
  w.has_lo = true;
  w.lo = sm.keys[n - 1];
  w.pos += n;
  w.acc += sm.prefix[n - 1];
  w.mass += mass_in_chunk;
}

__device__ __forceinline__ int key_id(unsigned long long k) { return (int)(k & 0xffffffffull); }

/** w of logit x in the full-row passes: fp64 exp, or fp32 for weights below e^-30 of the largest. */
__device__ __forceinline__ double row_weight(const Row& r, float x, float row_max, float inv_t) {
  const float approx = (x - row_max) * inv_t;
  return approx > -30.0f ? exp(((double)x - r.max) / r.t) : (double)expf(approx);
}

/** Σ w over the candidates, and over those with w ≥ min_p (with their count): one pass, fp64. */
__device__ void total_pass(const Row& r, float row_max, double min_p, double& total, double& total_min_p,
                           int& count_min_p, SamplerShared& sm) {
  const float inv_t = (float)(1.0 / r.t);
  double s = 0.0, sm_p = 0.0;
  int c = 0;
  for_each_logit(r.logits, [&](int i, float x) {
    if (!in_range(key64(x, i), false, 0, r.hi)) return;
    const double wi = row_weight(r, x, row_max, inv_t);
    s += wi;
    if (min_p > 0.0 && wi >= min_p) {
      sm_p += wi;
      c++;
    }
  });
  total = kiln::block_sum(s, sm.dtot);
  total_min_p = kiln::block_sum(sm_p, sm.dtot);
  count_min_p = kiln::block_sum(c, sm.itot);
}

// ---- jumping ahead (a top-p cut or a draw deep in a flat distribution) ---------------------------------
// A walk costs a radix select over the row per chunk of 1,024 candidates, so a top-p cut or a draw that
// lands tens of thousands of candidates deep would take thousands of row passes (milliseconds). A jump
// finds where the cumulative weight reaches the target with a weighted radix select — fixed-point sums of
// the passes' fp64 weights, off by at most 2^-40 per candidate — and starts the walk at a key lo whose
// cumulative weight is below the target by more than that bound. One more pass gives the exact (fp64)
// mass and count of the candidates up to lo; the walk's own arithmetic is unchanged. If the exact mass is
// not below the target (the bound failed), the walk starts from the beginning as before.

constexpr double kFixScale = 1099511627776.0;  // 2^40: a weight ≤ 1 in fixed point; a row's Σ < 2^57

/**
 * A key lo, as high as the digit bins resolve, such that the candidates (keys ≤ r.hi) at or below lo have
 * fixed-point cumulative weight ≤ target; false when no bin's does. Stops descending once the bin that
 * crosses the target holds at most kChunk candidates (the walk from lo then crosses it in one chunk).
 */
__device__ bool weighted_floor(const Row& r, float row_max, unsigned long long target, unsigned long long& lo,
                               SamplerShared& sm) {
  const int shifts[7] = {54, 44, 34, 24, 14, 4, 0};
  const int widths[7] = {10, 10, 10, 10, 10, 10, 4};
  const float inv_t = (float)(1.0 / r.t);
  unsigned long long prefix = 0, prefix_mask = 0, base = 0;  // base: weight of the candidates below prefix
  bool found = false;
  for (int level = 0; level < 7; level++) {
    const int shift = shifts[level], bins = 1 << widths[level];
    for (int b = threadIdx.x; b < bins; b += blockDim.x) {
      sm.whist[b] = 0ull;
      sm.hist[b] = 0;
    }
    __syncthreads();
    histogram_pass<true>(r.logits, sm.hist, sm.whist, [&](int i, float x, unsigned long long& w) {
      const unsigned long long k = key64(x, i);
      if (!(k <= r.hi && (k & prefix_mask) == prefix)) return -1;
      w = (unsigned long long)(row_weight(r, x, row_max, inv_t) * kFixScale);
      return (int)((k >> shift) & (unsigned long long)(bins - 1));
    });
    __syncthreads();
    const int j = threadIdx.x;  // one bin per thread (bins ≤ kWeightBins ≤ blockDim.x)
    const unsigned long long wv = j < bins ? sm.whist[j] : 0ull;
    const unsigned long long cum = block_exclusive_scan(wv, sm.utot) + wv;  // inclusive, non-decreasing
    const int last = kiln::block_sum(j < bins && base + cum <= target ? 1 : 0, sm.itot) - 1;  // fitting bins: [0, last]
    if (j == last) sm.broadcast = cum;
    __syncthreads();
    if (last >= 0) {
      lo = prefix | ((unsigned long long)last << shift) | (shift == 0 ? 0ull : (1ull << shift) - 1ull);
      found = true;
    }
    if (last == bins - 1) break;  // every bin fits: nothing left to descend into
    const int d = last + 1;       // the bin that crosses the target
    const int d_count = sm.hist[d];
    if (last >= 0) base += sm.broadcast;
    prefix |= (unsigned long long)d << shift;
    prefix_mask |= (unsigned long long)(bins - 1) << shift;
    __syncthreads();  // every thread has read the bins before the next level clears them
    if (d_count <= kChunk) break;
  }
  return found;
}

/** Σ w (fp64, as total_pass weighs) and the number of the candidates with key ≤ lo: one pass. */
__device__ void mass_upto(const Row& r, float row_max, unsigned long long lo, double& mass, int& count,
                          SamplerShared& sm) {
  const float inv_t = (float)(1.0 / r.t);
  const unsigned long long top = lo < r.hi ? lo : r.hi;
  double s = 0.0;
  int c = 0;
  for_each_logit(r.logits, [&](int i, float x) {
    if (key64(x, i) > top) return;
    s += row_weight(r, x, row_max, inv_t);
    c++;
  });
  mass = kiln::block_sum(s, sm.dtot);
  count = kiln::block_sum(c, sm.itot);
}

/**
 * Moves walk w from the start to just below the first candidate whose cumulative weight reaches `target`
 * (Σ w, total = Σ over all candidates), when that lies at least a chunk in; otherwise w stays at the start.
 */
__device__ void jump(const Row& r, float row_max, double target, double total, Walk& w, SamplerShared& sm) {
  const double bound = (double)VOCAB / kFixScale + 1e-12 * total;  // fixed-point truncation, fp64 rounding
  const double t_fix = (target - 2.0 * bound) * kFixScale;
  if (!(t_fix >= 1.0)) return;
  unsigned long long lo = 0ull;
  if (!weighted_floor(r, row_max, (unsigned long long)t_fix, lo, sm)) return;
  double mass;
  int count;
  mass_upto(r, row_max, lo, mass, count, sm);
  if (count < kChunk || !(mass < target)) return;
  w = Walk{true, lo, count, mass, mass / total};
}

/** draw() of decoding.ts for one row with at least one candidate. */
__device__ int draw(const Row& r, float row_max, double top_p, double min_p, double u, SamplerShared& sm) {
  const int j = threadIdx.x;
  const bool single = r.size <= kChunk;  // the whole top-k set is the first chunk
  Walk w{false, 0ull, 0, 0.0, 0.0};
  double wj = 0.0;
  int n = 0;
  bool loaded = false;  // sm holds the first chunk
  int keep;             // kept candidates (a prefix of the sorted order)
  double total_keep;    // their Σ w
  double total = 0.0;   // Σ w of all candidates (the deep cases: r.size > kChunk)

  if (single) {
    n = load_chunk(r, w, sm, wj);
    loaded = true;
    const double total = sm.prefix[n - 1];
    // top-p on Σ w/total, then min-p on w: both cut the sorted order, so the kept set is a prefix.
    const double q = block_inclusive_scan(j < n ? wj / total : 0.0, sm.dtot);
    int cut = n;
    if (j < n) {
      if (min_p > 0.0 && wj < min_p) cut = j;
      else if (top_p < 1.0 && q >= top_p) cut = j + 1;
    }
    keep = max(kiln::block_min(cut, sm.itot), 1);
    total_keep = sm.prefix[keep - 1];
  } else {
    double total_min_p;
    int count_min_p;
    total_pass(r, row_max, min_p, total, total_min_p, count_min_p, sm);
    if (top_p >= 1.0) {
      keep = min_p > 0.0 ? count_min_p : r.size;
      total_keep = min_p > 0.0 ? total_min_p : total;
    } else {
      keep = r.size;
      total_keep = 0.0;
      jump(r, row_max, top_p * total, total, w, sm);
      if (min_p > 0.0 && w.pos > count_min_p) {
        // w only moves when its candidates' mass stays below the top-p cut, so the min-p cut (w falls
        // below min_p after count_min_p candidates) comes first.
        keep = count_min_p;
        total_keep = total_min_p;
        w.pos = r.size;  // no walk
      }
      while (w.pos < r.size) {
        n = load_chunk(r, w, sm, wj);
        loaded = w.pos == 0;
        if (n == 0) break;
        const double q = block_inclusive_scan(j < n ? wj / total : 0.0, sm.dtot);
        int cut = 0x7fffffff;
        if (j < n) {
          if (min_p > 0.0 && wj < min_p) cut = j;
          else if (w.mass + q >= top_p) cut = j + 1;
        }
        cut = kiln::block_min(cut, sm.itot);
        if (cut != 0x7fffffff) {
          keep = w.pos + cut;
          total_keep = w.acc + (cut > 0 ? sm.prefix[cut - 1] : 0.0);
          break;
        }
        const double chunk_mass = kiln::block_sum(j == n - 1 ? q : 0.0, sm.dtot);
        advance(w, sm, n, chunk_mass);
        total_keep = w.acc;
      }
    }
    if (keep < 1) keep = 1;
  }

  // The draw: the first kept candidate whose running Σ w exceeds c, else the last kept one.
  const double c = u * total_keep;
  Walk b{false, 0ull, 0, 0.0, 0.0};
  if (keep > kChunk) {
    jump(r, row_max, c, total, b, sm);
    if (b.pos >= keep) b = Walk{false, 0ull, 0, 0.0, 0.0};
  }
  while (true) {
    if (!(b.pos == 0 && loaded)) n = load_chunk(r, b, sm, wj);
    if (n == 0) return -1;  // not reached: keep ≤ candidates
    const int limit = min(n, keep - b.pos);  // kept candidates in this chunk
    const int hit = kiln::block_min(j < limit && c < b.acc + sm.prefix[j] ? j : 0x7fffffff, sm.itot);
    if (hit != 0x7fffffff) return key_id(sm.keys[hit]);
    if (b.pos + n >= keep) return key_id(sm.keys[limit - 1]);
    advance(b, sm, n, 0.0);
  }
}

}  // namespace

extern "C" __global__ void add_logit_bias(float* logits, const float* bias, int rows) {
  kiln::pdl_wait();  // logits come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const long long total = (long long)rows * VOCAB;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    logits[i] = __fadd_rn(logits[i], bias[i % VOCAB]);
  }
}

extern "C" __global__ void apply_penalties(float* logits, const int* tokens, const int* token_lens,
                                           const int* prompt_lens, const float* repetition, const float* presence,
                                           const float* frequency, int* counts, int max_tokens, const int* sampled,
                                           const int* fed) {
  kiln::pdl_wait();  // logits come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int b = blockIdx.x;
  const float rep = repetition[b], pres = presence[b], freq = frequency[b];
  if (rep == 1.0f && pres == 0.0f && freq == 0.0f) return;  // the reference's no-op (also for NaN-free rows)
  float* row = logits + (long long)b * VOCAB;
  int* cnt = counts + (long long)b * VOCAB;
  const int* ids = tokens + (long long)b * max_tokens;
  const int len = min(token_lens[b], max_tokens);
  const int plen = max(0, prompt_lens[b]);
  // The list's last entry, fed from an earlier step's sampled token (its host copy is a placeholder).
  const int from = (sampled != nullptr && fed != nullptr) ? fed[b] : -1;
  const int last = (from >= 0 && len > 0) ? sampled[from] : 0;
  auto id_at = [&](int i) { return (from >= 0 && i == len - 1) ? last : ids[i]; };
  constexpr int kClaimed = 0x40000000;  // count bit: the id's logit has been updated
  // 1. Occurrences among the generated ids.
  for (int i = plen + threadIdx.x; i < len; i += blockDim.x) {
    const int t = id_at(i);
    if (t >= 0 && t < VOCAB) atomicAdd(&cnt[t], 1);
  }
  __syncthreads();
  // 2. Once per distinct id of the sequence: the first thread to set the claim bit updates the logit,
  //    repetition first, then presence/frequency as l − (p + f·n) in fp64 rounded once (the reference).
  for (int i = threadIdx.x; i < len; i += blockDim.x) {
    const int t = id_at(i);
    if (t < 0 || t >= VOCAB) continue;
    const int old = atomicOr(&cnt[t], kClaimed);
    if (old & kClaimed) continue;
    float v = row[t];
    if (rep != 1.0f) v = v < 0.0f ? __fmul_rn(v, rep) : __fdiv_rn(v, rep);
    const int n = old & (kClaimed - 1);
    if (n > 0 && (pres != 0.0f || freq != 0.0f)) {
      v = (float)((double)v - ((double)pres + (double)freq * (double)n));
    }
    row[t] = v;
  }
  __syncthreads();
  // 3. Leave the workspace zero for the next call.
  for (int i = threadIdx.x; i < len; i += blockDim.x) {
    const int t = id_at(i);
    if (t >= 0 && t < VOCAB) cnt[t] = 0;
  }
}

extern "C" __global__ void ban_tokens(float* logits, const int* banned, int max_banned) {
  kiln::pdl_wait();  // logits come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int b = blockIdx.x;
  const int* list = banned + (long long)b * max_banned;
  for (int i = threadIdx.x; i < max_banned; i += blockDim.x) {
    const int id = list[i];
    if (id >= 0 && id < VOCAB) logits[(long long)b * VOCAB + id] = kiln::neg_inf();
  }
}

extern "C" __global__ void log_softmax(const float* logits, const float* temperature, const unsigned char* greedy,
                                       float* out) {
  kiln::pdl_wait();  // logits come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int b = blockIdx.x;
  const float* row = logits + (long long)b * VOCAB;
  float* dst = out + (long long)b * VOCAB;
  const float t = greedy[b] ? 1.0f : temperature[b];
  const RowStats st = row_stats(row);
  const double shift = log_softmax_shift(row, t, st.max);
  for (int i = threadIdx.x; i < VOCAB; i += blockDim.x) dst[i] = log_prob(row, i, t, shift);
}

extern "C" __global__ void argmax_logprob(const float* logits, int* out_token, float* out_logprob) {
  kiln::pdl_wait();  // logits come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int b = blockIdx.x;
  const float* row = logits + (long long)b * VOCAB;
  const RowStats st = row_stats(row);
  const double shift = log_softmax_shift(row, 1.0f, st.max);
  if (threadIdx.x == 0) {
    out_token[b] = st.best.index;
    out_logprob[b] = log_prob(row, st.best.index, 1.0f, shift);
  }
}

extern "C" __global__ void __launch_bounds__(kThreads)
    sample_topk_topp(const float* logits, const unsigned char* greedy, const float* temperature, const int* top_k,
                     const float* top_p, const float* min_p, const double* seed, const int* sequence, const int* step,
                     int* out_token, float* out_logprob, SliceStats* partials, unsigned* counters, int slices) {
  __shared__ SamplerShared sm;
  kiln::pdl_wait();  // logits come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int b = blockIdx.y, P = slices, per = slices_per_cta(P, gridDim.x);
  if (blockDim.x != kThreads || per == 0) {
    if (blockIdx.x == 0 && threadIdx.x == 0) out_token[b] = -1;
    return;
  }
  const float* row = logits + (long long)b * VOCAB;
  const bool is_greedy = greedy[b] != 0;
  const float t = is_greedy ? 1.0f : temperature[b];
  const Team team{kThreads / 32 / per};
  const int p = blockIdx.x * per + (int)(threadIdx.x >> 5) / team.warps;  // this team's slice (≥ P: none)
  int begin, end;
  slice_range(p, P, begin, end);
  RowStats st = row_stats(row, begin, end, team);
  const float m = scaled_max(st.max, t);
  const double sum = exp_sum(row, begin, end, t, m, team);
  double shift = (double)m + log(sum);  // the whole row's when P == 1 (CTA 0's one team)
  if (P == 1) {
    if (blockIdx.x > 0) return;
  } else {
    SliceStats* parts = partials + (long long)b * P;  // [P] of row b
    if (team.rank() == 0 && p < P) parts[p] = SliceStats{sum, st.max, st.best.value, st.best.index, st.valid};
    if (!last_to_arrive(counters + b, gridDim.x)) return;
    merge_slices(parts, P, t, st, shift);
  }

  int token = st.best.index;
  if (!is_greedy && top_k[b] != 1 && st.valid > 0) {
    const int k = top_k[b];
    Row r{row, kValidEnd - 1, st.valid, (double)st.max, (double)t};
    if (k > 0 && k < st.valid) {
      r.size = k;
      r.hi = select_prefix(row, false, 0ull, kValidEnd - 1, k, k, sm).tau;
    }
    token = draw(r, st.max, (double)top_p[b], (double)min_p[b], uniform(seed[b], sequence[b], step[b]), sm);
  }
  if (threadIdx.x == 0) {
    out_token[b] = token;
    out_logprob[b] = log_prob(row, token, t, shift);
  }
}
