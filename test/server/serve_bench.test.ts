// The serving benchmark client against a small fastify app that imitates an OpenAI streaming
// /v1/completions endpoint (first chunk after FIRST_MS, then one every GAP_MS, usage, [DONE]): the
// figures are computed exactly from what the client saw, the requests carry the fixed shape, the
// concurrency cap and the Poisson schedule hold, and a refusing or absent server is a named error.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { poissonArrivals } from "../../src/runtime/throughput_bench.ts";
import { runServeBench, ServeBenchError, summarizeServeRuns } from "../../src/server/serve_bench.ts";
import { type FakeOpenAiServer, startFakeOpenAi } from "../helpers/fake_openai_server.ts";

const FIRST_MS = 30;
const GAP_MS = 10;
let fake: FakeOpenAiServer;
let url: string;
before(async () => {
  fake = await startFakeOpenAi(FIRST_MS, GAP_MS);
  url = fake.url;
});
after(() => fake.close());

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

test("summarizeServeRuns: throughput and TTFT/TPOT/ITL from the chunk times, failures left out", () => {
  const r = summarizeServeRuns(
    [
      { sent: 0, chunkTimes: [10, 15, 25], outputTokens: 3, error: null },
      { sent: 5, chunkTimes: [25, 30], outputTokens: 2, error: null },
      { sent: 6, chunkTimes: [], outputTokens: 0, error: "HTTP 500: boom" },
    ],
    4,
    0,
    40,
  );
  assert.equal(r.completed, 2);
  assert.equal(r.failed, 1);
  assert.deepEqual(r.errors, ["HTTP 500: boom"]);
  assert.equal(r.durationS, 0.04);
  assert.equal(r.outputTokens, 5);
  assert.ok(close(r.outputTokensPerSec, 125));
  assert.ok(close(r.totalTokensPerSec, (2 * 4 + 5) / 0.04));
  assert.ok(close(r.requestsPerSec, 50));
  assert.deepEqual(r.ttftMs, { mean: 15, median: 15, p99: 19.9 });
  assert.deepEqual(r.tpotMs, { mean: 6.25, median: 6.25, p99: 7.475 });
  assert.ok(close(r.itlMs.mean, 20 / 3));
  assert.equal(r.itlMs.median, 5);
});

test("summarizeServeRuns: the most completed requests streaming at once", () => {
  const run = (first: number, last: number) => ({
    sent: 0,
    chunkTimes: [first, last],
    outputTokens: 2,
    error: null,
  });
  // [10, 20], [15, 30], [18, 19] overlap at 18–19; [20, 40] starts as the first ends (both count);
  // the failed one is left out.
  const r = summarizeServeRuns(
    [run(10, 20), run(15, 30), run(18, 19), run(20, 40), { ...run(12, 35), error: "gone" }],
    4,
    0,
    50,
  );
  assert.equal(r.peakStreaming, 3);
  assert.equal(summarizeServeRuns([run(0, 1), run(2, 3)], 4, 0, 5).peakStreaming, 1);
});

test("fixed concurrency: every request has the fixed shape; the figures match the server's pace", async () => {
  fake.reset();
  const r = await runServeBench({
    url,
    numRequests: 8,
    inputLen: 6,
    outputLen: 5,
    maxConcurrency: 2,
    seed: 3,
  });
  assert.equal(fake.seen.length, 9, "a warm-up and 8 requests");
  assert.equal(fake.seen[0].body.max_tokens, 4, "the warm-up asks for at most 4 tokens");
  for (const { body } of fake.seen.slice(1)) {
    assert.equal(body.model, "fake", "the model named by GET /v1/models");
    assert.equal(body.max_tokens, 5);
    assert.equal(body.ignore_eos, true);
    assert.equal(body.stream, true);
    assert.equal(body.temperature, 0);
    const ids = body.prompt as number[];
    assert.equal(ids.length, 6);
    assert.ok(ids.every((id) => Number.isInteger(id) && id >= 10 && id < 1000));
  }
  assert.equal(fake.maxInFlight, 2, "at most --max-concurrency requests in flight");
  assert.equal(r.mode, "serve");
  assert.equal(r.model, "fake");
  assert.equal(r.completed, 8);
  assert.equal(r.failed, 0);
  assert.equal(r.maxConcurrency, 2);
  assert.equal(r.requestRate, null);
  assert.equal(r.outputTokens, 8 * 5, "usage.completion_tokens");
  assert.ok(close(r.outputTokensPerSec, 40 / r.durationS));
  assert.ok(close(r.totalTokensPerSec, (8 * 6 + 40) / r.durationS));
  // Four rounds of two requests, each FIRST_MS + 4 · GAP_MS long at least.
  assert.ok(r.durationS * 1000 >= 4 * (FIRST_MS + 4 * GAP_MS) - 4, `duration ${r.durationS}`);
  assert.ok(r.ttftMs.median >= FIRST_MS - 1 && r.ttftMs.median < FIRST_MS + 200, JSON.stringify(r.ttftMs));
  assert.ok(r.itlMs.median >= GAP_MS - 1 && r.itlMs.median < GAP_MS + 100, JSON.stringify(r.itlMs));
  assert.ok(r.ttftMs.p99 >= r.ttftMs.median && r.itlMs.p99 >= r.itlMs.median);
  // Every request has 5 chunks for 5 tokens, so its TPOT is its mean ITL: the means agree.
  assert.ok(Math.abs(r.tpotMs.mean - r.itlMs.mean) < 1e-9, `${r.tpotMs.mean} vs ${r.itlMs.mean}`);
  // The prompts are a function of the seed.
  const again = fake.seen.slice(1).map((s) => s.body.prompt);
  fake.reset();
  await runServeBench({ url, numRequests: 8, inputLen: 6, outputLen: 5, maxConcurrency: 2, seed: 3 });
  assert.deepEqual(
    fake.seen.slice(1).map((s) => s.body.prompt),
    again,
  );
});

test("a server that streams tokens without text (no tokenizer): every request counts, at its pace", async () => {
  const bare = await startFakeOpenAi(FIRST_MS, GAP_MS, { tokenText: "" });
  try {
    const r = await runServeBench({ url: bare.url, numRequests: 4, inputLen: 3, outputLen: 5, seed: 2 });
    assert.equal(r.failed, 0, `errors: ${r.errors}`);
    assert.equal(r.completed, 4);
    assert.equal(r.outputTokens, 20);
    assert.ok(r.ttftMs.median !== null && r.ttftMs.median >= FIRST_MS, `TTFT ${r.ttftMs.median}`);
    // Five token chunks GAP_MS apart: the finish chunk is no token, so no ITL near zero.
    assert.ok(r.itlMs.median !== null && r.itlMs.median >= GAP_MS * 0.8, `ITL ${r.itlMs.median}`);
    assert.ok(r.tpotMs.median !== null && r.tpotMs.median >= GAP_MS * 0.8, `TPOT ${r.tpotMs.median}`);
  } finally {
    await bare.close();
  }
});

test("a request rate sends on the seeded Poisson schedule, never early", async () => {
  fake.reset();
  const r = await runServeBench({ url, numRequests: 6, inputLen: 4, outputLen: 2, requestRate: 40, seed: 7 });
  assert.equal(r.completed, 6);
  assert.equal(r.requestRate, 40);
  const want = poissonArrivals(6, 40, 7);
  const at = fake.seen.slice(1).map((s) => s.at);
  // Arrival = send + connection latency; 25 ms covers the first request's (a new socket, maybe).
  assert.ok(want[5] > 0.08, "a schedule long enough to tell from all at once");
  at.forEach((t, i) => assert.ok(t - at[0] >= (want[i] - want[0]) * 1000 - 25, `request ${i} came early`));
  assert.ok(r.durationS >= want[5]);
});

test("a server that refuses, or none at all, is a ServeBenchError with its words", async () => {
  fake.refuse = true;
  try {
    await assert.rejects(
      runServeBench({ url, numRequests: 1, inputLen: 4, outputLen: 2 }),
      (e) => e instanceof ServeBenchError && /warm-up .*HTTP 400.*max_tokens is too large/.test(e.message),
    );
  } finally {
    fake.refuse = false;
  }
  await assert.rejects(
    runServeBench({ url: "http://127.0.0.1:9", numRequests: 1, inputLen: 4, outputLen: 2 }),
    (e) => e instanceof ServeBenchError && /cannot reach http:\/\/127.0.0.1:9\/v1\/models/.test(e.message),
  );
  await assert.rejects(
    runServeBench({ url: "localhost:8000", numRequests: 1, inputLen: 4, outputLen: 2 }),
    (e) => e instanceof ServeBenchError && /not an http\(s\) URL/.test(e.message),
  );
});
