// The executor on a tiny CPU engine: every request's tokens equal the same request run alone through
// ModelRunner.generate — for concurrent requests arriving at different times, chunked prefill,
// preemption with recompute, prefix-cache hits — plus cancel, timeout, stop words, end ids, the
// request errors, and after every test the idle invariant (free + cached-unreferenced == total).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildEngine } from "../../src/builder/builder.ts";
import {
  InvalidRequestError,
  QueueFullError,
  RequestLogitsNotFiniteError,
  UnsupportedRequestError,
} from "../../src/executor/errors.ts";
import { Executor, type ExecutorRequest } from "../../src/executor/executor.ts";
import { Session } from "../../src/runtime/session.ts";
import { UnknownOptionError } from "../../src/sampling/option_keys.ts";
import { InvalidSamplingConfigError } from "../../src/sampling/sampling_config.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";
import { assertIdle, collect, mulberry, ticks, tinyEngineExecutors } from "./executor_helpers.ts";

const { dir, runner, executor } = tinyEngineExecutors();

/** Deterministic prompts of varied lengths over the tiny vocabulary (61 ids). */
function prompt(i: number, len: number): number[] {
  return Array.from({ length: len }, (_, k) => (i * 17 + k * 7 + 3) % 61);
}

type Sampling = Pick<ExecutorRequest, "greedy" | "temperature" | "topK" | "topP" | "seed" | "endId">;

/** The request alone through ModelRunner.generate. */
async function alone(ids: number[], maxNewTokens: number, s: Sampling): Promise<number[]> {
  const [out] = await runner.generate(
    { ids },
    {
      maxNewTokens,
      greedy: s.greedy,
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      seed: s.seed,
      endId: s.endId,
    },
  );
  return out.outputIds;
}

const GREEDY: Sampling = { greedy: true, endId: [] };
const seeded = (seed: number): Sampling => ({ temperature: 0.9, topK: 20, topP: 0.95, seed, endId: [] });

interface Job {
  ids: number[];
  maxNewTokens: number;
  sampling: Sampling;
  /** Loop iterations to wait before it is enqueued (after the previous one). */
  delay: number;
  priority?: number;
}

function jobs(n: number, sampling: (i: number) => Sampling): Job[] {
  return Array.from({ length: n }, (_, i) => ({
    ids: prompt(i, 1 + ((i * 5) % 19)),
    maxNewTokens: 1 + ((i * 7) % 14),
    sampling: sampling(i),
    delay: (i * 3) % 4,
  }));
}

/** Runs every job through the executor, arriving `delay` iterations apart; returns their tokens. */
async function runAll(ex: Executor, js: readonly Job[]): Promise<number[][]> {
  const pending: Promise<number[]>[] = [];
  for (const j of js) {
    await ticks(j.delay);
    const id = ex.enqueue({
      prompt: j.ids,
      maxNewTokens: j.maxNewTokens,
      ...j.sampling,
      priority: j.priority,
      streaming: true,
    });
    pending.push(
      collect(ex, id).then((r) => {
        assert.equal(r.finishReason, "length");
        return r.tokens;
      }),
    );
  }
  return Promise.all(pending);
}

async function assertAlone(js: readonly Job[], got: number[][]): Promise<void> {
  for (let i = 0; i < js.length; i++) {
    const want = await alone(js[i].ids, js[i].maxNewTokens, js[i].sampling);
    assert.deepEqual(got[i], want, `request ${i} (prompt ${js[i].ids.length}, new ${js[i].maxNewTokens})`);
  }
}

describe("executor: tokens equal each request alone", () => {
  test("greedy, 24 concurrent requests of different lengths arriving at different times", async () => {
    const js = jobs(24, () => GREEDY);
    const ex = executor({ maxNumSeqs: 8 });
    await assertAlone(js, await runAll(ex, js));
    const s = ex.stats();
    assert.ok(s.numIterations < js.reduce((n, j) => n + j.maxNewTokens, 0), "requests never shared a step");
  });

  test("seeded sampling: the counter-based RNG keys by (seed, token index), not the batch", async () => {
    const js = jobs(16, (i) => seeded(100 + i));
    await assertAlone(js, await runAll(executor(), js));
  });

  test("chunked prefill: a budget of 5 tokens per iteration", async () => {
    const js = jobs(10, (i) => (i % 2 ? GREEDY : seeded(i)));
    const ex = executor({ maxNumTokens: 5 });
    await assertAlone(js, await runAll(ex, js));
  });

  test("maxUtilization with a tiny KV cache preempts and recomputes the same tokens", async () => {
    const js = jobs(12, (i) => (i % 2 ? GREEDY : seeded(i))).map((j) => ({
      ...j,
      maxNewTokens: 12,
      delay: 0,
    }));
    const ex = executor({ policy: "maxUtilization", maxTokens: 48 });
    await assertAlone(js, await runAll(ex, js));
    assert.ok(ex.stats().numPreemptions > 0, "the cache was large enough: nothing was preempted");
  });

  test("prefix caching: a second request sharing the prompt's leading blocks hits them", async () => {
    const ex = executor();
    const shared = prompt(3, 13); // 3 full blocks of 4
    const a = ex.enqueue({ prompt: shared, maxNewTokens: 4, ...GREEDY });
    const ra = await collect(ex, a);
    const before = ex.stats().kv;
    assert.equal(before.prefixHitTokens, 0);
    const second = [...shared.slice(0, 12), 40, 41];
    const b = ex.enqueue({ prompt: second, maxNewTokens: 6, ...GREEDY });
    const rb = await collect(ex, b);
    assert.equal(ex.stats().kv.prefixHitTokens, 12);
    assert.deepEqual(ra.tokens, await alone(shared, 4, GREEDY));
    assert.deepEqual(rb.tokens, await alone(second, 6, GREEDY));
  });
});

describe("executor: per-request penalties and bans in one batch", () => {
  test("rows with and without penalties, bad words and minP each equal the request alone", async () => {
    const ex = executor();
    const base = { maxNewTokens: 10, endId: [] as number[] };
    // Bans of tokens the requests pick when unbanned, so the bans change what they generate.
    const free2 = (await runner.generate({ ids: prompt(2, 8) }, { ...base, temperature: 0.8, seed: 9 }))[0];
    const free3 = await alone(prompt(3, 9), 10, GREEDY);
    const reqs: Omit<ExecutorRequest, "prompt" | "maxNewTokens">[] = [
      { greedy: true, repetitionPenalty: 1.5, presencePenalty: 0.4, frequencyPenalty: 0.3 },
      { greedy: true },
      {
        temperature: 0.8,
        seed: 9,
        minP: 0.05,
        badWords: [[free2.outputIds[0]], free2.outputIds.slice(2, 4)],
      },
      { greedy: true, badWords: [[free3[1]]] },
      { temperature: 1.2, seed: 4, topK: 5, frequencyPenalty: 0.7 },
    ];
    const ids = reqs.map((r, i) => ex.enqueue({ prompt: prompt(i, 6 + i), ...base, ...r }));
    const got = await Promise.all(ids.map((id) => collect(ex, id)));
    for (const [i, r] of reqs.entries()) {
      const { greedy, seed, ...rest } = r;
      const [want] = await runner.generate({ ids: prompt(i, 6 + i) }, { ...base, ...rest, greedy, seed });
      assert.deepEqual(got[i].tokens, want.outputIds, `request ${i}`);
    }
  });
});

describe("executor: randomised mixes equal each request alone", () => {
  for (const seed of [1, 2, 3, 4]) {
    test(`seed ${seed}: random budget, cache, policy, priorities, arrivals and shared prefixes`, async () => {
      const r = mulberry(seed);
      const pick = (n: number) => Math.floor(r() * n);
      const policy = seed % 2 ? "maxUtilization" : "guaranteedNoEvict";
      const maxNumTokens = 2 + pick(30);
      const opts = {
        policy,
        maxNumTokens,
        maxNumSeqs: Math.min(maxNumTokens, 6 + pick(10)),
        maxTokens: 40 + 4 * pick(8), // one request needs at most 37 tokens
      } as const;
      const ex = executor(opts);
      const stems = [prompt(seed, 16), prompt(seed + 1, 9)];
      const js: (Job & { priority: number })[] = Array.from({ length: 40 }, (_, i) => {
        const stem = stems[pick(2)].slice(0, pick(16));
        return {
          ids: [...stem, ...prompt(100 + i, 1 + pick(8))],
          maxNewTokens: 1 + pick(14),
          sampling: r() < 0.5 ? GREEDY : seeded(pick(1000)),
          delay: pick(3),
          priority: pick(3) / 2,
        };
      });
      const got = await runAll(ex, js);
      await assertAlone(js, got);
      const s = ex.stats();
      assert.ok(s.kv.prefixHitTokens > 0, "no prefix hit: the test lost its point");
      if (policy === "maxUtilization")
        assert.ok(s.numPreemptions > 0, "no preemption: the test lost its point");
    });
  }
});

describe("executor: cancel, timeout, stops", () => {
  test("cancel of a queued and of a running request frees their blocks at once", async () => {
    const ex = executor({ maxNumSeqs: 1 });
    const running = ex.enqueue({ prompt: prompt(1, 9), maxNewTokens: 40, ...GREEDY, streaming: true });
    const queued = ex.enqueue({ prompt: prompt(2, 5), maxNewTokens: 4, ...GREEDY });
    const it = ex.results(running)[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.value?.tokenIds.length, 1);
    assert.equal(ex.stats().numQueued, 1);
    assert.ok(ex.cancel(queued));
    const q = await collect(ex, queued);
    assert.deepEqual([q.tokens, q.finishReason], [[], "cancelled"]);
    assert.ok(ex.stats().kv.numUsed > 0);
    assert.ok(ex.cancel(running));
    assert.equal(ex.stats().kv.numUsed, 0, "the running request's blocks were not freed by cancel");
    let last = first.value;
    for (let r = await it.next(); !r.done; r = await it.next()) last = r.value;
    assert.equal(last?.finishReason, "cancelled");
    assert.equal(ex.cancel(running), false, "cancel of a finished request");
  });

  test("allottedTimeMs: a running and a queued request time out", async () => {
    let now = 0;
    const ex = executor({ maxNumSeqs: 1, clock: () => now });
    const a = ex.enqueue({
      prompt: prompt(1, 6),
      maxNewTokens: 40,
      ...GREEDY,
      allottedTimeMs: 10,
      streaming: true,
    });
    const b = ex.enqueue({ prompt: prompt(2, 6), maxNewTokens: 4, ...GREEDY, allottedTimeMs: 10 });
    const it = ex.results(a)[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    now = 10;
    let last = null;
    for (let r = await it.next(); !r.done; r = await it.next()) last = r.value;
    assert.equal(last?.finishReason, "timed_out");
    assert.ok((last?.timing.firstToken ?? -1) >= 0 && last?.timing.arrival === 0);
    const rb = await collect(ex, b);
    assert.deepEqual([rb.tokens, rb.finishReason], [[], "timed_out"]);
  });

  test("end ids and stop words (ids) finish like ModelRunner.generate", async () => {
    const ex = executor();
    const ids = prompt(5, 7);
    const free = await alone(ids, 12, GREEDY);
    const endId = free[4];
    const stop = [free[2], free[3]];
    const cases: [ExecutorRequest, string][] = [
      [{ prompt: ids, maxNewTokens: 12, greedy: true, endId }, "end"],
      [{ prompt: ids, maxNewTokens: 12, greedy: true, endId: [], stopWords: [stop] }, "stop"],
    ];
    for (const [req, reason] of cases) {
      const got = await collect(ex, ex.enqueue(req));
      const [want] = await runner.generate(
        { ids },
        { maxNewTokens: 12, greedy: true, endId: req.endId, stopWords: req.stopWords },
      );
      assert.equal(got.finishReason, reason);
      assert.equal(want.finishReason, reason);
      assert.deepEqual(got.tokens, want.outputIds);
    }
  });

  test("a full queue, too wide a group, beams with stop rules and unknown keys are rejected at once", async () => {
    const ex = executor({ maxQueueSize: 1, maxNumSeqs: 4 });
    ex.enqueue({ prompt: [1, 2], maxNewTokens: 2, ...GREEDY });
    assert.throws(() => ex.enqueue({ prompt: [1, 2], maxNewTokens: 2, ...GREEDY }), QueueFullError);
    await ticks(20);
    assert.throws(
      () => ex.enqueue({ prompt: [1], maxNewTokens: 2, beamWidth: 5 }),
      (e: Error) => e instanceof InvalidRequestError && /5 sequences.*maxNumSeqs/.test(e.message),
    );
    assert.throws(
      () => ex.enqueue({ prompt: [1], maxNewTokens: 2, beamWidth: 2, stopWords: [[3]] }),
      (e: Error) => e instanceof InvalidSamplingConfigError && /beam search/.test(e.message),
    );
    assert.throws(
      () => ex.enqueue({ prompt: [1], maxNewTokens: 2, beamWidth: 2, returnGenerationLogits: true }),
      (e: Error) => e instanceof UnsupportedRequestError && /returnGenerationLogits/.test(e.message),
    );
    assert.throws(
      () => ex.enqueue({ prompt: [1], maxNewTokens: 2, beamWidth: 2, numReturnSequences: 3 }),
      (e: Error) => e instanceof InvalidSamplingConfigError && /numReturnSequences/.test(e.message),
    );
    assert.throws(
      () => ex.enqueue({ prompt: [1], maxNewTokns: 2 } as unknown as ExecutorRequest),
      (e: Error) => e instanceof UnknownOptionError && /maxNewTokens/.test(e.message),
    );
    await ticks(20);
    assert.equal(ex.stats().numQueued + ex.stats().numRunning, 0);
  });

  test("shutdown without drain cancels live requests; enqueue after it is refused", async () => {
    const ex = new Executor(Session.open(dir));
    const id = ex.enqueue({ prompt: prompt(1, 5), maxNewTokens: 30, ...GREEDY });
    await ticks(2);
    const done = ex.shutdown({ drain: false });
    assertIdle(ex);
    assert.equal((await collect(ex, id)).finishReason, "cancelled");
    await done;
    assert.throws(() => ex.enqueue({ prompt: [1], maxNewTokens: 1 }), /shut down/);
  });
});

describe("executor: iteration stats and failures", () => {
  test("onIteration reports every step: scheduled, context and generation counts", async () => {
    const seen: { ctx: number; gen: number; ctxTokens: number }[] = [];
    const ex = executor({
      maxNumTokens: 6,
      onIteration: (s) =>
        seen.push({ ctx: s.numContext, gen: s.numGeneration, ctxTokens: s.numContextTokens }),
    });
    const a = ex.enqueue({ prompt: prompt(1, 4), maxNewTokens: 3, ...GREEDY });
    const b = ex.enqueue({ prompt: prompt(2, 7), maxNewTokens: 2, ...GREEDY });
    await Promise.all([collect(ex, a), collect(ex, b)]);
    // budget 6: a's prompt (4) + 2 of b's | a decodes + b's other 5 | both decode | a decodes
    assert.deepEqual(seen, [
      { ctx: 2, gen: 0, ctxTokens: 6 },
      { ctx: 1, gen: 1, ctxTokens: 5 },
      { ctx: 0, gen: 2, ctxTokens: 0 },
    ]);
    assert.equal(ex.stats().numIterations, 3);
    assert.equal(ex.stats().numContextTokens, 11);
    assert.equal(ex.stats().numGeneratedTokens, 5);
  });

  test("a failing step ends the live requests with its error; the executor goes on", async () => {
    const ex = executor();
    const backend = ex.session.backend;
    const forward = backend.forward;
    backend.forward = () => {
      throw new Error("device lost");
    };
    const id = ex.enqueue({ prompt: prompt(1, 5), maxNewTokens: 3, ...GREEDY });
    await assert.rejects(collect(ex, id), /device lost/);
    backend.forward = forward;
    const ok = await collect(ex, ex.enqueue({ prompt: prompt(1, 5), maxNewTokens: 3, ...GREEDY }));
    assert.deepEqual(ok.tokens, await alone(prompt(1, 5), 3, GREEDY));
  });
});

describe("executor: KV cache size", () => {
  test("maxSeqLen × maxBatchSize by default, maxTokens in whole blocks, less than a block refused", () => {
    const ex = executor();
    const { maxSeqLen, build } = ex.session.config;
    assert.equal(ex.kv.numBlocks, Math.ceil((maxSeqLen * build.maxBatchSize) / 4));
    assert.equal(ex.session.backend.numKvBlocks, ex.kv.numBlocks);
    assert.equal(executor({ maxTokens: 50 }).kv.numBlocks, 12);
    const session = Session.open(dir);
    assert.throws(() => new Executor(session, { maxTokens: 3 }), /less than one KV block \(4 tokens\)/);
    session.dispose();
  });
});

describe("executor: non-finite logits", () => {
  test("a request whose logits are NaN ends with a named error and frees its blocks", async () => {
    const bad = writeTinyModel("llama", 7, { nanIn: "model.norm.weight" });
    try {
      const engine = join(bad.dir, "engine");
      buildEngine(bad.dir, engine, { kvBlockSize: 4 });
      const ex = new Executor(Session.open(engine));
      const id = ex.enqueue({ prompt: [3, 4, 5], maxNewTokens: 3, greedy: true });
      await assert.rejects(
        collect(ex, id),
        (e: Error) => e instanceof RequestLogitsNotFiniteError && /step 0/.test(e.message),
      );
      assertIdle(ex);
      await ex.shutdown();
    } finally {
      bad.cleanup();
    }
  });
});

describe("executor: the loop sleeps when idle", () => {
  test("an idle executor, never shut down, keeps no timer: its process exits", () => {
    // The loop waits on a promise that only enqueue resolves; a timer or polling would keep the child
    // alive until the spawn timeout kills it (status null).
    const script = `
      import { Executor } from "./src/executor/executor.ts";
      import { Session } from "./src/runtime/session.ts";
      const ex = new Executor(Session.open(process.argv[1]));
      const id = ex.enqueue({ prompt: [3, 4, 5], maxNewTokens: 3, greedy: true, endId: [] });
      let n = 0;
      for await (const ev of ex.results(id)) n += ev.tokenIds.length;
      await new Promise((r) => setTimeout(r, 50));
      console.log(JSON.stringify({ n, idle: ex.stats().numRunning === 0 }));
    `;
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, dir], {
      cwd: root,
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split("\n").at(-1) ?? ""), { n: 3, idle: true });
  });
});
