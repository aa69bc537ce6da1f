// The token-counting scheduler (vLLM v1's, with TensorRT-LLM's capacity policies). Each iteration has
// a budget of maxNumTokens; every request asks for numTokens − numComputedTokens of them:
//   1. running requests, decodes (one token) first, then running prefills' next chunks, in admission
//      order: a long prompt never stalls running streams;
//   2. waiting requests, higher priority first, FCFS within a priority, while the budget, maxNumSeqs
//      and the capacity policy allow; a prompt longer than the budget left gets a chunk (chunked
//      prefill is always on), and its cached prefix is not computed at all.
// Capacity: guaranteedNoEvict admits only if blocks for prompt + maxNewTokens can be reserved (the
// sum of every running request's future blocks stays available), so a running request always gets
// its blocks. maxUtilization admits while blocks are free now; when a running request cannot get one,
// the lowest-priority, most recently admitted running request is preempted: its blocks are freed and
// it waits (ahead of later arrivals at its priority) to recompute its tokens. No admission follows a
// preemption in the same iteration.
// The caller alternates schedule() → run the step → update(); cancel/finish may come at any time and
// free the request's blocks at once.
import { InvalidArgumentError } from "../errors.ts";
import { type CapacityPolicy, fitsReservation, preemptionVictim, reservedFutureBlocks } from "./capacity.ts";
import { invariant, QueueFullError, RequestTooLargeError } from "./errors.ts";
import type { KvCacheManager } from "./kv_cache_manager.ts";
import { Request, type RequestFinishReason, type RequestSpec } from "./request.ts";
import { buildSchedulerOutput, type Grant, type SchedulerOutput } from "./scheduler_output.ts";

export type { CapacityPolicy };

export interface SchedulerConfig {
  /** Tokens per iteration, decode and prefill together (default 8192). */
  maxNumTokens?: number;
  /** Running requests at most (default 256). */
  maxNumSeqs?: number;
  policy?: CapacityPolicy;
  /** Waiting requests at most; add() beyond it throws QueueFullError (default: unlimited). */
  maxQueueSize?: number;
}

export class Scheduler {
  readonly maxNumTokens: number;
  readonly maxNumSeqs: number;
  readonly policy: CapacityPolicy;
  readonly maxQueueSize: number;
  private readonly waiting: Request[] = []; // queue order (Request.before)
  private readonly running: Request[] = []; // admission order
  private readonly live = new Map<number, Request>();
  private finished: SchedulerOutput["finished"] = [];
  private arrivals = 0;
  private admissions = 0;
  private preemptions = 0;

  constructor(
    readonly kv: KvCacheManager,
    config: SchedulerConfig = {},
  ) {
    const {
      maxNumTokens = 8192,
      maxNumSeqs = Math.min(256, maxNumTokens),
      policy = "guaranteedNoEvict",
      maxQueueSize = Infinity,
    } = config;
    for (const [name, v] of [
      ["maxNumTokens", maxNumTokens],
      ["maxNumSeqs", maxNumSeqs],
    ] as const) {
      if (!Number.isInteger(v) || v < 1)
        throw new InvalidArgumentError(`${name} ${v} is not a positive integer`);
    }
    if (maxNumSeqs > maxNumTokens) {
      throw new InvalidArgumentError(
        `maxNumSeqs ${maxNumSeqs} is more than maxNumTokens ${maxNumTokens}: every running request needs a token ` +
          "each iteration; lower maxNumSeqs or raise maxNumTokens",
      );
    }
    if (!(maxQueueSize >= 0)) throw new InvalidArgumentError(`maxQueueSize ${maxQueueSize} is negative`);
    this.maxNumTokens = maxNumTokens;
    this.maxNumSeqs = maxNumSeqs;
    this.policy = policy;
    this.maxQueueSize = maxQueueSize;
  }

  /** Queues a request; `now` (ms) starts its allotted time. */
  add(spec: RequestSpec, now = 0): Request {
    if (this.live.has(spec.id)) throw new InvalidArgumentError(`request id ${spec.id} is already live`);
    if (this.waiting.length >= this.maxQueueSize) throw new QueueFullError(this.maxQueueSize);
    const r = new Request(spec, now);
    const need = this.kv.blocksFor(r.maxTotalTokens);
    if (need > this.kv.numBlocks) {
      throw new RequestTooLargeError(
        r.id,
        r.promptLength,
        r.maxNewTokens,
        need,
        this.kv.numBlocks,
        this.kv.tokensPerBlock,
      );
    }
    r.arrivalOrder = this.arrivals++;
    this.live.set(r.id, r);
    this.enqueue(r);
    return r;
  }

  get(id: number): Request | undefined {
    return this.live.get(id);
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  get hasWork(): boolean {
    return this.live.size > 0;
  }

  /** Removes a live request, queued or running, and frees its blocks now; false if it is not live. */
  finish(id: number, reason: RequestFinishReason): boolean {
    const r = this.live.get(id);
    if (!r) return false;
    const list = r.status === "running" ? this.running : this.waiting;
    list.splice(list.indexOf(r), 1);
    this.kv.free(id);
    r.status = "finished";
    r.finishReason = reason;
    this.live.delete(id);
    this.finished.push({ requestId: id, reason });
    return true;
  }

  cancel(id: number): boolean {
    return this.finish(id, "cancelled");
  }

  /** One iteration's decision; `now` (ms) times out requests past their deadline first. */
  schedule(now = 0): SchedulerOutput {
    for (const r of [...this.running, ...this.waiting]) if (now >= r.deadline) this.finish(r.id, "timed_out");
    const grants = new Map<Request, Grant>();
    const preempted: number[] = [];
    let budget = this.maxNumTokens;
    const decodeFirst = [...this.running].sort(
      (a, b) => Number(a.numUncomputed > 1) - Number(b.numUncomputed > 1),
    );
    for (const r of decodeFirst) {
      if (budget === 0) break;
      if (r.status !== "running") continue; // preempted earlier in this loop
      const n = Math.min(r.numUncomputed, budget);
      invariant(n > 0, `running request ${r.id} has nothing to compute`);
      let got = this.kv.appendSlots(r.id, n);
      while (!got) {
        invariant(this.policy === "maxUtilization", `request ${r.id} ran out of its reserved blocks`);
        const victim = preemptionVictim(this.running);
        const refund = grants.get(victim);
        if (refund) budget += refund.numTokens;
        grants.delete(victim);
        this.preempt(victim);
        preempted.push(victim.id);
        if (victim === r) break;
        got = this.kv.appendSlots(r.id, n);
      }
      if (!got) continue;
      grants.set(r, { request: r, numTokens: n, copies: got.copies });
      budget -= n;
    }
    if (preempted.length === 0) this.admit(budget, grants);
    const out = buildSchedulerOutput(grants.values(), this.kv, preempted, this.finished);
    invariant(out.numTokens <= this.maxNumTokens, `scheduled ${out.numTokens} tokens over the budget`);
    this.finished = [];
    return out;
  }

  /** After the step of `output` ran: advances each request by its chunk, caches its full blocks, and
   * appends the sampled token of each chunk that sampled (finishing at maxNewTokens). Requests that
   * left meanwhile (cancelled) are skipped. */
  update(output: SchedulerOutput, sampled: ReadonlyMap<number, number>): void {
    for (const c of output.chunks) {
      const r = this.live.get(c.requestId);
      if (r?.status !== "running") continue;
      invariant(r.numComputedTokens === c.start, `update of request ${r.id} out of order`);
      r.numComputedTokens += c.tokenIds.length;
      this.kv.commit(r.id, r.tokens, r.numComputedTokens);
      if (!c.sample) continue;
      const token = sampled.get(r.id);
      invariant(token !== undefined, `no sampled token for request ${r.id}`);
      r.tokens.push(token);
      if (r.numOutputTokens >= r.maxNewTokens) this.finish(r.id, "length");
    }
  }

  stats(): { numWaiting: number; numRunning: number; numPreemptions: number } {
    return {
      numWaiting: this.waiting.length,
      numRunning: this.running.length,
      numPreemptions: this.preemptions,
    };
  }

  /** Admits waiting requests in queue order while budget, maxNumSeqs and blocks allow. Stops at the
   * first that does not fit (no overtaking). */
  private admit(budget: number, grants: Map<Request, Grant>): void {
    const noEvict = this.policy === "guaranteedNoEvict";
    let reserved = noEvict ? reservedFutureBlocks(this.kv, this.running) : 0;
    while (this.waiting.length > 0 && budget > 0 && this.running.length < this.maxNumSeqs) {
      const r = this.waiting[0];
      const hit = this.kv.findPrefix(r.tokens, r.cacheSalt, r.blockKeys);
      const n = Math.min(r.numTokens - hit.numTokens, budget);
      if (noEvict) {
        if (!fitsReservation(this.kv, r, hit, reserved)) break;
        reserved += this.kv.blocksFor(r.maxTotalTokens) - this.kv.blocksFor(hit.numTokens + n);
      }
      const got = this.kv.allocate(r.id, r.tokens, n, r.cacheSalt, hit);
      if (!got) break;
      this.waiting.shift();
      r.status = "running";
      r.numComputedTokens = got.numCachedTokens;
      r.numCachedTokens = got.numCachedTokens;
      r.admittedOrder = this.admissions++;
      this.running.push(r);
      grants.set(r, { request: r, numTokens: n, copies: [] });
      budget -= n;
    }
  }

  private preempt(r: Request): void {
    this.running.splice(this.running.indexOf(r), 1);
    this.kv.free(r.id);
    r.status = "waiting";
    r.numComputedTokens = 0;
    r.numPreemptions++;
    this.preemptions++;
    this.enqueue(r);
  }

  private enqueue(r: Request): void {
    let i = this.waiting.findIndex((w) => r.before(w));
    if (i < 0) i = this.waiting.length;
    this.waiting.splice(i, 0, r);
  }
}
