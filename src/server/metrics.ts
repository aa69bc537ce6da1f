// Prometheus metrics of `kiln serve` (GET /metrics), named and bucketed as vLLM names them, with the
// prefix `kiln:` and the label model_name. Each server has its own Registry, so two servers in one
// process never share a metric. Three sources:
//   - executor.stats() read at scrape time: the queue and running gauges, KV usage, prefix cache;
//   - ServerMetrics.requestFinished (every route, once per request): tokens, latencies, finish reasons;
//   - ServerMetrics.iteration (the executor's onIteration): tokens per iteration.
// Process metrics (CPU, memory, event loop, GC) come from prom-client's default collectors, unprefixed.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { IterationStats } from "../executor/executor.ts";
import type { FinishedRequest, ServedModel, ServerMetrics } from "./server_context.ts";

const PREFIX = "kiln:";

// vLLM's buckets (vllm/v1/metrics/loggers.py), in seconds.
const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
  2560,
];
const ITL_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];
const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];
const ITERATION_TOKEN_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];

/** 1, 2, 5, 10, 20, 50, … up to `max` (vLLM's build_1_2_5_buckets for token counts). */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let e = 1; ; e *= 10) {
    for (const m of [1, 2, 5]) {
      if (m * e > max) return out;
      out.push(m * e);
    }
  }
}

/** The finished_reason label of request_success_total, as vLLM labels it. */
export function finishedReasonLabel(r: FinishedRequest["finishReason"]): string | null {
  if (r === "end" || r === "stop") return "stop";
  if (r === "length") return "length";
  if (r === "cancelled" || r === "timed_out") return "abort";
  return null; // an error is not a success of any kind
}

export function createServerMetrics(model: ServedModel): ServerMetrics {
  const registry = new Registry();
  const labels = { model_name: model.name };
  const labelNames = ["model_name"] as const;
  const stats = () => model.executor.stats();
  collectDefaultMetrics({ register: registry });

  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name: PREFIX + name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.set(labels, read());
      },
    });
  gauge("num_requests_running", "Requests in the executor's running batch.", () => stats().numRunning);
  gauge("num_requests_waiting", "Requests waiting to be scheduled.", () => stats().numQueued);
  gauge(
    "kv_cache_usage_perc",
    "KV cache usage as a fraction (1 = full): blocks held by live requests over all blocks; cached " +
      "blocks no request holds are free to evict and not in use.",
    () => stats().kv.usage,
  );

  // Counters mirrored from the executor's own running totals: each scrape adds what grew since.
  const mirrored = (name: string, help: string, read: () => number) => {
    let seen = 0;
    return new Counter({
      name: PREFIX + name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        const now = read();
        if (now > seen) this.inc(labels, now - seen);
        else this.inc(labels, 0); // the series exists from the first scrape
        seen = Math.max(seen, now);
      },
    });
  };
  mirrored(
    "prefix_cache_queries_total",
    "Prompt tokens looked up in the prefix cache when requests were admitted.",
    () => stats().kv.prefixQueryTokens,
  );
  mirrored(
    "prefix_cache_hits_total",
    "Of the prefix cache queries, prompt tokens found cached (whole blocks).",
    () => stats().kv.prefixHitTokens,
  );

  const counter = (name: string, help: string, extra: string[] = []) => {
    const c = new Counter({
      name: PREFIX + name,
      help,
      labelNames: [...labelNames, ...extra],
      registers: [registry],
    });
    if (extra.length === 0) c.inc(labels, 0);
    return c;
  };
  const promptTokens = counter("prompt_tokens_total", "Prompt tokens of finished requests.");
  const generationTokens = counter("generation_tokens_total", "Tokens generated for finished requests.");
  const success = counter(
    "request_success_total",
    "Finished requests by finished_reason: stop (end id or stop word), length, abort (cancelled, " +
      "disconnected or timed out).",
    ["finished_reason"],
  );
  for (const r of ["stop", "length", "abort"]) success.inc({ ...labels, finished_reason: r }, 0);

  const histogram = (name: string, help: string, buckets: number[]) => {
    const h = new Histogram({ name: PREFIX + name, help, labelNames, buckets, registers: [registry] });
    h.zero(labels); // every series exists from the first scrape
    return h;
  };
  const ttft = histogram("time_to_first_token_seconds", "Arrival to first token.", TTFT_BUCKETS);
  const itl = histogram("inter_token_latency_seconds", "Time between two tokens of a stream.", ITL_BUCKETS);
  const e2e = histogram("e2e_request_latency_seconds", "Arrival to last token.", REQUEST_LATENCY_BUCKETS);
  const queue = histogram(
    "request_queue_time_seconds",
    "Arrival to first scheduled (time in the waiting queue).",
    REQUEST_LATENCY_BUCKETS,
  );
  const lengths = buckets125(model.maxModelLen);
  const promptHist = histogram("request_prompt_tokens", "Prompt tokens per request.", lengths);
  const genHist = histogram("request_generation_tokens", "Generated tokens per request.", lengths);
  const iterationTokens = histogram(
    "iteration_tokens_total",
    "Tokens run per executor iteration (prompt chunks plus one per decoding request).",
    ITERATION_TOKEN_BUCKETS,
  );

  const seconds = (from: number | null, to: number | null) =>
    from === null || to === null ? null : Math.max(0, to - from) / 1000;
  return {
    requestFinished(r: FinishedRequest): void {
      promptTokens.inc(labels, r.promptTokens);
      generationTokens.inc(labels, r.generationTokens);
      const reason = finishedReasonLabel(r.finishReason);
      if (reason) success.inc({ ...labels, finished_reason: reason });
      promptHist.observe(labels, r.promptTokens);
      genHist.observe(labels, r.generationTokens);
      const t = r.timing;
      for (const [h, s] of [
        [ttft, seconds(t.arrival, t.firstToken)],
        [e2e, seconds(t.arrival, t.last)],
        [queue, seconds(t.arrival, t.firstScheduled)],
      ] as const)
        if (s !== null) h.observe(labels, s);
      for (let i = 1; i < r.tokenTimes.length; i++)
        itl.observe(labels, Math.max(0, r.tokenTimes[i] - r.tokenTimes[i - 1]) / 1000);
    },
    iteration(s: IterationStats): void {
      iterationTokens.observe(labels, s.numContextTokens + s.numGeneration);
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
