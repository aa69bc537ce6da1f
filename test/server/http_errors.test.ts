// Every way a client can get a request wrong gets a 4xx in OpenAI's error shape, naming the field (and
// its range) where there is one, and the server keeps serving: bad fields, unknown and unsupported
// fields, 401, 404, 413, 429 with Retry-After, malformed JSON, invalid UTF-8, a 10 MB body.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseSse, type ScriptedEvent, ScriptedExecutor, scriptedApp } from "./scripted_executor.ts";

const DONE: ScriptedEvent[] = [{ tokenIds: [5], text: "a", finishReason: "end" }];
const base = { model: "scripted", prompt: [1, 2] };
const chat = { model: "scripted", messages: [{ role: "user", content: "hi" }] };

/** [endpoint, body, param named in the answer, a fragment of the message]. */
const BAD: [string, Record<string, unknown>, string | null, RegExp][] = [
  ["c", { ...base, temperature: 2.5 }, "temperature", /\[0, 2\]/],
  ["c", { ...base, temperature: "hot" }, "temperature", /number/],
  ["c", { ...base, top_p: 0 }, "top_p", /\(0, 1\]/],
  ["c", { ...base, n: 0 }, "n", /1\.\.64/],
  ["c", { ...base, n: 1e300 }, "n", /1\.\.64/],
  ["c", { ...base, max_tokens: -1 }, "max_tokens", /1\.\.64/],
  ["c", { ...base, max_tokens: 63 }, "max_tokens", /context window/],
  ["c", { ...base, seed: -3 }, "seed", /integer/],
  ["c", { ...base, presence_penalty: 3 }, "presence_penalty", /\[-2, 2\]/],
  ["c", { ...base, logit_bias: { "999": 1 } }, "logit_bias", /0\.\.99/],
  ["c", { ...base, logit_bias: { "3": 101 } }, "logit_bias", /\[-100, 100\]/],
  ["c", { ...base, stop: ["", "x"] }, "stop", /non-empty/],
  ["c", { ...base, stop_token_ids: [100] }, "stop_token_ids", /0\.\.99/],
  ["c", { ...base, logprobs: 6 }, "logprobs", /0\.\.5/],
  ["c", { ...base, logprobs: 3, use_beam_search: true }, "logprobs", /with use_beam_search/],
  ["c", { ...base, echo: true, logprobs: 0 }, "echo", /prompt's log-probabilities/],
  ["c", { ...base, suffix: "x" }, "suffix", /suffix/],
  ["c", { ...base, frobnicate: 1 }, "frobnicate", /unsupported field frobnicate/],
  ["c", { ...base, stream_options: { include_usage: true } }, "stream_options", /stream is true/],
  ["c", { ...base, stream: true, stream_options: { extra: 1 } }, "stream_options.extra", /unsupported/],
  ["c", { ...base, best_of: 2 }, "best_of", /use_beam_search/],
  ["c", { ...base, use_beam_search: true, stream: true }, "stream", /beams/],
  ["c", { ...base, skip_special_tokens: false }, "skip_special_tokens", /not supported/],
  ["c", { ...base, min_tokens: 9, max_tokens: 3 }, "min_tokens", /above max_tokens/],
  ["c", { ...base, prompt: [] }, "prompt", /empty/],
  ["c", { ...base, prompt: [1, 100] }, "prompt", /0\.\.99/],
  ["c", { ...base, prompt: "text" }, "prompt", /no tokenizer/],
  ["c", { ...base, prompt: [[1], "x"] }, "prompt", /prompt must be/],
  ["c", { ...base, prompt: Array(64).fill(1) }, "prompt", /at most 63/],
  ["c", { prompt: [1] }, "model", /model must be a string/],
  ["c", [1, 2] as unknown as Record<string, unknown>, null, /JSON object/],
  ["h", { ...chat, messages: [] }, "messages", /non-empty/],
  [
    "h",
    { ...chat, messages: [{ role: "wizard", content: "x" }] },
    "messages[0].role",
    /system, user, assistant/,
  ],
  [
    "h",
    { ...chat, messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] },
    "messages[0].content[0]",
    /text part/,
  ],
  [
    "h",
    { ...chat, messages: [{ role: "user", content: "x", tool_calls: [] }] },
    "messages[0].tool_calls",
    /unsupported/,
  ],
  ["h", { ...chat, tools: [] }, "tools", /tool calls/],
  ["h", { ...chat, response_format: { type: "json_object" } }, "response_format", /structured output/],
  ["h", { ...chat, top_logprobs: 21, logprobs: true }, "top_logprobs", /0\.\.20/],
  [
    "h",
    { ...chat, top_logprobs: 2, logprobs: true, use_beam_search: true },
    "top_logprobs",
    /with use_beam_search/,
  ],
  ["h", { ...chat, top_logprobs: 0 }, "top_logprobs", /needs logprobs/],
  ["h", { ...chat, max_tokens: 3, max_completion_tokens: 4 }, "max_completion_tokens", /differ/],
  ["h", chat, "messages", /no chat template/],
];

describe("HTTP errors", () => {
  test("bad fields: 400 naming the field and the allowed range; nothing is queued", async () => {
    const ex = new ScriptedExecutor(() => DONE);
    const { app, ctx } = scriptedApp(ex);
    for (const [where, body, param, message] of BAD) {
      const url = where === "c" ? "/v1/completions" : "/v1/chat/completions";
      const r = await app.inject({ method: "POST", url, payload: body });
      const what = `${url} ${JSON.stringify(body).slice(0, 120)}`;
      assert.equal(r.statusCode, 400, `${what}: ${r.body}`);
      const e = r.json().error;
      assert.equal(e.param, param, what);
      assert.equal(e.type, "invalid_request_error", what);
      assert.equal(e.code, 400, what);
      assert.match(e.message, message, what);
    }
    assert.equal(ex.requests.length, 0, "no bad request reached the executor");
    assert.equal(ctx.inFlight.numAdmitted, 0);
    const ok = await app.inject({ method: "POST", url: "/v1/completions", payload: base });
    assert.equal(ok.statusCode, 200, "still serving");
  });

  test("unknown model and route: 404 in OpenAI's shape", async () => {
    const { app } = scriptedApp(new ScriptedExecutor(() => DONE));
    const m = await app.inject({
      method: "POST",
      url: "/v1/completions",
      payload: { ...base, model: "gpt-9" },
    });
    assert.equal(m.statusCode, 404);
    assert.equal(m.json().error.param, "model");
    const r = await app.inject({ method: "GET", url: "/v1/nothing" });
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().error.type, "not_found_error");
  });

  test("API key: 401 without or with a wrong bearer token, 200 with it; probes stay open", async () => {
    const { app } = scriptedApp(new ScriptedExecutor(() => DONE), { apiKey: "s3cret" });
    const send = (authorization?: string) =>
      app.inject({
        method: "POST",
        url: "/v1/completions",
        payload: base,
        headers: authorization ? { authorization } : {},
      });
    for (const h of [undefined, "Bearer wrong", "Bearer s3cre", "s3cret", "Basic s3cret"]) {
      const r = await send(h);
      assert.equal(r.statusCode, 401, String(h));
      assert.equal(r.json().error.type, "authentication_error");
    }
    assert.equal((await send("Bearer s3cret")).statusCode, 200);
    assert.equal((await app.inject({ url: "/v1/models" })).statusCode, 401);
    assert.equal((await app.inject({ url: "/health" })).statusCode, 200);
  });

  test("malformed JSON, invalid UTF-8, an empty body, a non-JSON content type: 4xx", async () => {
    const { app } = scriptedApp(new ScriptedExecutor(() => DONE));
    const raw = (payload: string | Buffer, type = "application/json") =>
      app.inject({ method: "POST", url: "/v1/completions", payload, headers: { "content-type": type } });
    const bad = await raw('{"model": "scripted", "prompt": [1,');
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().error.message, /not valid JSON/);
    const utf = await raw(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]));
    assert.equal(utf.statusCode, 400);
    assert.match(utf.json().error.message, /UTF-8/);
    assert.equal((await raw("")).statusCode, 400);
    const text = await raw("hello", "text/plain");
    assert.equal(text.statusCode, 400);
    assert.match(text.json().error.message, /JSON object/);
    const xml = await raw("<a/>", "application/xml");
    assert.equal(xml.statusCode, 415);
    assert.ok(xml.json().error, "OpenAI error shape");
    assert.equal((await raw(JSON.stringify(base))).statusCode, 200, "still serving");
  });

  test("over the body limit (a 10 MB body): 413", async () => {
    const { app } = scriptedApp(new ScriptedExecutor(() => DONE), { bodyLimit: 4 * 2 ** 20 });
    const big = JSON.stringify({ ...base, user: "x".repeat(10 * 2 ** 20) });
    const r = await app.inject({
      method: "POST",
      url: "/v1/completions",
      payload: big,
      headers: { "content-type": "application/json" },
    });
    assert.equal(r.statusCode, 413);
    assert.equal(r.json().error.code, 413);
    assert.equal(
      (await app.inject({ method: "POST", url: "/v1/completions", payload: base })).statusCode,
      200,
    );
  });

  test("--max-concurrent: 429 with Retry-After while full, served again once room frees", async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const ex = new ScriptedExecutor(
      () => DONE,
      () => gate,
    );
    const { app, ctx } = scriptedApp(ex, { maxConcurrent: 2 });
    const first = app.inject({
      method: "POST",
      url: "/v1/completions",
      payload: { ...base, prompt: [[1], [2]] },
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(ctx.inFlight.numAdmitted, 2);
    const full = await app.inject({ method: "POST", url: "/v1/completions", payload: base });
    assert.equal(full.statusCode, 429);
    assert.equal(full.headers["retry-after"], "1");
    assert.equal(full.json().error.type, "rate_limit_error");
    open();
    assert.equal((await first).statusCode, 200);
    assert.equal(
      (await app.inject({ method: "POST", url: "/v1/completions", payload: base })).statusCode,
      200,
    );
  });

  test("an error after the stream began is an error event, then [DONE]", async () => {
    const ex = new ScriptedExecutor(() => DONE);
    ex.results = () =>
      (async function* () {
        yield {
          requestId: 1,
          tokenIds: [5],
          logProbs: [-1],
          cumLogProb: -1,
          text: "a",
          finishReason: null,
          sequenceIndex: 0,
          isFinal: false,
          timing: { arrival: 0, firstScheduled: 0, firstToken: 0, last: 0 },
        };
        throw new Error("backend exploded");
      })();
    const { app, ctx } = scriptedApp(ex);
    const r = await app.inject({
      method: "POST",
      url: "/v1/completions",
      payload: { ...base, stream: true },
    });
    const { chunks, done } = parseSse(r.body);
    assert.ok(done);
    const err = (chunks.at(-1) as { error: { code: number; message: string } }).error;
    assert.equal(err.code, 500);
    assert.doesNotMatch(err.message, /exploded/, "a bug's details stay in the log");
    assert.equal(ctx.metrics.finished[0].finishReason, "error");
  });
});
