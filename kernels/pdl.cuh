// Programmatic dependent launch (PDL): the two grid-dependency controls every kiln kernel uses.
// Included by common.cuh and attention_common.cuh. Device code only (NVRTC).
//
// On sm_90+ the runtime launches kiln's kernels with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
// (src/backends/cuda/device/module.ts), so a kernel may start while the kernel before it on the stream
// is still draining. The rule every `extern "C" __global__` kernel follows:
//   1. kiln::pdl_wait() before the first read of any buffer an earlier kernel may write (activations,
//      KV cache, step metadata, logits), before the first global write (the activation arena reuses
//      buffers: a write could land before an earlier kernel's read), and before any `return`, so every
//      CTA waits. The wait returns once the previous grid has completed and its writes are visible; a
//      CTA that exited without waiting would let this grid complete before its predecessor, and the
//      next kernel, which waits only for this one, would read unfinished data.
//   2. kiln::pdl_launch_dependents() after the wait: the next kernel may be scheduled (it waits too).
//      One exception, rope_kv.cu's early_trigger (decode steps, KILN_ROPE_TRIGGER=early): it triggers
//      before its wait, so the decode attention after it may run its pre-wait loads while the kernel two
//      places back (the QKV GEMV) still runs; those loads read only the step metadata and the K/V rows of
//      earlier steps, which no kernel of the step writes.
//   A thread's own local memory (spills, local arrays: cosf's large-argument reduction) is private and may
//   be used anywhere. Before the wait a kernel may read only what was written before the kernel ahead of it
//   began: weights and other constants (gemv.cu's weight prefetch, rmsnorm.cu's weight vector), and, since
//   the kernel ahead (a kiln kernel, rule 2) triggers only after its own wait, everything written by kernels
//   two or more places back and by copies earlier on the stream (attention_decode.cu reads the step metadata
//   and the K/V rows cached by earlier steps before its wait, attention_decode_batch* by cp.async into
//   shared memory, and the *_rope* entries the new token's positions and inverse frequencies, to rotate by;
//   the new token's K/V, written by the kernel just ahead or, in attention_decode_rope*, by the kernel
//   itself from the QKV GEMM's rows, after it; gemv.cu's carried-norm producers read the residual, through
//   L2).
// Without the attribute (older GPUs, KILN_PDL=0, a launch that follows a non-kernel operation) both are
// no-ops; below sm_90 they compile to nothing.
#pragma once

namespace kiln {

/** Waits until the previous grid on the stream has completed and its memory operations are visible. */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/** Lets the next grid on the stream launch (it still waits for this one with pdl_wait). */
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

}  // namespace kiln
