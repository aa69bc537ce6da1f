// The overlapped executor loop on the CPU backend, which implements enqueueSample/collectSample as the
// CUDA one does: in a steady decode step N+1 is queued (fed N's tokens) before step N is read; a
// request that N's token ends wastes its row of N+1 and nothing else; a live request whose next
// inputs need its token on the host turns the overlap off; and over random mixes of arrivals, stops,
// cancels and preemption every request gets the events the synchronous loop (the same executor over
// the backend with its queue hidden) gives it.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach, describe, test } from "node:test";
import type { ExecutionBackend, SampleTicket } from "../../src/backends/backend.ts";
import { buildEngine } from "../../src/builder/builder.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import {
  Executor,
  type ExecutorOptions,
  type ExecutorRequest,
  type IterationStats,
} from "../../src/executor/executor.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { Session } from "../../src/runtime/session.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";
import { assertIdle, type Collected, collect, mulberry, ticks, withoutQueue } from "./executor_helpers.ts";
import { collectGroup } from "./group_helpers.ts";

const model = writeTinyModel("llama", 11);
const dir = join(model.dir, "engine");
buildEngine(model.dir, dir, { kvBlockSize: 4 });
const runner = ModelRunner.fromEngine(dir);
const cache = tempCache();
const bundled = ModelRunner.fromDir(BUNDLED_MODEL_DIR, { backend: "cpu", cacheDir: cache.dir });
after(() => {
  runner.dispose();
  model.cleanup();
  bundled.dispose();
  cache.cleanup();
});

const open: Executor[] = [];
afterEach(async () => {
  for (const ex of open.splice(0)) {
    assertIdle(ex);
    await ex.shutdown();
  }
});

/** What the loop asked of the backend's queue: "q<id>" when a step is queued, "c<id>" when read;
 * per ticket its sampled rows and how many of its sequences were fed on the device. */
interface Spy {
  log: string[];
  rows: number[];
  fed: number[];
  stats: IterationStats[];
}

/** A device that needs time: sampleReady says no `polls(ticket id)` times for each ticket before yes.
 * The log gets "p<id>" per poll answered no, and "c<id>!" for a read of a ticket still not ready. */
type SlowDevice = (ticketId: number) => number;

function spied(
  options: ExecutorOptions = {},
  engineDir = dir,
  slow?: SlowDevice,
): { ex: Executor; spy: Spy } {
  const spy: Spy = { log: [], rows: [], fed: [], stats: [] };
  const session = Session.open(engineDir);
  const b = session.backend;
  const enqueue = (b.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>).bind(b);
  const collectSample = (b.collectSample as NonNullable<ExecutionBackend["collectSample"]>).bind(b);
  b.enqueueSample = (step, p, t, feed) => {
    const ticket = enqueue(step, p, t, feed);
    spy.log.push(`q${ticket.id}`);
    spy.rows.push(ticket.rows);
    spy.fed.push(feed ? feed.rows.filter((r) => r >= 0).length : 0);
    return ticket;
  };
  const left = new Map<number, number>();
  const notReady = (id: number) => (left.get(id) ?? slow?.(id) ?? 0) > 0;
  b.collectSample = (ticket: SampleTicket) => {
    spy.log.push(`c${ticket.id}${notReady(ticket.id) ? "!" : ""}`);
    return collectSample(ticket);
  };
  if (slow)
    b.sampleReady = (ticket: SampleTicket) => {
      if (!notReady(ticket.id)) return true;
      left.set(ticket.id, (left.get(ticket.id) ?? slow(ticket.id)) - 1);
      spy.log.push(`p${ticket.id}`);
      return false;
    };
  const ex = new Executor(session, { ...options, onIteration: (s) => spy.stats.push(s) });
  open.push(ex);
  return { ex, spy };
}

/** The same engine over a backend whose step queues are hidden: the synchronous loop, blocking. */
function synchronous(options: ExecutorOptions = {}): Executor {
  const session = withoutQueue(Session.open(dir));
  const ex = new Executor(session, options);
  open.push(ex);
  return ex;
}

function prompt(i: number, len: number): number[] {
  return Array.from({ length: len }, (_, k) => (i * 13 + k * 5 + 2) % 61);
}

async function alone(ids: number[], maxNewTokens: number, endId: number[] = []): Promise<number[]> {
  const [out] = await runner.generate({ ids }, { maxNewTokens, greedy: true, endId });
  return out.outputIds;
}

describe("executor overlap: the next step is queued before the last is read", () => {
  test("a steady decode of three requests: step N+1 queued (fed) before step N is read", async () => {
    const { ex, spy } = spied();
    const ids = [0, 1, 2].map((i) =>
      ex.enqueue({ prompt: prompt(i, 5), maxNewTokens: 6, greedy: true, endId: [] }),
    );
    const got = await Promise.all(ids.map((id) => collect(ex, id)));
    for (const [i, g] of got.entries()) assert.deepEqual(g.tokens, await alone(prompt(i, 5), 6));
    // One prefill step, then five decodes; none after the last tokens (known to be the last).
    assert.deepEqual(spy.rows, [3, 3, 3, 3, 3, 3]);
    assert.deepEqual(spy.fed, [0, 3, 3, 3, 3, 3]);
    for (let k = 1; k < spy.rows.length; k++)
      assert.ok(spy.log.indexOf(`q${k}`) < spy.log.indexOf(`c${k - 1}`), `step ${k}: ${spy.log.join(" ")}`);
    assert.deepEqual(
      spy.stats.map((s) => s.overlapped),
      [false, true, true, true, true, true],
    );
    for (const s of spy.stats) assert.ok(s.hostWaitMs >= 0 && s.hostMs >= 0 && Number.isFinite(s.hostMs));
  });

  test("a request that step N ends: its row of N+1 is dropped, its tokens exact", async () => {
    const free = await alone(prompt(1, 6), 10);
    const at = free.findIndex((t, i) => i >= 2 && !free.slice(0, i).includes(t));
    assert.ok(at >= 2, "no token to end on: the test lost its point");
    const { ex, spy } = spied();
    const a = ex.enqueue({ prompt: prompt(1, 6), maxNewTokens: 10, greedy: true, endId: free[at] });
    const b = ex.enqueue({ prompt: prompt(2, 6), maxNewTokens: 10, greedy: true, endId: [] });
    const [ga, gb] = await Promise.all([collect(ex, a), collect(ex, b)]);
    assert.deepEqual(ga.tokens, await alone(prompt(1, 6), 10, [free[at]]));
    assert.deepEqual([ga.tokens.length, ga.finishReason], [at + 1, "end"]);
    assert.deepEqual(gb.tokens, await alone(prompt(2, 6), 10));
    // a's token `at` comes from step `at`; step at+1 was queued with a's row before it was read.
    assert.equal(spy.rows[at + 1], 2, "a's row in the step after its end");
    assert.equal(spy.rows[at + 2], 1, "a's row once its end was read");
    assert.equal(
      spy.rows.reduce((x, y) => x + y, 0),
      ga.tokens.length + gb.tokens.length + 1,
      "exactly one wasted row",
    );
  });

  test("bundled model: a text stop word beside another request; text and tokens as generate's", async () => {
    const p = "In a small village by the sea there lived an old fisherman who";
    const [free] = await bundled.generate(p, { maxNewTokens: 16, greedy: true, ignoreEos: true });
    const word = free.text.trim().split(/\s+/)[2];
    assert.ok(word, `no third word in ${JSON.stringify(free.text)}`);
    const [want] = await bundled.generate(p, { maxNewTokens: 16, greedy: true, stopWords: [word] });
    const [other] = await bundled.generate("Once upon a time", { maxNewTokens: 16, greedy: true });
    assert.equal(want.finishReason, "stop");
    const { ex, spy } = spied({}, bundled.engine.dir);
    const a = ex.enqueue({ prompt: p, maxNewTokens: 16, greedy: true, stopWords: [word], streaming: true });
    const b = ex.enqueue({ prompt: "Once upon a time", maxNewTokens: 16, greedy: true });
    const [ga, gb] = await Promise.all([collect(ex, a), collect(ex, b)]);
    assert.deepEqual([ga.tokens, ga.text, ga.finishReason], [want.outputIds, want.text, "stop"]);
    assert.deepEqual([gb.tokens, gb.text], [other.outputIds, other.text]);
    const n = want.outputIds.length;
    assert.ok(n < 16 && other.outputIds.length === 16, "the stop must come first: the test lost its point");
    assert.deepEqual([spy.rows[n], spy.rows[n + 1]], [2, 1], "a's row in the step after its stop, then none");
    assert.ok(spy.stats.slice(1).every((s) => s.overlapped));
  });

  test("a cancel between iterations drops the row in flight and frees the blocks at once", async () => {
    const { ex, spy } = spied();
    const id = ex.enqueue({
      prompt: prompt(3, 9),
      maxNewTokens: 40,
      greedy: true,
      endId: [],
      streaming: true,
    });
    const it = ex.results(id)[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    assert.ok(ex.cancel(id));
    assert.equal(ex.stats().kv.numUsed, 0);
    const rest: Collected["events"] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
    assert.deepEqual(
      rest.map((e) => [e.tokenIds, e.finishReason]),
      [[[], "cancelled"]],
    );
    await ticks(3);
    assert.equal(
      spy.log.filter((e) => e.startsWith("q")).length,
      spy.log.filter((e) => e.startsWith("c")).length,
    );
  });

  test("a device that needs time: the loop turns the event loop until the step is ready, then reads it", async () => {
    const { ex, spy } = spied({}, dir, () => 3);
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const seen: number[] = []; // the ticker's count at each log entry
    const push = spy.log.push.bind(spy.log);
    spy.log.push = (...e: string[]) => {
      for (const _ of e) seen.push(turns);
      return push(...e);
    };
    const ids = [0, 1].map((i) =>
      ex.enqueue({ prompt: prompt(i, 5), maxNewTokens: 5, greedy: true, endId: [] }),
    );
    const got = await Promise.all(ids.map((id) => collect(ex, id)));
    ticking = false;
    for (const [i, g] of got.entries()) assert.deepEqual(g.tokens, await alone(prompt(i, 5), 5));
    const reads = spy.log.filter((e) => e.startsWith("c"));
    assert.ok(reads.length >= 4, spy.log.join(" "));
    // Every read of the running loop waited for its ticket's three "not yet", turning the event loop
    // (the ticker) meanwhile; none read a step that was not ready.
    for (const [k, e] of spy.log.entries()) {
      if (!e.startsWith("c")) continue;
      assert.ok(!e.endsWith("!"), `read ${e} before its step was ready: ${spy.log.join(" ")}`);
      const id = e.slice(1);
      const polls = spy.log.flatMap((x, j) => (x === `p${id}` ? [j] : []));
      assert.equal(polls.length, 3, `${e}: ${spy.log.join(" ")}`);
      assert.ok(seen[k] - seen[polls[0]] >= 2, `${e}: the event loop did not turn while it waited`);
    }
    for (let k = 1; k < spy.rows.length; k++)
      assert.ok(spy.log.indexOf(`q${k}`) < spy.log.indexOf(`c${k - 1}`), `step ${k}: ${spy.log.join(" ")}`);
    assert.ok(spy.stats.filter((s) => s.overlapped).length >= 3, "no overlap: the test lost its point");
  });

  test("a request enqueued and one cancelled while the loop waits for the device", async () => {
    const { ex, spy } = spied({}, dir, () => 2);
    const a = ex.enqueue({ prompt: prompt(4, 7), maxNewTokens: 30, greedy: true, endId: [] });
    const b = ex.enqueue({ prompt: prompt(5, 6), maxNewTokens: 8, greedy: true, endId: [] });
    // On the first "not ready" of the third ticket (two queued steps in flight): b arrives, a leaves.
    let c = -1;
    const ready = ex.session.backend.sampleReady as NonNullable<ExecutionBackend["sampleReady"]>;
    ex.session.backend.sampleReady = (t: SampleTicket) => {
      if (t.id === 2 && c < 0) {
        c = ex.enqueue({ prompt: prompt(6, 5), maxNewTokens: 6, greedy: true, endId: [] });
        assert.ok(ex.cancel(a));
      }
      return ready(t);
    };
    const [ga, gb, gc] = await Promise.all([
      collect(ex, a),
      collect(ex, b),
      (async () => {
        for (let i = 0; c < 0 && i < 10_000; i++) await ticks(1);
        assert.ok(c >= 0, "the loop never asked whether the third step was ready");
        return collect(ex, c);
      })(),
    ]);
    assert.equal(ga.finishReason, "cancelled");
    assert.ok(ga.tokens.length < 30);
    assert.deepEqual(ga.tokens, (await alone(prompt(4, 7), 30)).slice(0, ga.tokens.length));
    assert.deepEqual(gb.tokens, await alone(prompt(5, 6), 8));
    assert.deepEqual(gc.tokens, await alone(prompt(6, 5), 6));
    assert.ok(spy.log.includes("p2"), spy.log.join(" "));
    await ticks(3);
    assert.equal(
      spy.log.filter((e) => e.startsWith("q")).length,
      spy.log.filter((e) => e.startsWith("c")).length,
    );
  });

  test("while a request with no-repeat n-grams runs, each step is read before the next is built", async () => {
    const { ex, spy } = spied();
    const pen: ExecutorRequest = {
      prompt: prompt(4, 5),
      maxNewTokens: 4,
      greedy: true,
      noRepeatNgramSize: 2,
    };
    const a = ex.enqueue({ prompt: prompt(5, 5), maxNewTokens: 8, greedy: true, endId: [] });
    await ticks(3);
    const p = ex.enqueue(pen);
    const [ga, gp] = await Promise.all([collect(ex, a), collect(ex, p)]);
    assert.deepEqual(ga.tokens, await alone(prompt(5, 5), 8));
    const [want] = await runner.generate(
      { ids: prompt(4, 5) },
      { maxNewTokens: 4, greedy: true, noRepeatNgramSize: 2 },
    );
    assert.deepEqual(gp.tokens, want.outputIds);
    // Overlapped before p arrives and after it ends; synchronous (q k, c k) while it is live.
    const sync = spy.stats.filter((s) => !s.overlapped).length;
    assert.ok(sync >= 4 && sync < spy.stats.length - 1, `${spy.stats.map((s) => s.overlapped)}`);
  });
});

describe("executor overlap: numReturnSequences > 1", () => {
  test("after the fan-out (synchronous) the samples overlap; one that ends drops its next row", async () => {
    const req: ExecutorRequest = {
      prompt: prompt(9, 6),
      maxNewTokens: 8,
      temperature: 1,
      seed: 5,
      numReturnSequences: 3,
    };
    const free = synchronous();
    const want = await collectGroup(free, free.enqueue({ ...req, endId: [] }));
    // End one sample early: at its 3rd token, unless an earlier one of it is the same id.
    const first = want.seqs[1].tokens;
    const endId = first[2];
    assert.ok(!first.slice(0, 2).includes(endId), "sample 1 would end earlier: the test lost its point");
    const ref = synchronous();
    const w = await collectGroup(ref, ref.enqueue({ ...req, endId }));
    const { ex, spy } = spied();
    const g = await collectGroup(ex, ex.enqueue({ ...req, endId, streaming: true }));
    assert.deepEqual(
      g.seqs.map((q) => [q.tokens, q.logProbs, q.finishReason]),
      w.seqs.map((q) => [q.tokens, q.logProbs, q.finishReason]),
    );
    assert.equal(w.seqs[1].finishReason, "end");
    assert.deepEqual(
      spy.stats.map((q) => q.overlapped),
      [false, false, true, true, true, true, true, true],
      "the prompt's step fans out synchronously; the next is queued alone, then each before the last is read",
    );
    const made = w.seqs.reduce((a, q) => a + q.tokens.length, 0);
    // The fan-out samples one logits row 3 times on the host (not queued); then each queued step has a
    // row per live sample, and one more for sample 1 in the step queued before its end was read.
    const sampledRows = spy.rows.reduce((a, b) => a + b, 0);
    assert.equal(sampledRows, made - 3 + 1, "one dropped row: sample 1's, queued before its end was read");
  });
});

describe("executor overlap: requests that need their token on the host", () => {
  test("a request with bad words waiting in the queue leaves the running decode overlapped", async () => {
    const { ex, spy } = spied({ maxNumSeqs: 1 });
    const a = ex.enqueue({ prompt: prompt(6, 5), maxNewTokens: 6, greedy: true, endId: [] });
    const p = ex.enqueue({ prompt: prompt(7, 5), maxNewTokens: 4, greedy: true, badWords: [[3, 4]] });
    const [ga, gp] = await Promise.all([collect(ex, a), collect(ex, p)]);
    assert.deepEqual(ga.tokens, await alone(prompt(6, 5), 6));
    const [want] = await runner.generate(
      { ids: prompt(7, 5) },
      { maxNewTokens: 4, greedy: true, badWords: [[3, 4]] },
    );
    assert.deepEqual(gp.tokens, want.outputIds);
    // a's six steps (the first queued alone), then p's four, each read before the next is built.
    assert.deepEqual(
      spy.stats.map((s) => s.overlapped),
      [false, true, true, true, true, true, false, false, false, false],
    );
    assert.deepEqual(spy.log.slice(-8), ["q6", "c6", "q7", "c7", "q8", "c8", "q9", "c9"]);
  });

  test("a LogitsProcessor request waits out of queued steps, then runs synchronously", async () => {
    const { ex, spy } = spied();
    const a = ex.enqueue({ prompt: prompt(6, 5), maxNewTokens: 10, greedy: true, endId: [] });
    await ticks(3);
    // Queued together behind a running decode: b is admitted into a queued step, p is not (its row
    // needs its logits on the host) until it is next in the queue.
    const b = ex.enqueue({ prompt: prompt(8, 5), maxNewTokens: 4, greedy: true, endId: [] });
    const five = {
      process: (logits: Float32Array) => {
        logits[5] += 100;
      },
    };
    const p = ex.enqueue({
      prompt: prompt(7, 5),
      maxNewTokens: 3,
      greedy: true,
      endId: [],
      logitsProcessors: five,
    });
    const [ga, gb, gp] = await Promise.all([collect(ex, a), collect(ex, b), collect(ex, p)]);
    assert.deepEqual(ga.tokens, await alone(prompt(6, 5), 10));
    assert.deepEqual(gb.tokens, await alone(prompt(8, 5), 4));
    assert.deepEqual(gp.tokens, [5, 5, 5], "p's processor ran on every step");
    assert.ok(
      spy.stats.some((s) => s.overlapped && s.numQueued === 1 && s.numContext === 1),
      `b's prompt was not in a queued step while p waited: ${JSON.stringify(spy.stats.map((s) => [s.overlapped, s.numQueued, s.numContext]))}`,
    );
  });

  test("a request with a LogitsProcessor turns the overlap off while it is live", async () => {
    const { ex, spy } = spied({ maxNumSeqs: 1 });
    const a = ex.enqueue({ prompt: prompt(6, 5), maxNewTokens: 6, greedy: true, endId: [] });
    const keep = { process: () => {} };
    const p = ex.enqueue({
      prompt: prompt(7, 5),
      maxNewTokens: 2,
      greedy: true,
      endId: [],
      logitsProcessors: keep,
    });
    await Promise.all([collect(ex, a), collect(ex, p)]);
    assert.ok(spy.stats.every((s) => !s.overlapped));
    const b = ex.enqueue({ prompt: prompt(8, 5), maxNewTokens: 4, greedy: true, endId: [] });
    await collect(ex, b);
    assert.deepEqual(
      spy.stats.slice(-4).map((s) => s.overlapped),
      [false, true, true, true],
      "the overlap comes back once it is gone",
    );
  });

  test("a topLogProbs request runs synchronously (host logits) and gets its lists", async () => {
    const { ex, spy } = spied({ maxNumSeqs: 2 });
    const a = ex.enqueue({ prompt: prompt(6, 5), maxNewTokens: 8, greedy: true, endId: [] });
    await ticks(3);
    const t = ex.enqueue({ prompt: prompt(7, 5), maxNewTokens: 3, greedy: true, endId: [], topLogProbs: 3 });
    const [ga, gt] = await Promise.all([collect(ex, a), collect(ex, t)]);
    assert.deepEqual(ga.tokens, await alone(prompt(6, 5), 8));
    assert.deepEqual(gt.tokens, await alone(prompt(7, 5), 3));
    const top = gt.events.flatMap((e) => e.topLogProbs ?? []);
    assert.equal(top.length, 3, "one top list per token");
    top.forEach((list, i) => assert.equal(list[0].tokenId, gt.tokens[i], "greedy token not first"));
    assert.ok(
      spy.stats.some((s) => s.overlapped),
      "a never overlapped",
    );
    assert.ok(spy.stats.filter((s) => !s.overlapped).length >= 3, "t's steps were queued");
  });
});

describe("executor overlap: penalties read the newest token on the device", () => {
  const kinds: [string, Partial<ExecutorRequest>][] = [
    ["repetition", { repetitionPenalty: 1.8 }],
    ["presence", { presencePenalty: 1.5 }],
    ["frequency", { frequencyPenalty: 1.2 }],
    ["all three", { repetitionPenalty: 1.4, presencePenalty: 0.6, frequencyPenalty: 0.8 }],
  ];
  const modes: [string, Partial<ExecutorRequest>][] = [
    ["greedy", { greedy: true }],
    ["seeded", { temperature: 0.9, topK: 20, seed: 17 }],
  ];
  const PEN_PROMPT = prompt(4, 5);

  /** The penalised request (and a plain one beside it) on the overlapped loop; how many penalty
   * rows the loop fed, and each step's overlap flag. */
  async function overlapped(req: ExecutorRequest, strip = false) {
    const { ex, spy } = spied();
    const b = ex.session.backend;
    const enqueue = (b.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>).bind(b);
    let fedRows = 0;
    b.enqueueSample = (step, p, t, feed) => {
      const q = t.penalties;
      // The penalised rows fed (the plain row beside has a neutral list, fed as well).
      q?.fed?.forEach((f, r) => {
        if (f >= 0 && (q.repetition[r] !== 1 || q.presence[r] !== 0 || q.frequency[r] !== 0)) fedRows++;
      });
      // strip: the backend is not told where the newest token is (its list keeps the placeholder).
      const pen = t.penalties && strip ? { ...t.penalties, fed: undefined } : t.penalties;
      return enqueue(step, p, { ...t, penalties: pen }, feed);
    };
    const p = ex.enqueue(req);
    const a = ex.enqueue({ prompt: prompt(5, 5), maxNewTokens: 8, greedy: true, endId: [] });
    const [gp, ga] = await Promise.all([collect(ex, p), collect(ex, a)]);
    assert.deepEqual(ga.tokens, await alone(prompt(5, 5), 8));
    return { got: gp, fedRows, overlap: spy.stats.map((q) => q.overlapped) };
  }

  for (const [kind, pen] of kinds)
    for (const [mode, sampling] of modes)
      test(`${kind} penalty, ${mode}: the afterRead run's and the lone run's tokens and log-probs, overlapped`, async () => {
        const req: ExecutorRequest = { prompt: PEN_PROMPT, maxNewTokens: 8, endId: [], ...sampling, ...pen };
        const { got, fedRows, overlap } = await overlapped(req);
        // afterRead: the same request with a no-repeat n-gram size longer than it (bans nothing).
        const { ex: ar, spy: arSpy } = spied();
        const late = ar.enqueue({ ...req, noRepeatNgramSize: 60 });
        ar.enqueue({ prompt: prompt(5, 5), maxNewTokens: 8, greedy: true, endId: [] });
        const afterRead = await collect(ar, late);
        await ticks(20);
        const sync = synchronous();
        const lone = await collect(sync, sync.enqueue(req));
        for (const [name, w] of [
          ["afterRead", afterRead],
          ["alone", lone],
        ] as const)
          assert.deepEqual([got.tokens, got.logProbs], [w.tokens, w.logProbs], `vs the ${name} run`);
        assert.equal(got.tokens.length, 8);
        // Prefill alone, then every decode queued before the step before it was read.
        assert.deepEqual(overlap, [false, true, true, true, true, true, true, true]);
        assert.equal(fedRows, 7, "each decode's penalty list read its newest token on the device");
        assert.ok(
          arSpy.stats.filter((q) => !q.overlapped).length >= 7,
          "the afterRead run overlapped: the comparison lost its point",
        );
      });

  test("numReturnSequences 3 with penalties: each sample's list reads its own newest token", async () => {
    const req: ExecutorRequest = {
      prompt: PEN_PROMPT,
      maxNewTokens: 6,
      endId: [],
      temperature: 1,
      seed: 9,
      numReturnSequences: 3,
      repetitionPenalty: 1.6,
      frequencyPenalty: 0.5,
    };
    const ref = synchronous();
    const want = await collectGroup(ref, ref.enqueue(req));
    const { ex, spy } = spied();
    const got = await collectGroup(ex, ex.enqueue(req));
    assert.deepEqual(
      got.seqs.map((q) => [q.tokens, q.logProbs]),
      want.seqs.map((q) => [q.tokens, q.logProbs]),
    );
    assert.ok(
      new Set(got.seqs.map((q) => q.tokens.join())).size > 1,
      "the samples agree: the test lost its point",
    );
    // The fan-out is synchronous, the next step queued alone; then each before the last is read.
    assert.deepEqual(
      spy.stats.map((q) => q.overlapped),
      [false, false, true, true, true, true],
    );
  });

  test("without the substitution the penalties miss the newest token (the tests above can fail)", async () => {
    const req: ExecutorRequest = {
      prompt: PEN_PROMPT,
      maxNewTokens: 8,
      endId: [],
      greedy: true,
      repetitionPenalty: 1.8,
    };
    const right = await overlapped(req);
    const stripped = await overlapped(req, true);
    assert.notDeepEqual(stripped.got.logProbs, right.got.logProbs);
  });
});

interface Job {
  req: ExecutorRequest;
  delay: number;
  /** Cancel once this many tokens arrived (null: never). */
  cancelAfter: number | null;
}

/** Runs the jobs, each `delay` loop iterations after the previous; every request streams. */
async function runJobs(ex: Executor, js: readonly Job[]): Promise<Collected[]> {
  const pending: Promise<Collected>[] = [];
  for (const j of js) {
    await ticks(j.delay);
    const id = ex.enqueue({ ...j.req, streaming: true });
    pending.push(
      (async () => {
        const out: Collected = { tokens: [], logProbs: [], text: "", finishReason: null, events: [] };
        for await (const ev of ex.results(id)) {
          out.events.push(ev);
          out.tokens.push(...ev.tokenIds);
          out.logProbs.push(...ev.logProbs);
          out.finishReason = ev.finishReason;
          if (j.cancelAfter !== null && out.tokens.length === j.cancelAfter && ev.finishReason === null)
            ex.cancel(id);
        }
        return out;
      })(),
    );
  }
  return Promise.all(pending);
}

const slowSeed = (seed: number) => seed === 5 || seed >= 7;

describe("executor overlap: randomised mixes equal the synchronous loop", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    test(`seed ${seed}: arrivals, end ids, stop words, cancels, penalties, preemption`, async () => {
      const r = mulberry(seed);
      const pick = (n: number) => Math.floor(r() * n);
      const maxNumTokens = 4 + pick(24);
      const opts: ExecutorOptions = {
        policy: "maxUtilization",
        maxNumTokens,
        maxNumSeqs: Math.min(maxNumTokens, 4 + pick(8)),
        maxTokens: (seed % 2 === 0 ? 56 : 40) + 4 * pick(4), // room for two samples of the longest
      };
      const stem = prompt(seed, 12);
      const js: Job[] = Array.from({ length: 24 }, (_, i) => {
        const req: ExecutorRequest = {
          prompt: [...stem.slice(0, pick(12)), ...prompt(50 + i, 1 + pick(8))],
          maxNewTokens: 1 + pick(14),
          priority: pick(3) / 2,
          endId: r() < 0.3 ? Array.from({ length: 6 }, () => pick(61)) : [],
          ...(r() < 0.5 ? { greedy: true } : { temperature: 0.8, topK: 12, seed: pick(1000) }),
        };
        if (r() < 0.2) req.stopWords = [[pick(61)], [pick(61)], [pick(61)], [pick(61), pick(61)]];
        if (seed % 3 === 0) {
          const u = r();
          if (u < 0.1) req.presencePenalty = 0.5;
          else if (u < 0.2) req.repetitionPenalty = 1.4;
          else if (u < 0.3) Object.assign(req, { frequencyPenalty: 0.6, repetitionPenalty: 0.8 });
        }
        if (seed % 2 === 0 && !req.greedy && r() < 0.3) req.numReturnSequences = 2;
        return { req, delay: pick(3), cancelAfter: r() < 0.25 ? 1 + pick(3) : null };
      });
      // Seeds 5, 7, 8: a device that needs 0–3 polls per step, so arrivals and cancels land while it computes.
      const { ex, spy } = spied(opts, dir, slowSeed(seed) ? (id) => (id * 7 + seed) % 4 : undefined);
      const got = await runJobs(ex, js);
      const want = await runJobs(synchronous(opts), js);
      for (const [i, g] of got.entries()) {
        const w = want[i];
        assert.deepEqual(
          [g.tokens, g.logProbs, g.finishReason],
          [w.tokens, w.logProbs, w.finishReason],
          `request ${i}`,
        );
        assert.deepEqual(
          g.events.map((e) => e.tokenIds.length),
          w.events.map((e) => e.tokenIds.length),
        );
      }
      assert.ok(spy.stats.filter((s) => s.overlapped).length > 4, "no overlap: the test lost its point");
      if (slowSeed(seed))
        assert.ok(
          spy.log.some((e) => e.startsWith("p")),
          "no slow step: the test lost its point",
        );
      if (seed % 2 === 0)
        assert.ok(
          js.some((j) => j.req.numReturnSequences),
          "no numReturnSequences: the test lost its point",
        );
      if (seed % 3 === 0)
        assert.ok(
          js.some((j) => j.req.presencePenalty || j.req.repetitionPenalty || j.req.frequencyPenalty),
          "no penalties: the test lost its point",
        );
      assert.ok(ex.stats().numPreemptions > 0, "no preemption: the test lost its point");
      assert.ok(
        got.some((g) => g.finishReason === "cancelled"),
        "no cancel: the test lost its point",
      );
      assert.ok(
        got.some((g) => g.finishReason === "end" || g.finishReason === "stop"),
        "no stop",
      );
    });
  }
});
