// Prometheus metrics over the bundled model: every metric is exposed with model_name from the first
// scrape; after a Triton request the counters and histograms hold that request's exact figures; the
// gauges read the executor live; two servers in one process keep separate registries.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { buckets125, createServerMetrics, finishedReasonLabel } from "../../src/server/metrics.ts";
import { tritonRoutes } from "../../src/server/triton.ts";
import { type BundledServer, bundledServer } from "./bundled_server.ts";

const NAMES = [
  "num_requests_running",
  "num_requests_waiting",
  "kv_cache_usage_perc",
  "prefix_cache_queries_total",
  "prefix_cache_hits_total",
  "prompt_tokens_total",
  "generation_tokens_total",
  "request_success_total",
  "time_to_first_token_seconds",
  "inter_token_latency_seconds",
  "e2e_request_latency_seconds",
  "request_queue_time_seconds",
  "request_prompt_tokens",
  "request_generation_tokens",
  "iteration_tokens_total",
];
// About 40 tokens: the second request finds its first two 16-token blocks in the prefix cache.
const PROMPT =
  "In a small village by the sea there lived an old fisherman who went out every morning to cast his nets, and came home at night";

let s: BundledServer;
before(async () => {
  s = await bundledServer([tritonRoutes]);
});
after(() => s.close());

/** The value of `name{labels}` in the exposition text (labels as written, model_name first). */
function value(text: string, name: string, extra = ""): number {
  const series = `kiln:${name}{model_name="default"${extra}}`;
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no ${series} in the metrics`);
  return Number(line.slice(series.length + 1));
}

const scrape = async () => (await s.ctx.metrics.render()).body;

test("every metric is exposed, with model_name, before any request; process metrics too", async () => {
  const { contentType, body } = await s.ctx.metrics.render();
  assert.match(contentType, /^text\/plain/);
  for (const n of NAMES)
    assert.match(body, new RegExp(`^kiln:${n}(_bucket|_sum|_count)?\\{model_name="default"`, "m"), n);
  assert.match(body, /^process_cpu_user_seconds_total /m);
  assert.match(body, /^nodejs_eventloop_lag_seconds /m);
  assert.equal(value(body, "generation_tokens_total"), 0);
  assert.equal(value(body, "request_success_total", ',finished_reason="length"'), 0);
});

test("after two requests the counters and histograms hold their exact figures", async () => {
  const promptIds = (s.ctx.model.tokenizer?.encode(PROMPT).ids ?? []).length;
  assert.ok(promptIds > 33, `the prompt has ${promptIds} tokens; it needs more than two blocks`);
  const req = { text_input: PROMPT, max_tokens: 10, end_id: 2 };
  for (let i = 0; i < 2; i++) {
    const r = await s.app.inject({ method: "POST", url: "/v2/models/default/generate", payload: req });
    assert.equal(r.statusCode, 200);
  }
  const m = await scrape();
  const st = s.executor.stats();
  assert.equal(value(m, "generation_tokens_total"), 20);
  assert.equal(st.numGeneratedTokens, 20);
  assert.equal(value(m, "prompt_tokens_total"), 2 * promptIds);
  assert.equal(value(m, "request_success_total", ',finished_reason="length"'), 2);
  assert.equal(value(m, "request_success_total", ',finished_reason="stop"'), 0);
  assert.equal(value(m, "request_generation_tokens_sum"), 20);
  assert.equal(value(m, "request_generation_tokens_count"), 2);
  assert.equal(value(m, "request_prompt_tokens_sum"), 2 * promptIds);
  for (const h of [
    "time_to_first_token_seconds",
    "e2e_request_latency_seconds",
    "request_queue_time_seconds",
  ])
    assert.equal(value(m, `${h}_count`), 2, h);
  assert.equal(value(m, "inter_token_latency_seconds_count"), 2 * 9, "one gap between each two tokens");
  assert.ok(value(m, "e2e_request_latency_seconds_sum") >= value(m, "time_to_first_token_seconds_sum"));
  // Prefix cache: both prompts looked up; the second found two whole blocks.
  assert.equal(value(m, "prefix_cache_queries_total"), 2 * promptIds);
  assert.equal(value(m, "prefix_cache_hits_total"), st.kv.prefixHitTokens);
  assert.equal(st.kv.prefixHitTokens, 32);
  // Iterations ran each prompt (less its cached part) and then one token per decode.
  assert.equal(value(m, "iteration_tokens_total_sum"), 2 * promptIds - 32 + 2 * 9);
  assert.equal(value(m, "iteration_tokens_total_count"), st.numIterations);
  assert.equal(value(m, "num_requests_running"), 0);
  assert.equal(value(m, "kv_cache_usage_perc"), 0, "cached blocks no request holds are not in use");
  assert.ok(st.kv.numCachedFree > 0);
});

test("the gauges read the executor at scrape time", async () => {
  const id = s.executor.enqueue({ prompt: PROMPT, maxNewTokens: 200, endId: [], streaming: true });
  try {
    const it = s.executor.results(id)[Symbol.asyncIterator]();
    await it.next();
    const m = await scrape();
    assert.equal(value(m, "num_requests_running"), 1);
    const kv = s.executor.stats().kv;
    assert.ok(kv.numUsed > 0);
    assert.equal(value(m, "kv_cache_usage_perc"), kv.numUsed / kv.numBlocks);
  } finally {
    s.executor.cancel(id);
  }
});

test("a cancelled request counts as abort, an error as no success; two servers do not collide", async () => {
  const metrics = createServerMetrics({ ...s.ctx.model, name: "other" });
  metrics.requestFinished({
    finishReason: "cancelled",
    promptTokens: 3,
    generationTokens: 1,
    timing: { arrival: 0, firstScheduled: 5, firstToken: 20, last: 20 },
    tokenTimes: [20],
  });
  metrics.requestFinished({
    finishReason: "error",
    promptTokens: 2,
    generationTokens: 0,
    timing: { arrival: 0, firstScheduled: null, firstToken: null, last: null },
    tokenTimes: [],
  });
  const other = (await metrics.render()).body;
  assert.match(other, /^kiln:request_success_total\{model_name="other",finished_reason="abort"\} 1$/m);
  assert.match(other, /^kiln:prompt_tokens_total\{model_name="other"\} 5$/m);
  assert.match(other, /^kiln:time_to_first_token_seconds_sum\{model_name="other"\} 0.02$/m);
  assert.match(other, /^kiln:time_to_first_token_seconds_count\{model_name="other"\} 1$/m);
  assert.doesNotMatch(other, /model_name="default"/);
  assert.doesNotMatch(await scrape(), /model_name="other"/);
  assert.equal(finishedReasonLabel("end"), "stop");
  assert.equal(finishedReasonLabel("timed_out"), "abort");
  assert.equal(finishedReasonLabel("error"), null);
  assert.deepEqual(buckets125(512), [1, 2, 5, 10, 20, 50, 100, 200, 500]);
});
