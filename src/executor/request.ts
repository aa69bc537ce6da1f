// A request as the scheduler sees it: its sequences' tokens and how many of them are in the KV cache.
// The scheduler only counts tokens (vLLM v1): prefill, chunked prefill, decode and recompute after a
// preemption are all "compute tokens[numComputedTokens, numTokens)" of each sequence.
//
//   tokens     [ p0 p1 … p(P−1) | o0 o1 … ]        prompt (P tokens), then sampled outputs
//               └ numComputedTokens ┘└ next step ┘  numTokens = tokens.length
//
// A request of width W (numReturnSequences samples, or W beams) is a sequence group: one sequence
// while its prompt is prefilled, then up to W that share the prompt's KV blocks (forks) and decode
// as rows of the same step. Each sequence has its own KV table: the first one's id is the request's
// id, forks take negative ids (never a request's).
import type { FinishReason } from "../sampling/stopping.ts";
import type { BlockKey } from "./block_hash.ts";
import { InvalidRequestError } from "./errors.ts";

/** Why a request left the scheduler: the sampler's reasons, or the caller's. */
export type RequestFinishReason = FinishReason | "cancelled" | "timed_out";

export type RequestStatus = "waiting" | "running" | "finished";

/** What the caller gives the scheduler for one request. */
export interface RequestSpec {
  id: number;
  promptIds: readonly number[];
  maxNewTokens: number;
  /** 0–1, higher first; FCFS within a priority. Default 0.5 (TensorRT-LLM's). */
  priority?: number;
  /** The request times out at arrival + allottedTimeMs (the clock passed to add and schedule). */
  allottedTimeMs?: number;
  /** Anything besides the tokens that changes the KV values (LoRA adapter, cache salt). */
  cacheSalt?: string;
  /** Sequences the request decodes at most (numReturnSequences or beam width; default 1). */
  width?: number;
  /** Logits at every computed position (returnContextLogits): each token of its chunks takes a
   * logits row of the step, and every prompt token is computed, even those in the prefix cache. */
  contextLogits?: boolean;
}

/** One sequence (row) of a request: its tokens, and how many are in its KV table `kvId`. */
export class Sequence {
  /** Prefix-cache keys of the leading full blocks of `tokens` computed so far (findPrefix's memo). */
  readonly blockKeys: BlockKey[] = [];
  numComputedTokens = 0;

  constructor(
    readonly kvId: number,
    readonly tokens: number[],
  ) {}

  get numUncomputed(): number {
    return this.tokens.length - this.numComputedTokens;
  }

  /** A copy under KV table `kvId` (the caller forks the table). */
  fork(kvId: number): Sequence {
    const s = new Sequence(kvId, [...this.tokens]);
    s.numComputedTokens = this.numComputedTokens;
    s.blockKeys.push(...this.blockKeys);
    return s;
  }
}

export class Request {
  readonly id: number;
  readonly promptLength: number;
  readonly maxNewTokens: number;
  readonly priority: number;
  readonly cacheSalt: string;
  /** Absolute time (ms) after which the request times out; Infinity: never. */
  readonly deadline: number;
  readonly width: number;
  readonly contextLogits: boolean;
  /** The live sequences, in row order: one until the prompt is computed, then up to `width`. */
  seqs: Sequence[];
  status: RequestStatus = "waiting";
  finishReason: RequestFinishReason | null = null;
  /** Prompt tokens found in the prefix cache at the latest admission. */
  numCachedTokens = 0;
  numPreemptions = 0;
  /** Placeholder tokens at the end of `tokens` whose real value a queued step has not returned yet
   * (the overlapped loop: Scheduler.advance pushes one, Scheduler.resolve writes it). */
  numPending = 0;
  /** FCFS order: position of the request's arrival among all added. */
  arrivalOrder = 0;
  /** Order of the latest admission into the running set (preemption takes the newest). */
  admittedOrder = -1;

  constructor(spec: RequestSpec, now: number) {
    const { id, promptIds, maxNewTokens, priority = 0.5, allottedTimeMs, cacheSalt = "", width = 1 } = spec;
    const bad = (what: string) => new InvalidRequestError(`request ${id}: ${what}`);
    if (promptIds.length === 0) throw bad("the prompt is empty; give at least one token");
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
      throw bad(`maxNewTokens ${maxNewTokens} is not a positive integer; give 1 or more`);
    }
    if (!(priority >= 0 && priority <= 1))
      throw bad(`priority ${priority} is outside 0–1; give a number in [0, 1]`);
    if (allottedTimeMs !== undefined && !(allottedTimeMs > 0)) {
      throw bad(`allottedTimeMs ${allottedTimeMs} is not positive; give a time in ms or leave it out`);
    }
    if (!Number.isInteger(width) || width < 1) throw bad(`width ${width} is not a positive integer`);
    this.id = id;
    this.promptLength = promptIds.length;
    this.maxNewTokens = maxNewTokens;
    this.priority = priority;
    this.cacheSalt = cacheSalt;
    this.deadline = allottedTimeMs === undefined ? Number.POSITIVE_INFINITY : now + allottedTimeMs;
    this.width = width;
    this.contextLogits = spec.contextLogits ?? false;
    this.seqs = [new Sequence(id, [...promptIds])];
  }

  /** The first sequence's tokens (prompt + outputs); a single-sequence request's only one. */
  get tokens(): number[] {
    return this.seqs[0].tokens;
  }

  get numComputedTokens(): number {
    return this.seqs[0].numComputedTokens;
  }

  set numComputedTokens(n: number) {
    this.seqs[0].numComputedTokens = n;
  }

  get blockKeys(): BlockKey[] {
    return this.seqs[0].blockKeys;
  }

  get numTokens(): number {
    return this.tokens.length;
  }

  /** Tokens the next steps must compute, every sequence's: the rest of the prompt (or of a
   * recompute), else one per sequence. */
  get numUncomputed(): number {
    let n = 0;
    for (const s of this.seqs) n += s.numUncomputed;
    return n;
  }

  /** Every sequence has at most its next token to compute. */
  get isDecode(): boolean {
    return this.seqs.every((s) => s.numUncomputed <= 1);
  }

  get outputIds(): number[] {
    return this.tokens.slice(this.promptLength);
  }

  get numOutputTokens(): number {
    return this.tokens.length - this.promptLength;
  }

  /** The most tokens the request can ever hold in the KV cache. */
  get maxTotalTokens(): number {
    return this.promptLength + this.maxNewTokens;
  }

  /** Whether `this` comes before `other` in the waiting queue: higher priority, then earlier arrival. */
  before(other: Request): boolean {
    return this.priority !== other.priority
      ? this.priority > other.priority
      : this.arrivalOrder < other.arrivalOrder;
  }
}
