// The work a step cannot skip, counted low so that the floors kiln bench reports stay lower bounds:
// the linear layers' FLOPs (prefillFlops), attention's FLOPs and KV bytes, and the weights' bytes.
//
//   prefill attention FLOPs = layers · B · 2·2·H·D · Σ_rows keys   (QKᵀ and P·V, 2 FLOPs a multiply-add;
//                             Σ_rows keys = L(L+1)/2 for a causal prompt of L tokens, fewer with a window)
//   decode KV bytes         = Σ_seq keys(ctx) · 2 (K, V) · layers · Hkv · D · bytes per element
//   decode attention FLOPs  = Σ_seq keys(ctx) · layers · 2·2·H·D
//   prefill bytes           = the weights read once + every prompt token's K and V written once
//   floor                   = max(bytes / copy bandwidth, FLOPs / GEMM rate)
// where keys(ctx) = min(ctx, window) are the keys a query at context ctx (its own key included) reads.
import type { ModelConfig } from "../checkpoint/model_config.ts";

/** FLOPs of a prefill of `batch` prompts of `inputLen` tokens through the linear layers, counted low so
 * the floor stays a floor: of the weights, all but the embedding table, the norms (2 per layer + 1,
 * at most 2·hidden each, which also covers per-head q/k norms) and any biases (at most one per output
 * of q, k, v, o, gate, up and down) multiply every token, and the LM head only each prompt's last row. */
export function prefillFlops(m: ModelConfig, params: number, batch: number, inputLen: number): number {
  const head = m.vocabSize * m.hiddenSize;
  const norms = 2 * (2 * m.numLayers + 1) * m.hiddenSize;
  const attnOut = (m.numHeads + 2 * m.numKvHeads) * m.headDim;
  const biases = m.numLayers * (attnOut + 2 * m.hiddenSize + 2 * m.intermediateSize);
  const perToken = Math.max(0, params - head * (m.tieWordEmbeddings ? 1 : 2) - norms - biases);
  return 2 * perToken * batch * inputLen + 2 * head * batch;
}

/** A decode step of one token per sequence (sequence i at contexts[i] keys, the new one included):
 * bytes it reads (every weight once, but of an untied embedding table only the batch's rows, which
 * are not counted; plus decodeKvBytes) and FLOPs (the linear layers on one row per sequence, the LM
 * head included, plus decodeAttentionFlops). `params`: the engine's weights in elements;
 * `weightBytes`: all of them as the backend holds them, params × elemBytes unless some are quantized
 * (the CUDA backend reads a quantized weight's stored region, q and its fp32 scales, not the array it
 * stands for). The embedding table is never quantized: it counts params' elemBytes either way.
 * `kvBytes`: bytes per element of the KV cache (1 for an FP8 cache, its scales not counted). */
export function decodeStepWork(
  m: ModelConfig,
  params: number,
  elemBytes: number,
  contexts: readonly number[],
  weightBytes = params * elemBytes,
  kvBytes = elemBytes,
): { bytes: number; flops: number } {
  return {
    bytes: weightsRead(m, elemBytes, weightBytes) + decodeKvBytes(m, contexts, kvBytes),
    flops: prefillFlops(m, params, contexts.length, 1) + decodeAttentionFlops(m, contexts),
  };
}

/** A prefill of `batch` prompts of `inputLen` tokens, however it is chunked: bytes it must move (every
 * weight read once — of an untied embedding table only the prompts' rows, not counted — and each prompt
 * token's K and V written once to the cache) and FLOPs (prefillFlops plus causal attention's). A short
 * prompt is bound by the weights' bytes, a long one by the FLOPs. `weightBytes` as decodeStepWork's;
 * `kvBytes`: bytes per element of the KV cache. */
export function prefillWork(
  m: ModelConfig,
  params: number,
  elemBytes: number,
  batch: number,
  inputLen: number,
  weightBytes = params * elemBytes,
  kvBytes = elemBytes,
): { bytes: number; flops: number } {
  const kv = batch * inputLen * 2 * m.numLayers * m.numKvHeads * m.headDim * kvBytes;
  return {
    bytes: weightsRead(m, elemBytes, weightBytes) + kv,
    flops: prefillFlops(m, params, batch, inputLen) + prefillAttentionFlops(m, batch, inputLen),
  };
}

/** The weights' bytes a step reads: all as stored, but of an untied embedding table only the step's rows
 * (not counted; a tied table is the LM head and counts whole). */
function weightsRead(m: ModelConfig, elemBytes: number, weightBytes: number): number {
  return weightBytes - (m.tieWordEmbeddings ? 0 : m.vocabSize * m.hiddenSize * elemBytes);
}

type AttentionShape = Pick<
  ModelConfig,
  "numLayers" | "numHeads" | "numKvHeads" | "headDim" | "slidingWindow"
>;

/** Keys one query reads at a context of `ctx` tokens (its own included): all, or the window's. */
function keysRead(m: AttentionShape, ctx: number): number {
  return m.slidingWindow ? Math.min(ctx, m.slidingWindow) : ctx;
}

/** Σ over the rows of a prompt of L tokens (no cached prefix) of the keys each row attends to:
 * L(L+1)/2 causal, w(w+1)/2 + (L − w)·w with a window w < L. */
export function causalKeys(m: AttentionShape, inputLen: number): number {
  const w = m.slidingWindow;
  if (!w || inputLen <= w) return (inputLen * (inputLen + 1)) / 2;
  return (w * (w + 1)) / 2 + (inputLen - w) * w;
}

/** FLOPs of causal attention over `batch` prompts of `inputLen` tokens: QKᵀ and P·V, each 2·H·D per
 * (row, key) pair, in every layer (the masked half of the score matrix not counted). */
export function prefillAttentionFlops(m: AttentionShape, batch: number, inputLen: number): number {
  return m.numLayers * batch * 2 * 2 * m.numHeads * m.headDim * causalKeys(m, inputLen);
}

/** Bytes of K and V a decode step reads: every sequence's keys at its context (GQA: once per kv head). */
export function decodeKvBytes(m: AttentionShape, contexts: readonly number[], elemBytes: number): number {
  const keys = contexts.reduce((a, c) => a + keysRead(m, c), 0);
  return keys * 2 * m.numLayers * m.numKvHeads * m.headDim * elemBytes;
}

/** FLOPs of a decode step's attention: one query row per sequence against its keys, QKᵀ and P·V. */
export function decodeAttentionFlops(m: AttentionShape, contexts: readonly number[]): number {
  const keys = contexts.reduce((a, c) => a + keysRead(m, c), 0);
  return keys * m.numLayers * 2 * 2 * m.numHeads * m.headDim;
}

/** A step's floor in milliseconds: the slower of reading its bytes at the copy bandwidth (bytes/s) and
 * computing its FLOPs at the GEMM rate (FLOP/s). */
export function floorMs(bytes: number, flops: number, bandwidth: number, gemmRate: number): number {
  return Math.max(bytes / bandwidth, flops / gemmRate) * 1000;
}
