// (Kept whole, about 550 lines: the token budget, the logit-row budget, the capacity policy and the
// after-step bookkeeping (computed, update, advance, resolve, finish) read and write the same request
// lists and sequence counters; the separable pieces already live in capacity.ts, step_from_schedule.ts,
// and the blocks in flight admission defers to in inflight_blocks.ts, kept by the KV cache manager.)
// The token-counting scheduler (vLLM v1's, with TensorRT-LLM's capacity policies). Each iteration has
// a budget of maxNumTokens; every request asks for numTokens − numComputedTokens of them:
//   1. running requests, decodes (one token) first, then running prefills' next chunks, in admission
//      order: a long prompt never stalls running streams;
//   2. waiting requests, higher priority first, FCFS within a priority, while the budget, maxNumSeqs
//      and the capacity policy allow; a prompt longer than the budget left gets a chunk (chunked
//      prefill is always on), and its cached prefix is not computed at all. A request whose next
//      uncached block a running request is computing right now (inflight_blocks.ts) is deferred,
//      not admitted: it finds that block cached an iteration or two later (requests sharing a system
//      prompt that arrive together compute it once); later requests with other prefixes pass it.
// Capacity: guaranteedNoEvict admits only if blocks for prompt + maxNewTokens can be reserved (the
// sum of every running request's future blocks stays available), so a running request always gets
// its blocks. maxUtilization admits while blocks are free now; when a running request cannot get one,
// the lowest-priority, most recently admitted running request is preempted: its blocks are freed and
// it waits (ahead of later arrivals at its priority) to recompute its tokens. No admission follows a
// preemption in the same iteration.
// Logits rows: a step returns at most maxLogitRows of them (the backend's bound). Each sampling
// sequence takes one, and a request with context logits one per token it computes, so its prompt is
// chunked to the rows left like to the budget left (decodes first: maxNumSeqs ≤ maxLogitRows, so
// they always fit). A chunk that cannot take the row it would sample stops one token short.
// Sequence groups (width > 1): every sequence of a request is a row; the group samples all its rows in
// one iteration or none (when the budget cannot take them all, each chunk stops one token short), so a
// beam step always sees every beam. update() takes each request's branches: which sequence each new
// one continues with which token; a parent taken twice is forked (shared blocks, copy on write), a
// parent not taken is freed. Preemption frees the whole group; when it comes back, its first sequence
// recomputes its tokens and each other one forks the whole blocks it shares with the first (at least
// the prompt's) once they are computed, then recomputes only its own rest: a group never needs more
// blocks than when it first ran. maxNumSeqs counts rows: a running request counts its width.
// The caller alternates schedule() → run the step → update(); cancel/finish may come at any time and
// free the request's blocks at once. The overlapped loop (step_pipeline.ts) splits update() in two around
// the queued step: advance() when it is queued (each sampling sequence gets a placeholder token, so
// the next schedule() sees its decode and allocates the slot for it), resolve() once its tokens are
// read (the real token replaces the placeholder, a group's sequences that ended leave, full blocks are
// keyed). A request whose last token (maxNewTokens) is still a placeholder is not scheduled again.
import { InvalidArgumentError } from "../errors.ts";
import {
  type CapacityPolicy,
  fitsReservation,
  mostBlocks,
  preemptionVictim,
  reservedFutureBlocks,
} from "./capacity.ts";
import { InvalidRequestError, invariant, QueueFullError, RequestTooLargeError } from "./errors.ts";
import type { BlockCopy, KvCacheManager, PrefixHit } from "./kv_cache_manager.ts";
import { Request, type RequestFinishReason, type RequestSpec, type Sequence } from "./request.ts";
import {
  buildSchedulerOutput,
  type Grant,
  grantLogitRows,
  type SchedulerOutput,
} from "./scheduler_output.ts";

export type { CapacityPolicy };

/** A new sequence after a step: sequence `parent` (index in Request.seqs) continued with `token`. */
export interface Branch {
  parent: number;
  token: number;
}

/** What advance() puts where a queued step's token will go (never read: the device feeds the real
 * one, and resolve() writes it before anything else reads the sequence's tokens). */
export const PLACEHOLDER_TOKEN = 0;

const NO_HIT: PrefixHit = { blocks: [], keys: [], numTokens: 0, nextInFlight: false };

export interface SchedulerConfig {
  /** Tokens per iteration, decode and prefill together (default 8192). */
  maxNumTokens?: number;
  /** Running sequences (rows) at most; a request counts its width (default 256, at most maxNumTokens
   * and maxLogitRows). */
  maxNumSeqs?: number;
  policy?: CapacityPolicy;
  /** Waiting requests at most; add() beyond it throws QueueFullError (default: unlimited). */
  maxQueueSize?: number;
  /** Logits rows one step may return (the backend's maxLogitRows; default: unlimited). */
  maxLogitRows?: number;
}

export class Scheduler {
  readonly maxNumTokens: number;
  readonly maxNumSeqs: number;
  readonly policy: CapacityPolicy;
  readonly maxQueueSize: number;
  readonly maxLogitRows: number;
  private readonly waiting: Request[] = []; // queue order (Request.before)
  private readonly running: Request[] = []; // admission order
  private readonly live = new Map<number, Request>();
  private finished: SchedulerOutput["finished"] = [];
  /** Steps whose chunks computed() has advanced (update() then only takes their samples). */
  private readonly computedOutputs = new WeakSet<SchedulerOutput>();
  private arrivals = 0;
  private admissions = 0;
  private preemptions = 0;
  /** Forked sequences so far: fork k gets KV table id −k. */
  private forks = 0;

  constructor(
    readonly kv: KvCacheManager,
    config: SchedulerConfig = {},
  ) {
    const {
      maxNumTokens = 8192,
      maxLogitRows = Infinity,
      maxNumSeqs = Math.min(256, maxNumTokens, maxLogitRows),
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
    if (!(maxLogitRows >= 1)) throw new InvalidArgumentError(`maxLogitRows ${maxLogitRows} is less than 1`);
    if (maxNumSeqs > maxLogitRows) {
      throw new InvalidArgumentError(
        `maxNumSeqs ${maxNumSeqs} is more than the ${maxLogitRows} logits rows one step returns (the backend's ` +
          "maxLogitRows): every running sequence may sample in the same step; lower maxNumSeqs or rebuild " +
          "the engine with a larger --max-batch-size",
      );
    }
    this.maxNumTokens = maxNumTokens;
    this.maxNumSeqs = maxNumSeqs;
    this.policy = policy;
    this.maxQueueSize = maxQueueSize;
    this.maxLogitRows = maxLogitRows;
  }

  /** Queues a request; `now` (ms) starts its allotted time. */
  add(spec: RequestSpec, now = 0): Request {
    if (this.live.has(spec.id)) throw new InvalidArgumentError(`request id ${spec.id} is already live`);
    if (this.waiting.length >= this.maxQueueSize) throw new QueueFullError(this.maxQueueSize);
    const r = new Request(spec, now);
    if (r.width > this.maxNumSeqs) {
      throw new InvalidRequestError(
        `request ${r.id}: ${r.width} sequences (beams or numReturnSequences) but at most ${this.maxNumSeqs} ` +
          "run at once (maxNumSeqs); ask for fewer or raise maxNumSeqs",
      );
    }
    const need = mostBlocks(this.kv, r);
    if (need > this.kv.numBlocks) {
      throw new RequestTooLargeError(
        r.id,
        r.promptLength,
        r.maxNewTokens,
        need,
        this.kv.numBlocks,
        this.kv.tokensPerBlock,
        r.width,
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

  /** The waiting request admitted next, if any. */
  get firstWaiting(): Request | undefined {
    return this.waiting[0];
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  /** Rows of the running requests: their live sequences. */
  get numRunningSequences(): number {
    let n = 0;
    for (const r of this.running) n += r.seqs.length;
    return n;
  }

  get hasWork(): boolean {
    return this.live.size > 0;
  }

  /** Removes a live request, queued or running, and frees its blocks now (their full blocks of real
   * tokens cached, unless `cacheBlocks` is false); false if it is not live. */
  finish(id: number, reason: RequestFinishReason, cacheBlocks = true): boolean {
    const r = this.live.get(id);
    if (!r) return false;
    const list = r.status === "running" ? this.running : this.waiting;
    list.splice(list.indexOf(r), 1);
    // Its full blocks of real tokens join the prefix cache first: a request may end at the token of the
    // step that computed them (before update() or resolve() would key them), e.g. at maxNewTokens 1.
    // The last numPending tokens are placeholders (advance()), not yet what the step samples. Not
    // after a failed step (cacheBlocks false): what it should have written may not be there.
    for (const s of r.seqs)
      if (cacheBlocks && this.kv.has(s.kvId))
        this.kv.commit(s.kvId, s.tokens, Math.min(s.numComputedTokens, s.tokens.length - r.numPending));
    for (const s of r.seqs) this.kv.free(s.kvId);
    r.status = "finished";
    r.finishReason = reason;
    this.live.delete(id);
    this.finished.push({ requestId: id, reason });
    return true;
  }

  cancel(id: number): boolean {
    return this.finish(id, "cancelled");
  }

  /** One iteration's decision; `now` (ms) times out requests past their deadline first. Admission
   * stops at the first waiting request `admits` refuses (the overlapped loop keeps requests that
   * need a synchronous step out of a queued one). */
  schedule(now = 0, admits: (r: Request) => boolean = () => true): SchedulerOutput {
    for (const r of [...this.running, ...this.waiting]) if (now >= r.deadline) this.finish(r.id, "timed_out");
    const grants = new Map<Request, Grant>();
    const preempted: number[] = [];
    let budget = this.maxNumTokens;
    let logitRows = this.maxLogitRows;
    const decodeFirst = [...this.running].sort((a, b) => Number(!a.isDecode) - Number(!b.isDecode));
    for (const r of decodeFirst) {
      if (budget === 0) break;
      if (r.status !== "running") continue; // preempted earlier in this loop
      if (r.numPending > 0 && r.numOutputTokens >= r.maxNewTokens) continue; // its last token is coming
      invariant(r.numUncomputed > 0, `running request ${r.id} has nothing to compute`);
      this.joinPrefixes(r);
      const sizes = chunkSizes(r, budget, logitRows, (s) => this.kv.has(s.kvId));
      const copies: BlockCopy[] = [];
      let kept = true;
      for (const [i, n] of sizes.entries()) {
        if (n === 0) continue;
        const kvId = r.seqs[i].kvId;
        let got = this.kv.appendSlots(kvId, n);
        while (!got) {
          invariant(this.policy === "maxUtilization", `request ${r.id} ran out of its reserved blocks`);
          const victim = preemptionVictim(this.running);
          const refund = grants.get(victim);
          if (refund) {
            budget += refund.numTokens;
            logitRows += refund.numLogitRows;
          }
          grants.delete(victim);
          this.preempt(victim);
          preempted.push(victim.id);
          if (victim === r) break;
          got = this.kv.appendSlots(kvId, n);
        }
        if (!got) {
          kept = false;
          break;
        }
        copies.push(...got.copies);
      }
      const n = sizes.reduce((a, b) => a + b, 0);
      if (!kept || n === 0) continue;
      for (let i = 0; i < sizes.length; i++) if (sizes[i] > 0) this.computing(r, r.seqs[i], sizes[i]);
      const numLogitRows = grantLogitRows(r, sizes);
      grants.set(r, { request: r, sizes, numTokens: n, numLogitRows, copies });
      budget -= n;
      logitRows -= numLogitRows;
    }
    if (preempted.length === 0) this.admit(budget, logitRows, grants, admits);
    const out = buildSchedulerOutput(grants.values(), this.kv, preempted, this.finished);
    invariant(out.numTokens <= this.maxNumTokens, `scheduled ${out.numTokens} tokens over the budget`);
    invariant(
      out.numLogitRows <= this.maxLogitRows,
      `scheduled ${out.numLogitRows} logits rows over the bound`,
    );
    this.finished = [];
    return out;
  }

  /** After the step of `output` ran, before its samples are read (synchronous steps): advances each
   * sequence by its chunk and caches its full blocks, so a request that ends at this step's token
   * (finish) keeps them in the prefix cache. update() does it itself when not called first. */
  computed(output: SchedulerOutput): void {
    invariant(!this.computedOutputs.has(output), "a step's chunks computed twice");
    this.computedOutputs.add(output);
    for (const c of output.chunks) {
      const r = this.live.get(c.requestId);
      if (r?.status !== "running") continue;
      const s = r.seqs[c.seq];
      invariant(s?.numComputedTokens === c.start, `update of request ${r.id} out of order`);
      s.numComputedTokens += c.tokenIds.length;
      this.kv.commit(s.kvId, s.tokens, s.numComputedTokens);
    }
  }

  /** After the step of `output` ran: advances each sequence by its chunk and caches its full blocks
   * (unless computed() did);
   * then each request that sampled takes its next sequences: a token (a single-sequence request's) or
   * branches (see Branch; a group's). It finishes at maxNewTokens. Requests that left meanwhile
   * (cancelled, finished by the caller) are skipped. */
  update(output: SchedulerOutput, sampled: ReadonlyMap<number, number | readonly Branch[]>): void {
    if (!this.computedOutputs.has(output)) this.computed(output);
    const rows = new Map<Request, number>();
    for (const c of output.chunks) {
      const r = this.live.get(c.requestId);
      if (r?.status === "running" && c.sample) rows.set(r, (rows.get(r) ?? 0) + 1);
    }
    for (const [r, n] of rows) {
      invariant(n === r.seqs.length, `request ${r.id} sampled ${n} of its ${r.seqs.length} sequences`);
      const next = sampled.get(r.id);
      invariant(next !== undefined, `no sampled token for request ${r.id}`);
      this.branch(r, typeof next === "number" ? [{ parent: 0, token: next }] : next);
      if (r.numOutputTokens >= r.maxNewTokens) this.finish(r.id, "length");
    }
  }

  /** The overlapped form of update(), first half, right after `output`'s step was queued: each
   * sequence advances by its chunk, and each sampling one gets a placeholder token at the end, written
   * by resolve(). A group must have fanned out already (its sequences each continue themselves). */
  advance(output: SchedulerOutput): void {
    const sampled = new Set<Request>();
    for (const c of output.chunks) {
      const r = this.live.get(c.requestId);
      invariant(r?.status === "running", `advance of request ${c.requestId}, which is not running`);
      const s = r.seqs[c.seq];
      invariant(s.numComputedTokens === c.start, `advance of request ${r.id} out of order`);
      s.numComputedTokens += c.tokenIds.length;
      if (!c.sample) continue;
      invariant(r.width === 1 || r.numOutputTokens > 0, `request ${r.id} fans out in an overlapped step`);
      s.tokens.push(PLACEHOLDER_TOKEN);
      sampled.add(r);
    }
    for (const r of sampled) r.numPending++;
  }

  /** Second half, once the oldest advanced step's tokens are read: `tokens` has, by KV table id, the
   * token of each sequence that goes on; a sequence of a live request without one ends here (its
   * blocks are freed; a request with none left must be finished by the caller first). Requests that
   * left meanwhile are skipped. Writes each token over its placeholder, keys the full blocks computed
   * so far, and finishes requests at maxNewTokens. */
  resolve(output: SchedulerOutput, tokens: ReadonlyMap<number, number>): void {
    const sampled = new Set<number>();
    for (const c of output.chunks) if (c.sample) sampled.add(c.requestId);
    const touched = new Set<Request>();
    for (const c of output.chunks) {
      const r = this.live.get(c.requestId);
      if (r) touched.add(r);
    }
    for (const r of touched) {
      if (sampled.has(r.id)) {
        const kept = r.seqs.filter((s) => tokens.has(s.kvId));
        invariant(kept.length > 0, `no sampled token for request ${r.id}`);
        for (const s of r.seqs) {
          const token = tokens.get(s.kvId);
          if (token === undefined) this.kv.free(s.kvId);
          else s.tokens[s.tokens.length - r.numPending] = token; // its oldest placeholder
        }
        r.seqs = kept;
        r.numPending--;
      }
      // Below numComputedTokens every token is real now: the next placeholder sits at it.
      if (r.status === "running")
        for (const s of r.seqs)
          if (this.kv.has(s.kvId)) this.kv.commit(s.kvId, s.tokens, s.numComputedTokens);
      if (sampled.has(r.id) && r.numPending === 0 && r.numOutputTokens >= r.maxNewTokens)
        this.finish(r.id, "length");
    }
  }

  stats(): { numWaiting: number; numRunning: number; numRunningSequences: number; numPreemptions: number } {
    return {
      numWaiting: this.waiting.length,
      numRunning: this.running.length,
      numRunningSequences: this.numRunningSequences,
      numPreemptions: this.preemptions,
    };
  }

  /** r's sequences become `branches` (see Branch): forks happen before any token is appended. */
  private branch(r: Request, branches: readonly Branch[]): void {
    invariant(branches.length > 0, `request ${r.id} has no sequence left; finish it instead`);
    const old = r.seqs;
    const taken = new Set<number>();
    const next = branches.map(({ parent }) => {
      const p = old[parent];
      invariant(p !== undefined, `request ${r.id} has no sequence ${parent}`);
      if (!taken.has(parent)) {
        taken.add(parent);
        return p;
      }
      const kvId = -++this.forks;
      this.kv.fork(p.kvId, kvId);
      return p.fork(kvId);
    });
    old.forEach((s, i) => {
      if (!taken.has(i)) this.kv.free(s.kvId);
    });
    next.forEach((s, k) => {
      s.tokens.push(branches[k].token);
    });
    r.seqs = next;
  }

  /** Admits waiting requests in queue order while budget, logits rows, maxNumSeqs and blocks allow.
   * Stops at the first that does not fit (no overtaking). A request whose next uncached block is in
   * flight is skipped (deferred) and keeps its place: a later request that shares the block is
   * deferred the same way, while one with another prefix may use the budget the deferred one leaves
   * (stopping there would idle it for an iteration or two). Deferral lasts only while a live running
   * sequence is computing the block: its entry goes when the block is keyed or the sequence freed. */
  private admit(
    budget: number,
    logitRows: number,
    grants: Map<Request, Grant>,
    admits: (r: Request) => boolean,
  ): void {
    const noEvict = this.policy === "guaranteedNoEvict";
    let reserved = noEvict ? reservedFutureBlocks(this.kv, this.running) : 0;
    let rows = 0;
    for (const r of this.running) rows += r.width;
    let i = 0;
    while (i < this.waiting.length && budget > 0) {
      const r = this.waiting[i];
      if (rows + r.width > this.maxNumSeqs || !admits(r)) break;
      invariant(r.numPending === 0, `request ${r.id} readmitted before its pending token arrived`);
      const first = r.seqs[0];
      const hit = r.contextLogits ? NO_HIT : this.kv.findPrefix(first.tokens, r.cacheSalt, first.blockKeys);
      if (hit.nextInFlight) {
        i++;
        continue;
      }
      let sizes: number[] | null;
      if (r.seqs.length === 1) {
        const [n] = chunkSizes(r, budget, logitRows, () => true, hit.numTokens);
        if (n === 0) break;
        if (noEvict) {
          if (!fitsReservation(this.kv, r, hit, reserved)) break;
          reserved += mostBlocks(this.kv, r) - this.kv.blocksFor(hit.numTokens + n);
        }
        const got = this.kv.allocate(r.id, r.tokens, n, r.cacheSalt, hit);
        if (!got) break;
        r.numComputedTokens = got.numCachedTokens;
        r.numCachedTokens = got.numCachedTokens;
        this.computing(r, first, n);
        sizes = [n];
      } else sizes = this.readmitGroup(r, hit, budget, logitRows);
      if (!sizes) break;
      this.waiting.splice(i, 1);
      r.status = "running";
      r.admittedOrder = this.admissions++;
      this.running.push(r);
      rows += r.width;
      const n = sizes.reduce((a, b) => a + b, 0);
      const numLogitRows = grantLogitRows(r, sizes);
      grants.set(r, { request: r, sizes, numTokens: n, numLogitRows, copies: [] });
      budget -= n;
      logitRows -= numLogitRows;
    }
  }

  /** A preempted group (maxUtilization) comes back: its first sequence takes its cached prefix and
   * room for its chunk; the others wait to fork from it (joinPrefixes). Null, holding nothing, when
   * blocks run out. */
  private readmitGroup(r: Request, hit: PrefixHit, budget: number, logitRows: number): number[] | null {
    const first = r.seqs[0];
    const sizes = chunkSizes(r, budget, logitRows, (s) => s === first, hit.numTokens);
    const got = this.kv.allocate(first.kvId, first.tokens, sizes[0], r.cacheSalt, hit);
    if (!got) return null;
    first.numComputedTokens = got.numCachedTokens;
    r.numCachedTokens = got.numCachedTokens;
    this.computing(r, first, sizes[0]);
    return sizes;
  }

  /** Sequence s of r is granted a chunk of n tokens: the full blocks it completes are in flight (for
   * admission's deferral) up to its last real token (a placeholder's block is keyed once resolved).
   * A chunk that fills no block (most decodes) costs no lookup. */
  private computing(r: Request, s: Sequence, n: number): void {
    const end = Math.min(s.numComputedTokens + n, s.tokens.length - r.numPending);
    const bs = this.kv.tokensPerBlock;
    if (Math.floor(end / bs) > Math.floor(s.numComputedTokens / bs)) this.kv.computing(s.kvId, s.tokens, end);
  }

  /** Each of r's sequences without blocks (a readmitted group's) forks from the first sequence the
   * whole blocks they share, once the first has computed them. */
  private joinPrefixes(r: Request): void {
    const first = r.seqs[0];
    const bs = this.kv.tokensPerBlock;
    for (const s of r.seqs) {
      if (this.kv.has(s.kvId)) continue;
      const shared = sharedBlocks(first.tokens, s.tokens, bs) * bs;
      if (first.numComputedTokens < shared) continue;
      this.kv.forkPrefix(first.kvId, s.kvId, shared);
      s.numComputedTokens = shared;
    }
  }

  private preempt(r: Request): void {
    this.running.splice(this.running.indexOf(r), 1);
    for (const s of r.seqs) {
      this.kv.free(s.kvId);
      s.numComputedTokens = 0;
    }
    r.status = "waiting";
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

/** Tokens each of r's sequences computes this iteration: all that is left when the whole group fits
 * `budget` and `rows` logits rows (every sequence samples), else each stops one token short (none
 * samples) in row order. A context-logits request takes a row per token, so `rows` bounds its tokens
 * too. Sequences not `ready` (waiting for their shared blocks) compute nothing, and then none samples.
 * `cached`: tokens the first sequence finds in the prefix cache (admission). */
function chunkSizes(
  r: Request,
  budget: number,
  rows: number,
  ready: (s: Sequence) => boolean,
  cached = 0,
): number[] {
  const left = r.seqs.map((s, i) => (ready(s) ? s.numUncomputed - (i === 0 ? cached : 0) : -1));
  if (r.contextLogits) budget = Math.min(budget, rows);
  const sampling = r.contextLogits ? 0 : left.filter((u) => u > 0).length;
  if (left.every((u) => u >= 0) && left.reduce((a, b) => a + b, 0) <= budget && sampling <= rows) return left;
  return left.map((u) => {
    const n = Math.max(0, Math.min(u - 1, budget));
    budget -= n;
    return n;
  });
}

/** Whole blocks at the start of two sequences' tokens that hold the same tokens, leaving the last
 * token of each to compute (its logits are needed). */
function sharedBlocks(a: readonly number[], b: readonly number[], bs: number): number {
  const most = Math.floor((Math.min(a.length, b.length) - 1) / bs);
  for (let k = 0; k < most; k++) {
    for (let i = k * bs; i < (k + 1) * bs; i++) if (a[i] !== b[i]) return k;
  }
  return most;
}
