// The CPU backend's kernels: pure fp32 functions over Float32Array, outputs into caller-given arrays.
// They are the reference every CUDA kernel is tested against.

export { act, activationFn, erf, gatedAct, gelu, geluNew, geluTanh, relu, silu } from "./activation.ts";
export { type AttentionSequence, type PagedAttentionArgs, pagedAttention } from "./attention.ts";
export {
  allocFp8KvPool,
  type Fp8KvPool,
  fp8RowScale,
  type KvPool,
  readFp8Slot,
  writeFp8Slot,
} from "./kv_fp8.ts";
export { linear } from "./linear.ts";
export { addRmsNorm, layerNorm, rmsNorm } from "./norm.ts";
export { kvCacheWrite, slotOf } from "./paged_kv.ts";
export { applyRope, type RopeFrequencies, ropeInvFreq } from "./rope.ts";
export { argmax, logSoftmax } from "./sampling_math.ts";
