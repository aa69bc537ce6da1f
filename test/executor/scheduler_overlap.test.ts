// The scheduler driven as the overlapped loop drives it (advance when a step is queued, resolve when it
// is read, step N+1 scheduled before N is read) over a fake device whose KV cache stores token ids
// and which runs each step when it is queued, its decodes fed with the previous step's samples. Every
// sampled row checks that the cache read through its block table holds exactly the sequence's tokens,
// so a slot given to a placeholder, a block freed while a step still writes it, or a block keyed
// before its real token is known shows up as a wrong context; every request's tokens must equal the
// request run alone, through stops read one step late, cancels, preemption and prefix hits.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { KvCacheManager } from "../../src/executor/kv_cache_manager.ts";
import type { Request } from "../../src/executor/request.ts";
import { PLACEHOLDER_TOKEN, Scheduler, type SchedulerConfig } from "../../src/executor/scheduler.ts";
import type { SchedulerOutput } from "../../src/executor/scheduler_output.ts";
import { mulberry } from "./executor_helpers.ts";
import { nextToken } from "./fake_engine.ts";
import { assertIdle, range } from "./kv_helpers.ts";

/** A step run on the fake device, not read yet: each sampling request's token and its position. */
interface Queued {
  out: SchedulerOutput;
  sampled: Map<number, { token: number; position: number }>;
}

class OverlapEngine {
  private readonly slots: Int32Array;
  private queued: Queued | null = null;
  /** Each request's tokens as the host read them, in order. */
  readonly outputs = new Map<number, number[]>();
  steps = 0;

  constructor(
    private readonly s: Scheduler,
    /** Whether the host ends a request at this token (read one step after it was sampled). */
    private readonly stops: (token: number) => boolean,
  ) {
    this.slots = new Int32Array(s.kv.numBlocks * s.kv.tokensPerBlock).fill(-1);
  }

  /** One loop iteration: schedule, queue (run) the step fed from the queued one, advance, then read
   * the queued one. */
  iterate(now = 0): void {
    const out = this.s.schedule(now);
    if (out.chunks.length === 0) {
      if (this.queued) this.read(this.queued);
      this.queued = null;
      return;
    }
    this.steps++;
    const sampled = this.run(out, this.queued);
    this.s.advance(out);
    const prev = this.queued;
    this.queued = { out, sampled };
    if (prev) this.read(prev);
    this.s.kv.audit();
  }

  drain(limit = 10_000): void {
    for (let i = 0; this.s.hasWork || this.queued; i++) {
      assert.ok(i < limit, "no progress");
      this.iterate();
    }
  }

  /** The device: block copies, then every chunk's tokens into its slots (a decode of the previous
   * step's placeholder takes that step's sample), then each sampling row reads its context. */
  private run(out: SchedulerOutput, prev: Queued | null): Queued["sampled"] {
    const bs = this.s.kv.tokensPerBlock;
    for (const { src, dst } of out.blockCopies) this.slots.copyWithin(dst * bs, src * bs, (src + 1) * bs);
    const slot = (table: Int32Array, pos: number) => table[Math.floor(pos / bs)] * bs + (pos % bs);
    const sampled: Queued["sampled"] = new Map();
    for (const c of out.chunks) {
      const fed = prev?.sampled.get(c.requestId);
      c.tokenIds.forEach((t, i) => {
        const pos = c.start + i;
        const real = fed && fed.position === pos ? fed.token : t;
        this.slots[slot(c.blockTable, pos)] = real;
      });
    }
    for (const c of out.chunks) {
      if (!c.sample) continue;
      const end = c.start + c.tokenIds.length;
      const context = Array.from({ length: end }, (_, p) => this.slots[slot(c.blockTable, p)]);
      const r = this.s.get(c.requestId) as Request;
      const known = r.tokens.slice(0, end);
      const fed = prev?.sampled.get(c.requestId);
      if (fed && fed.position < end) {
        assert.equal(known[fed.position], PLACEHOLDER_TOKEN, "a fed position holds its placeholder");
        known[fed.position] = fed.token;
      }
      assert.deepEqual(context, known, `the KV cache of request ${r.id} holds other tokens`);
      sampled.set(c.requestId, { token: nextToken(context), position: end });
    }
    return sampled;
  }

  /** The host reads a step: each live request takes its token or stops on it. */
  private read(q: Queued): void {
    const next = new Map<number, number>();
    for (const [id, { token }] of q.sampled) {
      if (!this.s.get(id)) continue; // cancelled since: its token is dropped
      const o = this.outputs.get(id) ?? [];
      o.push(token);
      this.outputs.set(id, o);
      if (this.stops(token)) this.s.finish(id, "stop");
      else next.set(id, token);
    }
    this.s.resolve(q.out, next);
  }
}

/** The tokens a request generates alone, up to and with its stop token. */
function alone(prompt: readonly number[], maxNewTokens: number, stops: (t: number) => boolean): number[] {
  const t = [...prompt];
  for (let i = 0; i < maxNewTokens; i++) {
    const x = nextToken(t);
    t.push(x);
    if (stops(x)) break;
  }
  return t.slice(prompt.length);
}

function setup(numBlocks: number, config: SchedulerConfig, stops: (t: number) => boolean) {
  const s = new Scheduler(new KvCacheManager(numBlocks, 4), config);
  return { s, e: new OverlapEngine(s, stops) };
}

const never = () => false;

describe("Scheduler, overlapped", () => {
  test("a decode is scheduled on its placeholder; a request's last token is not stepped past", () => {
    const { s, e } = setup(32, { maxNumTokens: 16 }, never);
    s.add({ id: 1, promptIds: range(10, 3), maxNewTokens: 3 });
    e.iterate();
    const r = s.get(1) as Request;
    assert.deepEqual([r.tokens.length, r.numComputedTokens, r.numPending], [4, 3, 1]);
    e.iterate(); // queues the decode of the placeholder, then reads the prefill's token
    assert.deepEqual([r.tokens.length, r.numComputedTokens, r.numPending], [5, 4, 1]);
    assert.equal(r.tokens[3], e.outputs.get(1)?.[0], "the placeholder became the token read");
    e.iterate();
    assert.deepEqual([r.tokens.length, r.numPending], [6, 1]);
    e.iterate(); // nothing to schedule: the pending token is the last one; it is read, r ends
    assert.equal(s.get(1), undefined);
    assert.equal(e.steps, 3, "no step past maxNewTokens");
    assert.deepEqual(e.outputs.get(1), alone(range(10, 3), 3, never));
    assertIdle(s.kv);
  });

  test("admission stops at the first waiting request `admits` refuses; it is next afterwards", () => {
    const s = new Scheduler(new KvCacheManager(32, 4), { maxNumTokens: 64 });
    for (const id of [1, 2, 3]) s.add({ id, promptIds: range(10 * id, 3), maxNewTokens: 2 });
    const out = s.schedule(0, (r) => r.id !== 2);
    assert.deepEqual(
      out.chunks.map((c) => c.requestId),
      [1],
      "request 3 does not overtake 2",
    );
    assert.equal(s.firstWaiting?.id, 2);
    for (const id of [1, 2, 3]) s.finish(id, "cancelled");
    assertIdle(s.kv);
  });

  test("full blocks are keyed with the tokens read, never a placeholder", () => {
    const { s, e } = setup(32, { maxNumTokens: 16 }, never);
    s.add({ id: 1, promptIds: range(10, 3), maxNewTokens: 8 });
    e.drain();
    const out = e.outputs.get(1) as number[];
    assert.deepEqual(out, alone(range(10, 3), 8, never));
    // Blocks of 4: [10 11 12 o0] [o1 o2 o3 o4] were each completed by a decode queued before the
    // token it completes was read; a prompt of those tokens and one more must hit both.
    const b = s.add({ id: 2, promptIds: [...range(10, 3), ...out.slice(0, 5), 999], maxNewTokens: 1 });
    e.drain();
    assert.equal(b.numCachedTokens, 8);
    assertIdle(s.kv);
  });

  test("a request sharing the prefix of one admitted in the step in flight waits until it is read", () => {
    const prefix = range(100, 16); // 4 whole blocks
    for (const end of ["read", "cancelled", "timed out"] as const) {
      const { s, e } = setup(32, { maxNumTokens: 64 }, never);
      s.add({ id: 1, promptIds: [...prefix, 1], maxNewTokens: 4, allottedTimeMs: 5 });
      const b = s.add({ id: 2, promptIds: [...prefix, 2, 3], maxNewTokens: 4 });
      e.iterate(); // queues request 1's prompt; 2 waits for its 4 blocks
      assert.deepEqual([b.status, s.kv.numInFlight], ["waiting", 4], end);
      if (end === "cancelled") s.cancel(1);
      // Read or ended, request 1's blocks are keyed (the queued step computes them): 2 hits them as soon
      // as 1's step is read, or at once when 1 ends.
      e.iterate(end === "timed out" ? 5 : 0);
      assert.equal(b.status, end === "read" ? "waiting" : "running", end);
      e.iterate();
      assert.deepEqual([b.status, b.numCachedTokens], ["running", 16], end);
      e.drain();
      assert.deepEqual(e.outputs.get(2), alone([...prefix, 2, 3], 4, never), end);
      assertIdle(s.kv);
    }
  });

  test("preempting the request a waiting one defers to drops its blocks in flight", () => {
    const prefix = range(100, 16);
    const { s, e } = setup(6, { maxNumTokens: 32, policy: "maxUtilization" }, never);
    s.add({ id: 0, promptIds: range(500, 3), maxNewTokens: 12, priority: 0.9 });
    e.iterate();
    const a = s.add({ id: 1, promptIds: [...prefix, 1], maxNewTokens: 3 });
    const b = s.add({ id: 2, promptIds: [...prefix, 2, 3], maxNewTokens: 3 });
    e.iterate();
    assert.deepEqual([a.status, b.status, s.kv.numInFlight], ["running", "waiting", 4]);
    e.iterate(); // request 0 needs a block: 1 is preempted before its step is read
    assert.deepEqual([a.numPreemptions, a.status, s.kv.numInFlight], [1, "waiting", 0]);
    e.drain();
    // 1 recomputes its prompt once blocks are free, and 2 then waits for it again and hits it.
    assert.deepEqual([a.numCachedTokens, b.numCachedTokens], [0, 16]);
    assert.deepEqual(e.outputs.get(1), alone([...prefix, 1], 3, never));
    assert.deepEqual(e.outputs.get(2), alone([...prefix, 2, 3], 3, never));
    assertIdle(s.kv);
  });

  for (const seed of [1, 2, 3, 4, 6, 7, 8, 10]) {
    test(`seed ${seed}: stops read late, cancels, preemption and prefix hits keep every token`, () => {
      const r = mulberry(seed);
      const pick = (n: number) => Math.floor(r() * n);
      const stops = (t: number) => t % 11 === 0;
      const maxNumTokens = 3 + pick(20);
      const { s, e } = setup(
        8 + pick(5),
        { maxNumTokens, maxNumSeqs: Math.min(maxNumTokens, 3 + pick(6)), policy: "maxUtilization" },
        stops,
      );
      const stem = range(200 + seed, 12);
      const prompts = new Map<number, { ids: number[]; max: number }>();
      const cancelled = new Set<number>();
      let id = 0;
      for (let it = 0; it < 400 && (id < 30 || s.hasWork); it++) {
        if (id < 30 && r() < 0.4) {
          id++;
          const ids = [...stem.slice(0, pick(13)), ...range(500 + id * 7, 1 + pick(6))];
          const max = 1 + pick(12);
          prompts.set(id, { ids, max });
          s.add({ id, promptIds: ids, maxNewTokens: max });
        }
        if (r() < 0.05 && id > 0) {
          const victim = 1 + pick(id);
          if (s.cancel(victim)) cancelled.add(victim);
        }
        e.iterate();
      }
      e.drain();
      for (const [k, { ids, max }] of prompts) {
        const want = alone(ids, max, stops);
        const got = e.outputs.get(k) ?? [];
        if (cancelled.has(k)) assert.deepEqual(got, want.slice(0, got.length), `request ${k} (cancelled)`);
        else assert.deepEqual(got, want, `request ${k}`);
      }
      const st = s.stats();
      assert.ok(st.numPreemptions > 0, "no preemption: the test lost its point");
      assert.ok(s.kv.stats().prefixHitTokens > 0, "no prefix hit: the test lost its point");
      assert.ok(
        [...prompts.keys()].some((k) => !cancelled.has(k) && stops(e.outputs.get(k)?.at(-1) ?? 1)),
        "no stop: the test lost its point",
      );
      assertIdle(s.kv);
    });
  }
});
