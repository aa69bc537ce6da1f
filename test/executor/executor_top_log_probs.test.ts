// topLogProbs on the bundled model (CPU): each token's top k equal a log-softmax computed here from the
// backend's raw logits (returnGenerationLogits), at temperature 1 (greedy) and 0.7 (sampled); the
// chosen token's logProb is its entry; streamed and whole results agree; results do not change with
// other requests in flight; numReturnSequences > 1 gives each sequence its own; out-of-range k and
// beams are refused by name; the sampler hands out the log-softmax the top entries are read from.
import assert from "node:assert/strict";
import { after, afterEach, test } from "node:test";
import type { SampleParams } from "../../src/backends/decoding_ops.ts";
import { cpuDecodingOps } from "../../src/backends/host_decoding.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { InvalidRequestError, UnsupportedRequestError } from "../../src/executor/errors.ts";
import { Executor } from "../../src/executor/executor.ts";
import type { ExecutorRequest } from "../../src/executor/executor_request.ts";
import type { ResultEvent, TokenLogProb } from "../../src/executor/request_results.ts";
import { topEntries } from "../../src/executor/top_log_probs.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { Session } from "../../src/runtime/session.ts";
import { tempCache } from "../helpers/tiny_model.ts";
import { assertIdle, collect, ticks } from "./executor_helpers.ts";

const cache = tempCache();
const runner = ModelRunner.fromDir(BUNDLED_MODEL_DIR, { backend: "cpu", cacheDir: cache.dir });
after(() => {
  runner.dispose();
  cache.cleanup();
});
const open: Executor[] = [];
function executor(): Executor {
  const ex = new Executor(Session.open(runner.engine.dir), { maxNumTokens: 16 });
  open.push(ex);
  return ex;
}
afterEach(async () => {
  for (const ex of open.splice(0)) {
    assertIdle(ex);
    await ex.shutdown();
  }
});

const PROMPT = "Once upon a time";
const K = 5;

/** The top k of log-softmax(raw / t) in float64, ties by id: what the executor must return. */
function expectedTop(raw: Float32Array, t: number, k: number): { id: number; lp: number }[] {
  const x = Array.from(raw, (v) => v / t);
  const max = Math.max(...x);
  const lse = max + Math.log(x.reduce((s, v) => s + Math.exp(v - max), 0));
  return x
    .map((v, id) => ({ id, lp: v - lse }))
    .sort((a, b) => b.lp - a.lp || a.id - b.id)
    .slice(0, k);
}

/** Per sequence: its tokens, logProbs, top lists and raw logits rows, from all its events. */
function bySequence(events: ResultEvent[]) {
  const seqs = new Map<
    number,
    { tokens: number[]; logProbs: number[]; top: TokenLogProb[][]; raw: Float32Array[] }
  >();
  for (const ev of events) {
    let s = seqs.get(ev.sequenceIndex);
    if (!s) {
      s = { tokens: [], logProbs: [], top: [], raw: [] };
      seqs.set(ev.sequenceIndex, s);
    }
    assert.ok(ev.topLogProbs, "an event without topLogProbs");
    assert.equal(ev.topLogProbs.length, ev.tokenIds.length, "one top list per token");
    s.tokens.push(...ev.tokenIds);
    s.logProbs.push(...ev.logProbs);
    s.top.push(...ev.topLogProbs);
    const g = ev.generationLogits as Float32Array;
    const V = g.length / Math.max(1, ev.tokenIds.length);
    for (let i = 0; i < ev.tokenIds.length; i++) s.raw.push(g.subarray(i * V, (i + 1) * V));
  }
  return seqs;
}

function assertMatches(events: ResultEvent[], t: number, k: number): void {
  for (const [seq, s] of bySequence(events)) {
    assert.ok(s.tokens.length > 0);
    s.tokens.forEach((token, i) => {
      const want = expectedTop(s.raw[i], t, k);
      const got = s.top[i];
      assert.deepEqual(
        got.map((e) => e.tokenId),
        want.map((e) => e.id),
        `sequence ${seq} token ${i}: ids`,
      );
      got.forEach((e, j) =>
        assert.ok(Math.abs(e.logProb - want[j].lp) < 1e-4, `seq ${seq} token ${i} entry ${j}`),
      );
      for (let j = 1; j < got.length; j++) assert.ok(got[j - 1].logProb >= got[j].logProb, "not sorted");
      const mine = got.find((e) => e.tokenId === token);
      if (mine)
        assert.equal(mine.logProb, s.logProbs[i], "the chosen token's logProb differs from its entry");
    });
  }
}

const GREEDY: ExecutorRequest = {
  prompt: PROMPT,
  maxNewTokens: 6,
  greedy: true,
  topLogProbs: K,
  returnGenerationLogits: true,
};

test("topLogProbs, greedy: the log-softmax of the raw logits, chosen token first", async () => {
  const ex = executor();
  const whole = await collect(ex, ex.enqueue(GREEDY));
  assertMatches(whole.events, 1, K);
  const top = bySequence(whole.events).get(0)?.top ?? [];
  whole.tokens.forEach((t, i) => assert.equal(top[i][0].tokenId, t, "greedy token is not the most likely"));
  const streamed = await collect(ex, ex.enqueue({ ...GREEDY, streaming: true }));
  assert.equal(streamed.events.length, streamed.tokens.length, "one event per token");
  assert.deepEqual(
    streamed.events.flatMap((e) => e.topLogProbs),
    whole.events[0].topLogProbs,
  );
  const plain = await collect(ex, ex.enqueue({ prompt: PROMPT, maxNewTokens: 2, greedy: true }));
  assert.equal(plain.events[0].topLogProbs, undefined, "top log-probs returned though not asked for");
});

test("topLogProbs, temperature 0.7: the scaled distribution", async () => {
  const ex = executor();
  const r = { ...GREEDY, greedy: false, temperature: 0.7, seed: 11, maxNewTokens: 8 };
  const got = await collect(ex, ex.enqueue(r));
  assertMatches(got.events, 0.7, K);
  // Not the temperature-1 values: the test would pass either way otherwise.
  const first = bySequence(got.events).get(0);
  const at1 = expectedTop(first?.raw[0] as Float32Array, 1, K);
  assert.ok(Math.abs((first?.top[0][0].logProb ?? 0) - at1[0].lp) > 1e-3, "temperature was not applied");
});

test("topLogProbs: unchanged with other requests in flight", async () => {
  const r = { ...GREEDY, greedy: false, temperature: 0.7, seed: 5, maxNewTokens: 8 };
  const ex = executor();
  const solo = await collect(ex, ex.enqueue(r));
  const others = [
    ex.enqueue({ prompt: "The quick brown fox jumps over", maxNewTokens: 10, greedy: true }),
    ex.enqueue({ prompt: "Hello", maxNewTokens: 7, temperature: 0.9, seed: 3, streaming: true }),
  ];
  const pending = others.map((id) => collect(ex, id));
  await ticks(2);
  const busy = await collect(ex, ex.enqueue(r));
  await Promise.all(pending);
  assert.deepEqual(busy.tokens, solo.tokens);
  assert.deepEqual(busy.logProbs, solo.logProbs);
  assert.deepEqual(busy.events[0].topLogProbs, solo.events[0].topLogProbs);
});

test("topLogProbs with numReturnSequences 3: each sequence its own", async () => {
  const ex = executor();
  const r = { ...GREEDY, greedy: false, temperature: 0.7, seed: 2, numReturnSequences: 3, maxNewTokens: 6 };
  const got: ResultEvent[] = [];
  for await (const ev of ex.results(ex.enqueue(r))) got.push(ev);
  const seqs = bySequence(got);
  assert.equal(seqs.size, 3);
  assertMatches(got, 0.7, K);
  const lists = [...seqs.values()].map((s) => JSON.stringify(s.top));
  assert.ok(new Set(lists).size > 1, "every sequence got the same top lists");
});

test("topLogProbs: out of range and with beams refused by name", () => {
  const ex = executor();
  for (const k of [-1, 21, 1.5]) {
    assert.throws(
      () => ex.enqueue({ prompt: [1, 2], maxNewTokens: 2, topLogProbs: k }),
      (e: Error) => e instanceof InvalidRequestError && e.message.includes(`topLogProbs must be`),
    );
  }
  assert.throws(
    () => ex.enqueue({ prompt: [1, 2], maxNewTokens: 2, beamWidth: 2, topLogProbs: 2 }),
    (e: Error) => e instanceof UnsupportedRequestError && /topLogProbs 2 with beamWidth/.test(e.message),
  );
});

test("topEntries: largest first, ties by lower id, k capped at the row", () => {
  const row = Float32Array.from([0.5, 2, -1, 2, 0.5, Number.NEGATIVE_INFINITY]);
  assert.deepEqual(
    topEntries(row, 4).map((e) => e.tokenId),
    [1, 3, 0, 4],
  );
  assert.equal(topEntries(row, 10).length, 6);
  assert.deepEqual(topEntries(row, 0), []);
});

test("sample writes the log-softmax its log-probs come from, the one top log-probs read (bit for bit)", () => {
  const V = 5;
  const logits = Float32Array.from([0.3, 1.2, -0.7, 2.5, 0.1, 1, 1, 0.5, -2, 3.25]);
  const p: SampleParams = {
    greedy: Uint8Array.of(1, 0),
    temperature: Float32Array.of(1, 0.7),
    topK: Int32Array.of(0, 3),
    topP: Float32Array.of(1, 0.9),
    minP: Float32Array.of(0, 0),
    seed: Float64Array.of(1, 2),
    sequence: Int32Array.of(0, 0),
    step: Int32Array.of(0, 4),
  };
  const lp = new Float32Array(2 * V).fill(Number.NaN);
  const { tokens, logProbs } = cpuDecodingOps.sample(logits, 2, V, p, lp);
  const want = new Float32Array(2 * V);
  cpuDecodingOps.logSoftmax(logits, 2, V, p.temperature, p.greedy, want);
  assert.deepEqual(lp, want);
  assert.deepEqual(
    logProbs,
    Float32Array.from(tokens, (t, r) => want[r * V + t]),
  );
  assert.deepEqual(cpuDecodingOps.sample(logits, 2, V, p), { tokens, logProbs });
});
