// The whole `kiln serve` as openServer builds it (bundled model, CPU, loopback, port 0): the Triton
// and tokenize routes are there by default and need the API key like the OpenAI ones, while probes
// and scrapes do not; --max-concurrent counts both APIs together; graceful shutdown waits for Triton
// streams and cancels them after the grace period; /metrics is prom-client's, fed by the routes and
// the executor: after an OpenAI completion, a Triton generate and a completion that hits the prefix
// cache, every metric of the list is there with model_name and moved by the exact amounts.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ListenError } from "../../src/server/open_server.ts";
import { post, readStream } from "./load_run.ts";
import { parseSse } from "./scripted_executor.ts";
import { type BundledServer, bundledServer, kvIdle, until } from "./server_helpers.ts";

const PROMPT = "ROMEO:";
// end_id 2 (the pad id, never sampled) and ignore_eos: only max_tokens, a disconnect or shutdown end these.
const longTriton = { text_input: PROMPT, max_tokens: 400, end_id: 2 };
const longOpenAi = { model: "default", prompt: PROMPT, max_tokens: 400, ignore_eos: true, temperature: 0 };

/** Waits for a stream's first bytes, leaving the rest unread. */
async function firstBytes(r: Response): Promise<void> {
  await (r.body as ReadableStream<Uint8Array>).getReader().read();
}

describe("openServer: the API key guards every API route, not the probes", () => {
  let s: BundledServer;
  before(async () => {
    s = await bundledServer({ apiKey: "sesame" });
  });
  after(() => s.close());

  const call = (path: string, body?: object, key?: string) =>
    fetch(`${s.server.url}${path}`, {
      method: body ? "POST" : "GET",
      headers: {
        ...(body ? { "content-type": "application/json" } : {}),
        ...(key ? { authorization: `Bearer ${key}` } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });

  test("Triton, tokenize and OpenAI routes: 401 without the key or with a wrong one, served with it", async () => {
    const routes: [string, object][] = [
      ["/v2/models/default/generate", { text_input: PROMPT, max_tokens: 2 }],
      ["/tokenize", { prompt: PROMPT }],
      ["/detokenize", { tokens: [1, 2] }],
      ["/v1/completions", { model: "default", prompt: PROMPT, max_tokens: 2 }],
    ];
    for (const [path, body] of routes) {
      for (const key of [undefined, "wrong"]) {
        const r = await call(path, body, key);
        assert.equal(r.status, 401, `${path} with key ${key}`);
        const error = ((await r.json()) as { error: { type: string } | string }).error;
        // Triton's shape under /v2/, OpenAI's elsewhere.
        if (typeof error === "string") assert.ok(path.startsWith("/v2/") && /API key/.test(error), error);
        else assert.equal(error.type, "authentication_error");
      }
      assert.equal((await call(path, body, "sesame")).status, 200, path);
    }
    for (const path of ["/v2/models/default", "/v2/models/default/ready"])
      assert.equal((await call(path)).status, 401, path);
  });

  test("probes and scrapes need no key", async () => {
    for (const path of ["/health", "/version", "/metrics", "/v2/health/live", "/v2/health/ready"])
      assert.equal((await call(path)).status, 200, path);
  });
});

test("GET /health and Triton's readiness answer 503 once the executor's loop is dead", async () => {
  const s = await bundledServer();
  try {
    const paths = ["/health", "/v2/health/ready", "/v2/models/default/ready"];
    const statuses = async () =>
      Promise.all(paths.map(async (p) => (await fetch(`${s.server.url}${p}`)).status));
    assert.deepEqual(await statuses(), [200, 200, 200]);
    await s.server.ctx.model.executor.shutdown();
    assert.equal(s.server.ctx.model.executor.alive, false);
    assert.deepEqual(await statuses(), [503, 503, 503]);
    assert.equal((await fetch(`${s.server.url}/v2/health/live`)).status, 200, "the process itself lives");
  } finally {
    await s.close();
  }
});

test("a port already in use: ListenError naming the address and the fix; the first server serves on", async () => {
  const s = await bundledServer();
  try {
    await assert.rejects(
      bundledServer({ port: s.server.port }),
      (e: Error) =>
        e instanceof ListenError &&
        e.message.includes(`127.0.0.1:${s.server.port} is already in use`) &&
        e.message.includes("--port"),
    );
    assert.equal((await fetch(`${s.server.url}/health`)).status, 200);
  } finally {
    await s.close();
  }
});

describe("openServer: one concurrency limit and one shutdown for both APIs", () => {
  test("--max-concurrent 1: a running OpenAI stream makes Triton answer 429, and the other way round", async () => {
    const s = await bundledServer({ maxConcurrent: 1 });
    try {
      const ex = s.server.ctx.model.executor;
      const triton = `${s.server.url}/v2/models/default/generate`;
      const openai = `${s.server.url}/v1/completions`;

      const abort = new AbortController();
      const stream = await post(openai, { ...longOpenAi, stream: true }, abort.signal);
      assert.equal(stream.status, 200);
      await firstBytes(stream);
      const full = await post(triton, { text_input: PROMPT, max_tokens: 2 });
      assert.equal(full.status, 429, await full.clone().text());
      assert.equal(full.headers.get("retry-after"), "1");
      abort.abort();
      assert.ok(await until(() => kvIdle(s.server).idle && s.server.ctx.inFlight.numAdmitted === 0));

      const abort2 = new AbortController();
      const tstream = await post(`${triton}_stream`, longTriton, abort2.signal);
      assert.equal(tstream.status, 200);
      await firstBytes(tstream);
      const full2 = await post(openai, { ...longOpenAi, max_tokens: 2 });
      assert.equal(full2.status, 429, await full2.clone().text());
      abort2.abort();
      assert.ok(await until(() => kvIdle(s.server).idle && s.server.ctx.inFlight.numAdmitted === 0));
      assert.equal((await post(triton, { text_input: PROMPT, max_tokens: 2 })).status, 200);
      assert.equal(ex.stats().numRunning, 0);
    } finally {
      await s.close();
    }
  });

  test("shutdown waits for Triton requests, cancels them after the grace period (503 / error event)", async () => {
    const s = await bundledServer({ shutdownTimeoutS: 0.3 });
    const triton = `${s.server.url}/v2/models/default/generate`;
    const ex = s.server.ctx.model.executor;
    const stream = await post(`${triton}_stream`, { ...longTriton, max_tokens: 480 });
    assert.equal(stream.status, 200);
    const streamed = readStream(stream);
    const plain = post(triton, { ...longTriton, max_tokens: 480 });
    assert.ok(await until(() => ex.stats().numRunning === 2));
    const closing = s.server.close();
    const refused = await post(triton, { text_input: PROMPT, max_tokens: 2 });
    assert.equal(refused.status, 503);
    assert.match(((await refused.json()) as { error: string }).error, /shutting down/);

    const { chunks } = parseSse(await streamed);
    assert.ok(chunks.length > 1, "tokens streamed before the cancel");
    assert.match(String((chunks.at(-1) as { error?: string }).error), /shut down/);
    const answer = await plain;
    assert.equal(answer.status, 503);
    assert.match(((await answer.json()) as { error: string }).error, /shut down/);
    await closing;
    assert.equal(s.server.ctx.inFlight.numAdmitted, 0);
    await s.close();
  });
});

const METRICS = [
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

/** `kiln:` series of an exposition, keyed `name{labels}` (labels as written), and the other lines. */
function series(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of text.split("\n")) {
    if (l === "" || l.startsWith("#")) continue;
    const at = l.lastIndexOf(" ");
    out.set(l.slice(0, at), Number(l.slice(at + 1)));
  }
  return out;
}

test("GET /metrics on the whole server: every metric with model_name, counters moved by the exact amounts", async () => {
  const s = await bundledServer();
  try {
    const url = s.server.url;
    const ex = s.server.ctx.model.executor;
    const tok = s.server.ctx.model.tokenizer as NonNullable<typeof s.server.ctx.model.tokenizer>;
    const scrape = async () => {
      const r = await fetch(`${url}/metrics`);
      assert.equal(r.status, 200);
      assert.match(String(r.headers.get("content-type")), /^text\/plain/);
      return r.text();
    };
    const before = series(await scrape());
    const iterations0 = ex.stats().numIterations;

    // 1. An OpenAI completion of 5 tokens over a prompt of more than two KV blocks.
    const B = ex.stats().kv.tokensPerBlock;
    // Not a whole number of blocks, so the last one is partial and never cached.
    const prompt = [
      ...tok.encode("Now is the winter of our discontent made glorious summer. ".repeat(5)).ids,
      861,
    ];
    assert.ok(prompt.length > 2 * B && prompt.length % B !== 0, `${prompt.length} tokens, blocks of ${B}`);
    const completion = { model: "default", prompt, max_tokens: 5, ignore_eos: true, temperature: 0 };
    const c1 = (await (await post(`${url}/v1/completions`, completion)).json()) as {
      usage: { prompt_tokens: number; completion_tokens: number };
    };
    assert.deepEqual([c1.usage.prompt_tokens, c1.usage.completion_tokens], [prompt.length, 5]);
    // 2. A Triton generate of 4 tokens.
    const text = "Upon the heath, three witches meet";
    const tritonPrompt = tok.encode(text).ids.length;
    const t = await post(`${url}/v2/models/default/generate`, { text_input: text, max_tokens: 4, end_id: 2 });
    assert.equal(t.status, 200, await t.clone().text());
    // 3. The first prompt again with another end: its whole blocks come from the prefix cache.
    const c3 = (await (
      await post(`${url}/v1/completions`, { ...completion, prompt: [...prompt, 7], max_tokens: 3 })
    ).json()) as { usage: { prompt_tokens_details: { cached_tokens: number } } };
    const cached = c3.usage.prompt_tokens_details.cached_tokens;
    assert.equal(cached, Math.floor(prompt.length / B) * B);

    const body = await scrape();
    const after = series(body);
    for (const n of METRICS)
      assert.match(body, new RegExp(`^kiln:${n}(_bucket|_sum|_count)?\\{model_name="default"`, "m"), n);
    for (const [k] of after)
      if (k.startsWith("kiln:"))
        assert.match(k, /[{,]model_name="default"[,}]/, `${k} has the label model_name`);
    assert.ok(after.has("process_cpu_user_seconds_total") && after.has("nodejs_heap_size_total_bytes"));

    const M = '{model_name="default"}';
    const grew = (name: string, labels = M) =>
      (after.get(`kiln:${name}${labels}`) ?? Number.NaN) - (before.get(`kiln:${name}${labels}`) ?? 0);
    const prompts = prompt.length + tritonPrompt + prompt.length + 1;
    const generated = 5 + 4 + 3;
    assert.equal(grew("prompt_tokens_total"), prompts);
    assert.equal(grew("generation_tokens_total"), generated);
    const reason = (r: string) => `{model_name="default",finished_reason="${r}"}`;
    assert.equal(grew("request_success_total", reason("length")), 3);
    assert.equal(grew("request_success_total", reason("stop")), 0);
    assert.equal(grew("request_success_total", reason("abort")), 0);
    assert.equal(grew("prefix_cache_queries_total"), prompts);
    assert.equal(grew("prefix_cache_hits_total"), cached);
    for (const h of [
      "time_to_first_token_seconds",
      "e2e_request_latency_seconds",
      "request_queue_time_seconds",
      "request_prompt_tokens",
      "request_generation_tokens",
    ])
      assert.equal(grew(`${h}_count`), 3, `${h}_count`);
    assert.equal(grew("request_prompt_tokens_sum"), prompts);
    assert.equal(grew("request_generation_tokens_sum"), generated);
    assert.equal(
      grew("inter_token_latency_seconds_count"),
      generated - 3,
      "one gap per token after the first",
    );
    // Every iteration is observed: prompt tokens computed (all but the cached ones) plus one per decode.
    assert.equal(grew("iteration_tokens_total_count"), ex.stats().numIterations - iterations0);
    assert.equal(grew("iteration_tokens_total_sum"), prompts - cached + (generated - 3));
    for (const g of ["num_requests_running", "num_requests_waiting", "kv_cache_usage_perc"])
      assert.equal(after.get(`kiln:${g}${M}`), 0, `${g} at idle`);
  } finally {
    await s.close();
  }
});
