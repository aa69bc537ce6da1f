// A request as the scheduler sees it: its tokens and how many of them are in the KV cache. The
// scheduler only counts tokens (vLLM v1): prefill, chunked prefill, decode and recompute after a
// preemption are all "compute tokens[numComputedTokens, numTokens)".
//
//   tokens     [ p0 p1 … p(P−1) | o0 o1 … ]        prompt (P tokens), then sampled outputs
//               └ numComputedTokens ┘└ next step ┘  numTokens = tokens.length
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
}

export class Request {
  readonly id: number;
  readonly promptLength: number;
  readonly maxNewTokens: number;
  readonly priority: number;
  readonly cacheSalt: string;
  /** Absolute time (ms) after which the request times out; Infinity: never. */
  readonly deadline: number;
  readonly tokens: number[]; // prompt + outputs
  /** Prefix-cache keys of the leading full blocks of `tokens` computed so far (findPrefix's memo). */
  readonly blockKeys: BlockKey[] = [];
  numComputedTokens = 0;
  status: RequestStatus = "waiting";
  finishReason: RequestFinishReason | null = null;
  /** Prompt tokens found in the prefix cache at the latest admission. */
  numCachedTokens = 0;
  numPreemptions = 0;
  /** FCFS order: position of the request's arrival among all added. */
  arrivalOrder = 0;
  /** Order of the latest admission into the running set (preemption takes the newest). */
  admittedOrder = -1;

  constructor(spec: RequestSpec, now: number) {
    const { id, promptIds, maxNewTokens, priority = 0.5, allottedTimeMs, cacheSalt = "" } = spec;
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
    this.id = id;
    this.promptLength = promptIds.length;
    this.maxNewTokens = maxNewTokens;
    this.priority = priority;
    this.cacheSalt = cacheSalt;
    this.deadline = allottedTimeMs === undefined ? Number.POSITIVE_INFINITY : now + allottedTimeMs;
    this.tokens = [...promptIds];
  }

  get numTokens(): number {
    return this.tokens.length;
  }

  /** Tokens the next step must compute: the rest of the prompt (or of a recompute), else 1. */
  get numUncomputed(): number {
    return this.tokens.length - this.numComputedTokens;
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
