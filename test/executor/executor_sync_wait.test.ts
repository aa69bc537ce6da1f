// The synchronous step (host logits: beams, LogitsProcessors) does not block the event loop: the
// executor queues it (enqueueForward, or enqueueSample for a step sampled on the device) and turns the
// event loop until the device has it (step_pipeline.ts runNow, readSync). On the CPU backend, with a
// device that needs time (forwardReady and sampleReady say no some times per ticket): timers run
// during each step, a burst of arrivals is admitted at once, a cancel during the wait ends the request
// and frees its blocks once, and every request's tokens are the blocking loop's (the same backend
// with its queues hidden).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach, describe, test } from "node:test";
import type { ExecutionBackend, ForwardTicket, SampleTicket } from "../../src/backends/backend.ts";
import { buildEngine } from "../../src/builder/builder.ts";
import {
  Executor,
  type ExecutorOptions,
  type ExecutorRequest,
  type IterationStats,
} from "../../src/executor/executor.ts";
import { Session } from "../../src/runtime/session.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";
import { assertIdle, collect, mulberry, ticks, withoutQueue } from "./executor_helpers.ts";
import { collectGroup, type GroupResult } from "./group_helpers.ts";

const model = writeTinyModel("llama", 13);
const dir = join(model.dir, "engine");
buildEngine(model.dir, dir, { kvBlockSize: 4 });
after(() => model.cleanup());

const open: Executor[] = [];
/** The tickers of slow() to stop (a test that failed left its own running). */
const tickers: (() => void)[] = [];
afterEach(async () => {
  for (const stop of tickers.splice(0)) stop();
  for (const ex of open.splice(0)) {
    assertIdle(ex);
    await ex.shutdown();
  }
});

/** Per ticket, how many times the device says "not yet" before "ready". */
type Polls = (ticketId: number) => number;

/** What the loop asked of the slow device: "F<id>" a forward queued, "f<id>" a poll answered no,
 * "C<id>" a forward read ("C<id>!" before it was ready); "S<id>", "s<id>", "c<id>" the same for
 * sampled steps. `turns[k]`: the ticker's count (event-loop turns) at log entry k. */
interface Spy {
  log: string[];
  turns: number[];
  stats: IterationStats[];
}

/** An executor over the CPU backend whose forward and sample queues answer after `polls` polls. */
function slow(polls: Polls, options: ExecutorOptions = {}): { ex: Executor; spy: Spy; ticker: () => void } {
  const spy: Spy = { log: [], turns: [], stats: [] };
  let turns = 0;
  let ticking = true;
  const tick = () => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const note = (e: string) => {
    spy.log.push(e);
    spy.turns.push(turns);
  };
  const session = Session.open(dir);
  const b = session.backend;
  const enqueueForward = (b.enqueueForward as NonNullable<ExecutionBackend["enqueueForward"]>).bind(b);
  const collectForward = (b.collectForward as NonNullable<ExecutionBackend["collectForward"]>).bind(b);
  const enqueueSample = (b.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>).bind(b);
  const collectSample = (b.collectSample as NonNullable<ExecutionBackend["collectSample"]>).bind(b);
  const left = new Map<string, number>();
  const poll = (key: string, id: number) => {
    const n = left.get(key) ?? polls(id);
    if (n <= 0) return true;
    left.set(key, n - 1);
    return false;
  };
  b.enqueueForward = (step) => {
    const t = enqueueForward(step);
    note(`F${t.id}`);
    return t;
  };
  b.forwardReady = (t: ForwardTicket) => {
    if (poll(`F${t.id}`, t.id)) return true;
    note(`f${t.id}`);
    return false;
  };
  b.collectForward = (t: ForwardTicket) => {
    note(`C${t.id}${(left.get(`F${t.id}`) ?? polls(t.id)) > 0 ? "!" : ""}`);
    return collectForward(t);
  };
  b.enqueueSample = (step, p, t, feed) => {
    const ticket = enqueueSample(step, p, t, feed);
    note(`S${ticket.id}`);
    return ticket;
  };
  b.sampleReady = (t: SampleTicket) => {
    if (poll(`S${t.id}`, t.id)) return true;
    note(`s${t.id}`);
    return false;
  };
  b.collectSample = (t: SampleTicket) => {
    note(`c${t.id}`);
    return collectSample(t);
  };
  const ex = new Executor(session, { ...options, onIteration: (s) => spy.stats.push(s) });
  open.push(ex);
  const ticker = () => {
    ticking = false;
  };
  tickers.push(ticker);
  return { ex, spy, ticker };
}

/** The same engine with the backend's queues hidden: every step blocks in forward / forwardSample. */
function blocking(options: ExecutorOptions = {}): Executor {
  const session = withoutQueue(Session.open(dir));
  const ex = new Executor(session, options);
  open.push(ex);
  return ex;
}

function prompt(i: number, len: number): number[] {
  return Array.from({ length: len }, (_, k) => (i * 11 + k * 7 + 3) % 61);
}

const BEAM: ExecutorRequest = { prompt: prompt(1, 6), maxNewTokens: 8, beamWidth: 2, endId: [] };

describe("executor: the synchronous step turns the event loop while the device computes", () => {
  test("a beam request: every step is queued, then read once ready; timers run meanwhile", async () => {
    const { ex, spy, ticker } = slow(() => 3);
    const got = await collectGroup(ex, ex.enqueue(BEAM));
    ticker();
    const ref = blocking();
    const want = await collectGroup(ref, ref.enqueue(BEAM));
    assert.deepEqual(
      got.seqs.map((q) => [q.tokens, q.logProbs, q.score]),
      want.seqs.map((q) => [q.tokens, q.logProbs, q.score]),
    );
    const reads = spy.log.flatMap((e, k) => (e.startsWith("C") ? [k] : []));
    assert.ok(reads.length >= 8, `the beam's steps were not queued: ${spy.log.join(" ")}`);
    for (const k of reads) {
      const e = spy.log[k];
      assert.ok(!e.endsWith("!"), `${e} read before it was ready: ${spy.log.join(" ")}`);
      const id = e.slice(1);
      const queued = spy.log.indexOf(`F${id}`);
      const polls = spy.log.filter((x) => x === `f${id}`).length;
      assert.equal(polls, 3, `${e}: ${spy.log.join(" ")}`);
      assert.ok(spy.turns[k] - spy.turns[queued] >= 2, `${e}: the event loop did not turn during the step`);
    }
    assert.ok(spy.stats.every((s) => !s.overlapped && s.hostWaitMs >= 0));
  });

  test("a LogitsProcessor request beside a plain one: tokens as the blocking loop's", async () => {
    const five = {
      process: (logits: Float32Array) => {
        logits[5] += 100;
      },
    };
    const reqs: ExecutorRequest[] = [
      { prompt: prompt(2, 5), maxNewTokens: 4, greedy: true, endId: [], logitsProcessors: five },
      { prompt: prompt(3, 7), maxNewTokens: 6, greedy: true, endId: [] },
    ];
    const { ex, spy } = slow(() => 2);
    const got = await Promise.all(reqs.map((r) => collect(ex, ex.enqueue(r))));
    const ref = blocking();
    const want = await Promise.all(reqs.map((r) => collect(ref, ref.enqueue(r))));
    assert.deepEqual(got[0].tokens, [5, 5, 5, 5]);
    assert.deepEqual(
      got.map((g) => [g.tokens, g.logProbs]),
      want.map((w) => [w.tokens, w.logProbs]),
    );
    assert.ok(spy.log.includes("f0"), `no step waited for: ${spy.log.join(" ")}`);
  });

  test("a burst of arrivals during a beam request's steps is admitted at once", async () => {
    const N = 12;
    const { ex, spy, ticker } = slow(() => 30, { maxNumSeqs: 32 });
    const beam = ex.enqueue({ ...BEAM, maxNewTokens: 12 });
    const beamDone = collectGroup(ex, beam);
    while (ex.stats().numIterations < 2) await ticks(1);
    // One arrival per turn of the event loop, as a server accepts one connection per turn.
    const at: number[] = [];
    const ids: number[] = [];
    for (let i = 0; i < N; i++) {
      at.push(ex.stats().numIterations);
      ids.push(ex.enqueue({ prompt: prompt(10 + i, 3), maxNewTokens: 2, greedy: true, endId: [] }));
      await ticks(1);
    }
    const last = Math.max(...at);
    const got = await Promise.all(ids.map((id) => collect(ex, id)));
    await beamDone;
    ticker();
    for (const g of got) assert.equal(g.tokens.length, 2);
    const spread = last - Math.min(...at);
    assert.ok(spread <= 1, `${N} arrivals took ${spread} steps (at steps ${at.join(" ")})`);
    // Every arrival is running by the step after the last one's (admission in one schedule).
    const admitted = spy.stats.find((s) => s.iteration > last && s.numQueued === 0 && s.numContext > 0);
    assert.ok(admitted && admitted.iteration <= last + 2, JSON.stringify(spy.stats.map((s) => s.numQueued)));
  });
});

describe("executor: a cancel while a synchronous step is on the device", () => {
  test("a beam request cancelled mid-step ends cancelled; its blocks are freed once, its step read", async () => {
    const { ex, spy, ticker } = slow(() => 2);
    const id = ex.enqueue({ ...BEAM, maxNewTokens: 30 });
    let cancelledAt = -1;
    const b = ex.session.backend;
    const ready = (b.forwardReady as NonNullable<ExecutionBackend["forwardReady"]>).bind(b);
    b.forwardReady = (t: ForwardTicket) => {
      if (t.id === 3 && cancelledAt < 0) {
        assert.ok(ex.cancel(id));
        cancelledAt = spy.log.length;
        assert.equal(ex.stats().kv.numUsed, 0, "the blocks were not freed at the cancel");
      }
      return ready(t);
    };
    const g = await collectGroup(ex, id);
    ticker();
    assert.ok(cancelledAt >= 0, `the loop never polled the fourth step: ${spy.log.join(" ")}`);
    assert.ok(g.events.at(-1)?.finishReason === "cancelled", JSON.stringify(g.events.at(-1)));
    await ticks(3);
    // The step in flight at the cancel was read (and dropped); nothing queued after it.
    const queued = spy.log.filter((e) => e.startsWith("F")).length;
    assert.equal(queued, spy.log.filter((e) => e.startsWith("C")).length);
    assert.equal(queued, 4, spy.log.join(" "));
    assert.equal(ex.stats().numRunning, 0);
  });

  test("a LogitsProcessor request cancelled mid-step: its processor is not called after the cancel", async () => {
    const { ex, ticker } = slow(() => 2);
    let calls = 0;
    let cancelled = false;
    let callsAfter = 0;
    const count = {
      process: () => {
        calls++;
        if (cancelled) callsAfter++;
      },
    };
    const p = ex.enqueue({ prompt: prompt(4, 5), maxNewTokens: 20, greedy: true, logitsProcessors: count });
    const other = ex.enqueue({ prompt: prompt(5, 5), maxNewTokens: 6, greedy: true, endId: [] });
    const b = ex.session.backend;
    const ready = (b.forwardReady as NonNullable<ExecutionBackend["forwardReady"]>).bind(b);
    b.forwardReady = (t: ForwardTicket) => {
      if (t.id === 2 && !cancelled) {
        assert.ok(ex.cancel(p));
        cancelled = true;
      }
      return ready(t);
    };
    const [gp, go] = await Promise.all([collect(ex, p), collect(ex, other)]);
    ticker();
    assert.ok(cancelled, "the loop never polled the third step");
    assert.equal(gp.finishReason, "cancelled");
    assert.equal(gp.tokens.length, 2, "the tokens of the steps read before the cancel");
    assert.equal(calls, 2);
    assert.equal(callsAfter, 0);
    const ref = blocking();
    const want = await collect(
      ref,
      ref.enqueue({ prompt: prompt(5, 5), maxNewTokens: 6, greedy: true, endId: [] }),
    );
    assert.deepEqual([go.tokens, go.logProbs], [want.tokens, want.logProbs]);
  });
});

interface Job {
  req: ExecutorRequest;
  /** Event-loop turns after the previous arrival. */
  delay: number;
}

/** Runs the jobs, each `delay` event-loop turns after the previous. */
async function runJobs(ex: Executor, js: readonly Job[]): Promise<GroupResult[]> {
  const pending: Promise<GroupResult>[] = [];
  for (const j of js) {
    await ticks(j.delay);
    pending.push(collectGroup(ex, ex.enqueue(j.req)));
  }
  return Promise.all(pending);
}

describe("executor: randomised mixes with beams and LogitsProcessors equal the blocking loop", () => {
  for (const seed of [1, 2, 3]) {
    test(`seed ${seed}: beams, processors, top log-probs, sampling, arrivals`, async () => {
      const r = mulberry(seed);
      const pick = (n: number) => Math.floor(r() * n);
      const opts: ExecutorOptions = { maxNumSeqs: 4 + pick(6), maxNumTokens: 8 + pick(24) };
      // Kinds in turn (beams, a LogitsProcessor, top log-probs, plain), the rest random.
      const js: Job[] = Array.from({ length: 12 }, (_, i) => {
        const base = {
          prompt: prompt(20 + i, 2 + pick(9)),
          maxNewTokens: 1 + pick(8),
          endId: r() < 0.3 ? [pick(61), pick(61)] : [],
        };
        const sampling = r() < 0.5 ? { greedy: true } : { temperature: 0.9, topK: 16, seed: pick(1000) };
        const tok = pick(61);
        const processor = {
          process: (logits: Float32Array, _v: number, _seqs: unknown, step: number) => {
            logits[(tok + 7 * step) % 61] += 3;
          },
        };
        const kinds: ExecutorRequest[] = [
          { ...base, beamWidth: 2 + pick(2) },
          { ...base, ...sampling, logitsProcessors: processor },
          { ...base, ...sampling, topLogProbs: 2 },
          { ...base, ...sampling },
        ];
        return { req: kinds[i % 4], delay: pick(4) };
      });
      const { ex, spy, ticker } = slow((id) => (id * 5 + seed) % 4, opts);
      const got = await runJobs(ex, js);
      ticker();
      const want = await runJobs(blocking(opts), js);
      for (const [i, g] of got.entries()) {
        const w = want[i];
        assert.deepEqual(
          g.seqs.map((q) => [q.tokens, q.logProbs, q.finishReason]),
          w.seqs.map((q) => [q.tokens, q.logProbs, q.finishReason]),
          `request ${i}`,
        );
      }
      assert.ok(
        spy.log.some((e) => e.startsWith("f")),
        "no slow step: the test lost its point",
      );
    });
  }
});
