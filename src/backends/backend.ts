// The contract every backend implements (ExecutionBackend) and the step it executes (StepInput). It
// lives with the backends, not with the runtime that drives them (docs/LAYERS.md).
//
// What one forward step needs besides the weights: the packed tokens of every sequence in the step
// and where their keys/values live in the paged KV cache. Built by the runtime (or, later, the
// executor's scheduler); read by every backend. Prefill, chunked prefill and decode are all this.
//
//   tokens (packed):   [ s0 t0 t1 t2 t3 | s1 t0 | s2 t0 t1 ]      numTokens = 7
//   seqs[i]:           queryStart 0, queryLen 4 | 4, 1 | 5, 2
//   contextLen:        tokens of the sequence in the cache after this step (history + query)
//   slotMapping[t]:    blockTable[pos / blockSize] * blockSize + pos % blockSize  (−1: skip)

export interface SeqStep {
  queryStart: number;
  queryLen: number;
  contextLen: number;
  /** Block ids of the sequence, in position order. */
  blockTable: Int32Array;
}

export interface StepInput {
  tokenIds: Int32Array; // [numTokens]
  positions: Int32Array; // [numTokens]
  slotMapping: Int32Array; // [numTokens]
  seqs: SeqStep[];
  /** Packed rows whose logits are returned (usually each sequence's last query token). */
  logitRows: Int32Array; // [numLogitRows]
}

import type { Op } from "../engine/format.ts";
import type { DecodingOps, SampleParams, StepTransforms } from "./decoding_ops.ts";
import type { KvCacheDtype } from "./kv_cache_dtype.ts";

/** Sees each linear op's input x [rows, op.inFeatures] (fp32) before the op runs: the builder's
 * calibration (AWQ) reads activations through it, on either backend; it must not modify x. */
export type LinearInputObserver = (
  op: Extract<Op, { kind: "linear" }>,
  x: Float32Array,
  rows: number,
) => void;

/** A queued step of `enqueueSample`: its sequence number and how many rows it samples. */
export interface SampleTicket {
  readonly id: number;
  readonly rows: number;
}

/** A step queued by `enqueueForward`: its sequence number and how many logits rows it returns. */
export interface ForwardTicket {
  readonly id: number;
  readonly rows: number;
}

/** Where a queued step's input tokens come from (enqueueSample; backends/token_feed.ts): per
 * sequence, a row of `from`'s samples, or −1 for the host's tokens. */
export interface TokenFeed {
  from: SampleTicket;
  rows: Int32Array; // [numSeqs]
}

/** GPU time per kind of launch (a GEMM by its shape, else the lowered step's kind), summed. */
export type KindTimes = Record<string, { ms: number; count: number }>;

/** A step launched eagerly: the sum of its launches' GPU times, and the same by kind. */
export interface StepProfile {
  eagerMs: number;
  byKind: KindTimes;
}

/** A decode step: its graph alone, with the greedy sampler in it (alone and after each step's
 * metadata upload), and its launches eagerly. */
export interface DecodeProfile extends StepProfile {
  graphMs: number;
  sampledGraphMs?: number;
  uploadGraphMs?: number;
}

/** A backend executes an engine's plan, one step at a time, over a paged KV cache it owns. */
export interface ExecutionBackend {
  readonly name: "cpu" | "cuda";
  readonly vocabSize: number;
  readonly kvBlockSize: number;
  /** The backend's decoding operations (penalties, sampling) over logits it produced. */
  readonly decoding: DecodingOps;
  /** (Re)allocates the KV pool to `numBlocks` blocks of every layer; contents are not kept. */
  allocateKvCache(numBlocks: number): void;
  readonly numKvBlocks: number;
  /** Most tokens one forward step may carry (CUDA: the activation arena's rows); absent = no limit.
   * Longer prompts are prefilled in chunks. */
  readonly maxStepTokens?: number;
  /** Most logits rows (StepInput.logitRows) one step may return (CUDA: the activation arena's logits
   * rows, at least the engine's maxBatchSize); a step asking for more throws EngineError. The CPU
   * backend has no bound (Infinity). The executor's scheduler keeps every step within it: a request
   * with context logits takes a row per prompt token, so its prompt is chunked to fit. */
  readonly maxLogitRows: number;
  /** Creates what the backend would otherwise create on first use for steps of at most
   * `maxStepTokens` tokens (default: maxStepTokens; CUDA: GEMM plans and workspaces, sampler buffers,
   * then one step of that many tokens), so free memory read after it is what the KV pool may take.
   * Absent: everything is allocated at load. */
  warmUp?(maxStepTokens?: number): void;
  /** Creates, after allocateKvCache and before any request, what decode steps of up to `maxSeqs`
   * sequences would otherwise create on first use (CUDA: a graph per batch bucket, attention split
   * count and sampler slot), so no running request waits on it. May overwrite the KV pool's contents.
   * Returns how many it created. Absent: nothing to prepare. */
  prepareDecodeGraphs?(maxSeqs: number): number;
  /** Device memory the KV pool may take, read after warmUp: free memory plus the current pool's
   * (allocateKvCache replaces it), less what the backend still allocates by itself later (CUDA: its
   * decode graphs' estimate, cuda/graph_reserve.ts). Absent: no device limit (the CPU). The executor
   * sizes its KV cache from it (executor/kv_cache_size.ts). */
  freeMemoryBytes?(): number;
  /** Bytes of KV cache one block takes over all layers (to size the pool). */
  readonly kvBytesPerBlock: number;
  /** How the KV pool stores K and V, chosen when the backend opens (kv_cache_dtype.ts); absent = "auto". */
  readonly kvCacheDtype?: KvCacheDtype;
  /** Copies whole KV blocks src[i] → dst[i] in every layer (forking a sequence's partial block). */
  copyKvBlocks(src: readonly number[], dst: readonly number[]): void;
  /** What the plan runs on, e.g. "NVIDIA H100 80GB HBM3" or the CPU model. */
  readonly deviceName: string;
  /** Measured memory copy bandwidth in bytes/s, counting bytes read plus bytes written: the best seen
   * by this backend so far (a backend whose measurement is cheap measures again on each call). */
  measureCopyBandwidth(): number;
  /** Measured dense GEMM rate in FLOP/s at the engine's dtype: the best seen so far, as above. */
  measureGemmFlops(): number;
  /** Optional fast path: runs the plan and decodes every logits row on the device (embedding bias,
   * penalties, bans, then `sample`'s semantics), returning only tokens and log-probs. */
  forwardSample?(
    step: StepInput,
    p: SampleParams,
    t: StepTransforms,
  ): { tokens: Int32Array; logProbs: Float32Array };
  /** Pipelined form of `forwardSample`: queues the step and its on-device decoding and returns at
   * once; `collectSample` waits for the tokens. With `feed`, sequence i's input token is the token
   * sampled for row `feed.rows[i]` of the queued step `feed.from`, copied on the device, or, where
   * `feed.rows[i]` is −1 (HOST_TOKEN, token_feed.ts), its tokens in `step.tokenIds` as usual: the host
   * queues step N+1 (new prompt chunks and decodes mixed) before it has read step N's tokens, so its
   * bookkeeping overlaps the GPU. Only a sequence with queryLen 1 may be fed (prompt chunks take host
   * tokens); its `step.tokenIds` entry is a placeholder, and `t` must not depend on the fed token,
   * except through `t.penalties.fed`: a penalty list whose last entry is that placeholder names the
   * row of `feed.from` to read it from, and the backend substitutes the token on the device (CUDA:
   * apply_penalties reads the sampled slot the embedding reads) before the penalties apply.
   * `feed.from` must be the last queued ticket (collected or not); a feed that breaks these rules
   * (penalties.fed included: token_feed.ts checkPenaltyFeed) throws TokenFeedError before anything
   * runs. A ticket is collected at most once, in queue order; at most two may be outstanding
   * (queuing a third drops both: an abandoned generation). */
  enqueueSample?(step: StepInput, p: SampleParams, t: StepTransforms, feed?: TokenFeed): SampleTicket;
  collectSample?(ticket: SampleTicket): { tokens: Int32Array; logProbs: Float32Array };
  /** Whether `collectSample(ticket)` (the next ticket to collect) would return without waiting: its
   * tokens are on the host. The executor polls it between turns of the event loop instead of
   * blocking in collectSample, so a server keeps accepting and streaming while the device computes.
   * Absent: collectSample never waits (the CPU backend runs a step when it is queued). */
  sampleReady?(ticket: SampleTicket): boolean;
  /** Where a decode step's device time goes: GPU time per kind of launch (eager, one event pair
   * each) and of one whole graph replay, for the decode step `step` (CUDA only; for `kiln bench --profile`). */
  profileDecode?(step: StepInput): DecodeProfile;
  /** Where any step's device time goes (a prefill, a mixed step): its launches run eagerly, one event
   * pair each, summed by kind (CUDA only; for `kiln bench --profile`). The step writes its KV slots. */
  profileStep?(step: StepInput): StepProfile;
  /** Cumulative host milliseconds spent waiting in collectSample for the device, and the number of
   * collections: near zero waits per step mean the host, not the GPU, sets the pace (`kiln bench`). */
  collectWaitStats?(): { ms: number; count: number };
  /** Runs the plan; returns logits [numLogitRows, vocabSize]. */
  forward(step: StepInput): Float32Array;
  /** Pipelined form of `forward`: queues the step and the copy of its logits to the host and returns
   * at once; `collectForward` waits for them and returns logits [ticket.rows, vocabSize], valid until
   * the next step is queued or run. The executor's synchronous steps (host logits: beams,
   * LogitsProcessors, context logits) use it to serve the event loop while the device computes. At
   * most one ticket is outstanding: queuing another (or running `forward`) drops an uncollected one.
   * Both present or both absent. */
  enqueueForward?(step: StepInput): ForwardTicket;
  collectForward?(ticket: ForwardTicket): Float32Array;
  /** Whether `collectForward(ticket)` would return without waiting: the logits are on the host.
   * Absent: collectForward never waits (the CPU backend runs a step when it is queued). */
  forwardReady?(ticket: ForwardTicket): boolean;
  dispose(): void;
}
