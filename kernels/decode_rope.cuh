// What the decode attention kernels with a fused RoPE prologue (attention_decode.cu's attention_decode_rope*,
// attention_decode_mma.cu's attention_decode_mma_rope) read to do rope_qkv_fused's work for a decode step
// (rope_kv.cu, rope.cuh: the same arithmetic, so the same bits): the unrotated q|k|v rows of the QKV
// GEMM, the rotation, the optional per-head q/k RMSNorm, and where the new key goes.
#pragma once

#include "rope.cuh"

namespace attn {

struct RopeIn {
  const kiln_t* k;           // row s's unrotated k heads at k + s·kv_stride (q's at q + s·q_stride)
  const kiln_t* v;           // row s's v heads at v + s·kv_stride
  int q_stride, kv_stride;   // elements between rows
  kiln::rope::Params rope;   // positions, inverse frequencies, scaling
  const int* slot_mapping;   // [S] the new key's slot (−1: padding row, not stored)
  const kiln_t* q_norm;      // [HEAD_DIM] per-head q/k RMSNorm weights (Qwen3), or null
  const kiln_t* k_norm;
  float norm_eps;
  int num_slots;             // a slot outside [0, num_slots) is not stored
};

}  // namespace attn
