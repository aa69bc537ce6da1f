// The Triton routes on the bundled model: greedy /generate and /generate_stream give the executor's
// own greedy tokens, text and log-probs; bad fields are 400s naming the field in Triton's
// {"error": message} shape; health and metadata answer; a client that disconnects mid-stream cancels
// its request and frees its KV blocks.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { InFlight } from "../../src/server/in_flight.ts";
import { tritonRoutes } from "../../src/server/triton.ts";
import { collect } from "../executor/executor_helpers.ts";
import { type BundledServer, bundledServer, sseEvents } from "./bundled_server.ts";

const PROMPT = "Once upon a time";
let s: BundledServer;
before(async () => {
  s = await bundledServer([tritonRoutes]);
});
after(() => s.close());

const post = (path: string, payload: object) => s.app.inject({ method: "POST", url: path, payload });
const direct = async (extra: Record<string, unknown> = {}) =>
  collect(s.executor, s.executor.enqueue({ prompt: PROMPT, maxNewTokens: 12, greedy: true, ...extra }));

test("greedy /generate equals the executor's greedy output, with log-probs", async () => {
  const want = await direct();
  const r = await post("/v2/models/default/generate", {
    text_input: PROMPT,
    max_tokens: 12,
    return_log_probs: true,
    exclude_input_in_output: true,
  });
  assert.equal(r.statusCode, 200, r.body);
  const body = r.json();
  assert.equal(body.model_name, "default");
  assert.equal(body.model_version, "1");
  assert.equal(body.text_output, want.text);
  assert.ok(want.text.length > 0);
  assert.equal(body.output_log_probs.length, want.tokens.length);
  body.output_log_probs.forEach((lp: number, i: number) => assert.ok(Math.abs(lp - want.logProbs[i]) < 1e-6));
  const cum = want.logProbs.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(body.cum_log_probs - cum) < 1e-4);
  // TensorRT-LLM's default: the text starts with the input; no log-probs unless asked.
  const plain = (await post("/v2/models/default/generate", { text_input: PROMPT, max_tokens: 12 })).json();
  assert.equal(plain.text_output, PROMPT + want.text);
  assert.equal(plain.cum_log_probs, undefined);
});

test("top_k 1 and a text stop word decode as the executor does", async () => {
  const free = await direct({ endId: [], maxNewTokens: 20 });
  const word = free.text.trim().split(/\s+/)[1];
  assert.ok(word, `no second word in ${JSON.stringify(free.text)}`);
  const want = await direct({ maxNewTokens: 20, stopWords: [word] });
  assert.equal(want.finishReason, "stop");
  for (const stop_words of [word, [word, ""]]) {
    const r = await post("/v2/models/default/generate", {
      text_input: PROMPT,
      max_tokens: 20,
      top_k: 1,
      temperature: 0.7,
      stop_words,
      exclude_input_in_output: true,
    });
    assert.equal(r.json().text_output, want.text, JSON.stringify(stop_words));
  }
});

test("/generate_stream: one well-formed SSE event per token adding up to the greedy text", async () => {
  const want = await direct();
  const r = await post("/v2/models/default/generate_stream", {
    text_input: PROMPT,
    max_tokens: 12,
    return_log_probs: true,
    stream: true,
  });
  assert.equal(r.statusCode, 200);
  assert.match(String(r.headers["content-type"]), /^text\/event-stream/);
  assert.ok(r.body.endsWith("\n\n"));
  const events = sseEvents(r.body) as Record<string, unknown>[];
  assert.ok(events.length >= 1 && events.length <= want.tokens.length);
  for (const e of events) {
    assert.equal(e.model_name, "default");
    assert.equal(e.model_version, "1");
    assert.equal(typeof e.text_output, "string");
  }
  assert.equal(events.map((e) => e.text_output).join(""), want.text);
  const lps = events.flatMap((e) => e.output_log_probs as number[]);
  assert.equal(lps.length, want.tokens.length);
  const cum = want.logProbs.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs((events.at(-1)?.cum_log_probs as number) - cum) < 1e-4);
});

test("bad fields are 400s naming the field and its range, in Triton's error shape", async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ max_tokens: 4 }, /text_input/],
    [{ text_input: PROMPT }, /max_tokens is required/],
    [{ text_input: PROMPT, max_tokens: 0 }, /max_tokens 0 .*1\.\.511/],
    [{ text_input: PROMPT, max_tokens: 4, temperature: -1 }, /temperature -1 .*≥ 0/],
    [{ text_input: PROMPT, max_tokens: 4, top_p: 1.5 }, /top_p 1\.5 .*0\.\.1/],
    [{ text_input: PROMPT, max_tokens: 4, end_id: 99999 }, /end_id 99999 .*0\.\.2047/],
    [{ text_input: PROMPT, max_tokens: 4, stop_words: [1] }, /stop_words must be a string or a list/],
    [{ text_input: PROMPT, max_tokens: 4, return_log_probs: "yes" }, /return_log_probs/],
    [{ text_input: PROMPT, max_tokens: 4, frobnicate: 1 }, /field frobnicate is not supported/],
    [{ text_input: PROMPT, max_tokens: 4, stream: true }, /generate_stream/],
  ];
  for (const [payload, message] of cases) {
    const r = await post("/v2/models/default/generate", payload);
    assert.equal(r.statusCode, 400, JSON.stringify(payload));
    const body = r.json();
    assert.deepEqual(Object.keys(body), ["error"]);
    assert.match(body.error, message);
  }
  const beam = await post("/v2/models/default/generate_stream", {
    text_input: PROMPT,
    max_tokens: 4,
    beam_width: 2,
  });
  assert.equal(beam.statusCode, 400);
  assert.match(beam.json().error, /beam_width 2/);
  const unknown = await post("/v2/models/nope/generate", { text_input: PROMPT, max_tokens: 4 });
  assert.equal(unknown.statusCode, 404);
  assert.match(unknown.json().error, /"nope" is not served here/);
});

test("health, readiness, metadata; 503 while shutting down and 429 at the concurrency limit", async () => {
  const get = (url: string) => s.app.inject({ method: "GET", url });
  assert.equal((await get("/v2/health/live")).statusCode, 200);
  assert.equal((await get("/v2/health/ready")).statusCode, 200);
  assert.equal((await get("/v2/models/default/ready")).statusCode, 200);
  assert.equal((await get("/v2/models/other/ready")).statusCode, 404);
  const meta = (await get("/v2/models/default")).json();
  assert.equal(meta.name, "default");
  assert.deepEqual(meta.versions, ["1"]);
  assert.ok(meta.inputs.some((i: { name: string }) => i.name === "text_input"));
  assert.ok(meta.outputs.some((o: { name: string }) => o.name === "text_output"));
  const saved = s.ctx.inFlight;
  s.ctx.inFlight = new InFlight(Number.POSITIVE_INFINITY);
  s.ctx.inFlight.beginShutdown();
  try {
    assert.equal((await get("/v2/health/ready")).statusCode, 503);
    assert.equal((await get("/v2/health/live")).statusCode, 200);
    const r = await post("/v2/models/default/generate", { text_input: PROMPT, max_tokens: 2 });
    assert.equal(r.statusCode, 503);
  } finally {
    s.ctx.inFlight = saved;
  }
  s.ctx.inFlight = new InFlight(0);
  try {
    const r = await post("/v2/models/default/generate_stream", { text_input: PROMPT, max_tokens: 2 });
    assert.equal(r.statusCode, 429);
    assert.equal(r.headers["retry-after"], "1");
  } finally {
    s.ctx.inFlight = saved;
  }
});

test("a client that disconnects mid-stream cancels its request and frees its blocks", async () => {
  await s.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = s.app.server.address() as AddressInfo;
  const before = s.executor.stats().numGeneratedTokens;
  const abort = new AbortController();
  const res = await fetch(`http://127.0.0.1:${port}/v2/models/default/generate_stream`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    // end_id: the pad id, which the model never samples, so only the disconnect ends it early.
    body: JSON.stringify({ text_input: PROMPT, max_tokens: 400, end_id: 2 }),
    signal: abort.signal,
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value), /^data: \{/);
  assert.equal(s.executor.stats().numRunning, 1);
  abort.abort();
  const t0 = Date.now();
  while (s.executor.stats().numRunning > 0 && Date.now() - t0 < 5000)
    await new Promise((r) => setTimeout(r, 5));
  const st = s.executor.stats();
  assert.equal(st.numRunning, 0);
  assert.equal(st.kv.numUsed, 0, "the cancelled request's blocks are free");
  assert.ok(st.numGeneratedTokens - before < 400, "generation stopped before max_tokens");
  // The route reports it ended as an abort.
  const abortLine = /^kiln:request_success_total\{model_name="default",finished_reason="abort"\} 1$/m;
  for (let i = 0; i < 100 && !abortLine.test((await s.ctx.metrics.render()).body); i++)
    await new Promise((r) => setTimeout(r, 5));
  assert.match((await s.ctx.metrics.render()).body, abortLine);
});
