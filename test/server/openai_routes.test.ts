// The OpenAI routes against a scripted executor (no model): field mapping onto ExecutorRequest, the
// several-sequence result shape (n > 1, beams, several prompts) mapped onto choices, SSE framing,
// and the answers for timeouts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import { RequestTooLargeError } from "../../src/executor/errors.ts";
import type { ExecutorRequest } from "../../src/executor/executor.ts";
import { ChatTemplateError } from "../../src/runtime/chat_template.ts";
import { buildApp } from "../../src/server/app.ts";
import type { ServedExecutor } from "../../src/server/server_context.ts";
import {
  parseSse,
  type ScriptedEvent,
  ScriptedExecutor,
  scriptedApp,
  scriptedContext,
} from "./scripted_executor.ts";

const ev = (
  seq: number,
  tokenIds: number[],
  text: string,
  finishReason: ScriptedEvent["finishReason"] = null,
  isFinal = false,
): ScriptedEvent => ({
  sequenceIndex: seq,
  tokenIds,
  text,
  finishReason,
  isFinal,
});

/** Two sequences interleaved; sequence 1 ends first (length), sequence 0 last (stop). */
const TWO: ScriptedEvent[] = [
  ev(0, [5], "a"),
  ev(1, [6], "x"),
  ev(1, [7], "y", "length"),
  ev(0, [8], "b"),
  ev(0, [9], "c", "end", true),
];

const post = (app: ReturnType<typeof scriptedApp>["app"], url: string, payload: unknown) =>
  app.inject({ method: "POST", url, payload: payload as Record<string, unknown> });

describe("openai routes on a scripted executor", () => {
  test("completions streamed by a model without a tokenizer: one chunk per token, text empty", async () => {
    // No tokenizer (the scripted model's), so no text: every token's delta still goes out, or a
    // streaming client (kiln bench --serve) would see nothing before the finish.
    const ex = new ScriptedExecutor(() => [ev(0, [5], ""), ev(0, [6], ""), ev(0, [7], "", "length", true)]);
    const { app } = scriptedApp(ex);
    const r = await post(app, "/v1/completions", { model: "scripted", prompt: [1, 2], stream: true });
    assert.equal(r.statusCode, 200, r.body);
    const { chunks, done } = parseSse(r.body);
    assert.ok(done);
    const choices = chunks.map(
      (c) => (c as { choices: { text: string; finish_reason: string | null }[] }).choices[0],
    );
    assert.deepEqual(
      choices.map((c) => [c.text, c.finish_reason]),
      [
        ["", null],
        ["", null],
        ["", "length"],
      ],
    );
  });

  test("completions, n = 2: one choice per sequence, each with its finish reason; exact usage", async () => {
    const ex = new ScriptedExecutor(() => TWO);
    const { app, ctx } = scriptedApp(ex);
    const r = await post(app, "/v1/completions", {
      model: "scripted",
      prompt: [1, 2, 3],
      n: 2,
      max_tokens: 5,
    });
    assert.equal(r.statusCode, 200, r.body);
    const b = r.json();
    assert.deepEqual(
      b.choices.map((c: { index: number; text: string; finish_reason: string }) => [
        c.index,
        c.text,
        c.finish_reason,
      ]),
      [
        [0, "abc", "stop"],
        [1, "xy", "length"],
      ],
    );
    assert.deepEqual(b.usage, {
      prompt_tokens: 3,
      completion_tokens: 5,
      total_tokens: 8,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    assert.equal(ex.requests[0].numReturnSequences, 2);
    assert.equal(ex.requests[0].streaming, true, "always enqueued streaming");
    assert.equal(ctx.metrics.finished.length, 1);
    assert.equal(ctx.metrics.finished[0].generationTokens, 5);
    assert.equal(ctx.inFlight.numAdmitted, 0);
  });

  test("several prompts: choice index = prompt × n + sequence", async () => {
    const ex = new ScriptedExecutor((r) =>
      TWO.map((e) => ({ ...e, text: `${(r.prompt as number[])[0]}${e.text}` })),
    );
    const { app } = scriptedApp(ex);
    const r = await post(app, "/v1/completions", { model: "scripted", prompt: [[10], [20, 21]], n: 2 });
    assert.equal(r.statusCode, 200, r.body);
    const texts = r.json().choices.map((c: { text: string }) => c.text);
    assert.deepEqual(texts, ["10a10b10c", "10x10y", "20a20b20c", "20x20y"]);
    assert.equal(r.json().usage.prompt_tokens, 3);
  });

  test("several prompts are enqueued at once, not each after the last one's answer", async () => {
    // An executor on its own thread answers enqueue a turn of its loop later (executor_thread.ts).
    const ex = new ScriptedExecutor(() => [ev(0, [5, 6], "ab", "end", true)]);
    const enqueue = ex.enqueue.bind(ex);
    let waiting = 0;
    let most = 0;
    (ex as { enqueue: ServedExecutor["enqueue"] }).enqueue = async (r) => {
      most = Math.max(most, ++waiting);
      await new Promise((resolve) => setTimeout(resolve, 5));
      waiting--;
      return enqueue(r);
    };
    const { app } = scriptedApp(ex);
    const r = await post(app, "/v1/completions", { model: "scripted", prompt: [[10], [20], [30]] });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(most, 3, "the three enqueues were in flight together");
    assert.equal(r.json().choices.length, 3);
  });

  test("beam search: the final events (one per beam, whole output) become the choices", async () => {
    const ex = new ScriptedExecutor(() => [
      { ...ev(0, [5, 6], "best", "end"), score: -1 },
      { ...ev(1, [7, 8, 9], "second", "length", true), score: -2 },
    ]);
    const { app } = scriptedApp(ex);
    const r = await post(app, "/v1/completions", {
      model: "scripted",
      prompt: [1],
      n: 2,
      best_of: 3,
      use_beam_search: true,
      length_penalty: 0.5,
    });
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(
      r.json().choices.map((c: { text: string }) => c.text),
      ["best", "second"],
    );
    assert.equal(r.json().usage.completion_tokens, 5);
    const req = ex.requests[0] as ExecutorRequest & { lengthPenalty?: number };
    assert.equal(req.beamWidth, 3);
    assert.equal(req.numReturnSequences, 2);
    assert.equal(req.lengthPenalty, 0.5);
  });

  test("chat stream, n = 2: role first per choice, content deltas, finish_reason last, usage, [DONE]", async () => {
    const ex = new ScriptedExecutor(() => TWO);
    const { app, ctx } = scriptedApp(ex);
    ctx.model.chatTemplate = {
      render: (ms: { content: string }[]) => ms.map((m) => m.content).join(""),
    } as unknown as typeof ctx.model.chatTemplate;
    ctx.model.tokenizer = {
      encode: (t: string) => ({ ids: [...t].map((c) => c.charCodeAt(0) % 100), tokens: [] }),
      decode: (ids: number[]) => ids.join(","),
    } as unknown as typeof ctx.model.tokenizer;
    const r = await post(app, "/v1/chat/completions", {
      model: "scripted",
      messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }],
      n: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.equal(r.statusCode, 200, r.body);
    assert.match(String(r.headers["content-type"]), /text\/event-stream/);
    const { chunks, done } = parseSse(r.body);
    assert.ok(done);
    type C = {
      choices: { index: number; delta: { role?: string; content?: string }; finish_reason: string | null }[];
      usage?: unknown;
    };
    const cs = chunks as unknown as C[];
    for (const i of [0, 1]) {
      const mine = cs.filter((c) => c.choices[0]?.index === i).map((c) => c.choices[0]);
      assert.equal(mine[0].delta.role, "assistant");
      assert.equal(mine.map((c) => c.delta.content ?? "").join(""), i === 0 ? "abc" : "xy");
      assert.equal(mine.at(-1)?.finish_reason, i === 0 ? "stop" : "length");
      assert.deepEqual(mine.at(-1)?.delta, {});
      assert.ok(mine.slice(0, -1).every((c) => c.finish_reason === null));
    }
    const last = cs.at(-1) as C;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, {
      prompt_tokens: 2,
      completion_tokens: 5,
      total_tokens: 7,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    assert.ok(cs.slice(0, -1).every((c) => c.usage === null));
  });

  test("fields map onto the executor request", async () => {
    const ex = new ScriptedExecutor(() => [ev(0, [5], "a", "end", true)]);
    const { app } = scriptedApp(ex, { requestTimeoutMs: 5000 });
    const r = await post(app, "/v1/completions", {
      model: "scripted",
      prompt: [1, 2],
      temperature: 0,
      top_k: -1,
      top_p: 0.5,
      min_p: 0.1,
      seed: 7,
      presence_penalty: 1,
      frequency_penalty: -1,
      repetition_penalty: 1.2,
      logit_bias: { "3": -100, "4": 5 },
      stop: "xx",
      stop_token_ids: [9],
      min_tokens: 2,
      priority: 0.9,
      user: "u1",
      max_tokens: 7,
    });
    assert.equal(r.statusCode, 200, r.body);
    const q = ex.requests[0];
    assert.equal(q.greedy, true);
    assert.equal(q.topK, 0);
    assert.equal(q.topP, 0.5);
    assert.equal(q.minP, 0.1);
    assert.equal(q.seed, 7);
    assert.equal(q.presencePenalty, 1);
    assert.equal(q.frequencyPenalty, -1);
    assert.equal(q.repetitionPenalty, 1.2);
    assert.deepEqual(q.embeddingBias, { 3: -100, 4: 5 });
    assert.deepEqual(q.stopWords, ["xx"]);
    assert.deepEqual(q.endId, [2, 9]);
    assert.equal(q.priority, 0.9);
    assert.equal(q.maxNewTokens, 7);
    assert.equal(q.allottedTimeMs, 5000);
    assert.deepEqual(q.prompt, [1, 2]);
    // min_tokens: the executor bans the end ids (endId) until that many tokens exist; plain data, so
    // the request can cross to the executor's thread.
    assert.equal(q.minLength, 2);
    assert.equal(q.logitsProcessors, undefined);
    const many = await post(app, "/v1/completions", { model: "scripted", prompt: [1], min_tokens: 20 });
    assert.equal(many.statusCode, 200, many.body);
    assert.equal(ex.requests[1].minLength, 16, "min_tokens beyond the default max_tokens (16): all 16");
    const ig = await post(app, "/v1/completions", { model: "scripted", prompt: [1], ignore_eos: true });
    assert.equal(ig.statusCode, 200);
    assert.deepEqual(ex.requests[2].endId, []);
    assert.equal(ex.requests[2].maxNewTokens, 16, "OpenAI's default max_tokens for completions");
  });

  test("logprobs: the chosen token's, in both shapes", async () => {
    const ex = new ScriptedExecutor(() => [ev(0, [5, 6], "ab", "end", true)]);
    const { app } = scriptedApp(ex);
    const c = await post(app, "/v1/completions", { model: "scripted", prompt: [1], logprobs: 1 });
    assert.equal(c.statusCode, 200, c.body);
    const lp = c.json().choices[0].logprobs;
    assert.deepEqual(lp.token_logprobs, [-0.5, -0.5]);
    assert.deepEqual(lp.tokens, ["5", "6"]);
    assert.deepEqual(lp.top_logprobs, [{ 5: -0.5 }, { 6: -0.5 }]);
    assert.deepEqual(lp.text_offset, [0, 1]);
  });

  test("a timed-out request: 408 plain, an error event then [DONE] streamed", async () => {
    const ex = new ScriptedExecutor(() => [ev(0, [5], "a"), ev(0, [], "", "timed_out")]);
    const { app, ctx } = scriptedApp(ex, { requestTimeoutMs: 1000 });
    const r = await post(app, "/v1/completions", { model: "scripted", prompt: [1] });
    assert.equal(r.statusCode, 408, r.body);
    assert.equal(r.json().error.type, "timeout_error");
    const s = await post(app, "/v1/completions", { model: "scripted", prompt: [1], stream: true });
    assert.equal(s.statusCode, 200);
    const { chunks, done } = parseSse(s.body);
    assert.ok(done);
    assert.equal((chunks.at(-1) as { error: { code: number } }).error.code, 408);
    assert.deepEqual(
      ctx.metrics.finished.map((f) => f.finishReason),
      ["timed_out", "timed_out"],
    );
    assert.equal(ctx.inFlight.numAdmitted, 0);
  });

  test("executor refusals: a request too large for the KV cache → 400 naming max_tokens", async () => {
    const ex = new ScriptedExecutor(() => [ev(0, [5], "a", "end", true)]);
    const enqueue = ex.enqueue.bind(ex);
    ex.enqueue = (r) => {
      if ((r.prompt as number[])[0] === 13) throw new RequestTooLargeError(9, 1, 40, 3, 2, 16);
      return enqueue(r);
    };
    const { app, ctx } = scriptedApp(ex);
    // The second prompt is refused: the first, already queued, is cancelled and reported.
    const big = await post(app, "/v1/completions", { model: "scripted", prompt: [[1], [13]] });
    assert.equal(big.statusCode, 400);
    assert.equal(big.json().error.param, "max_tokens");
    assert.match(big.json().error.message, /KV cache/);
    assert.deepEqual(ex.cancelled, [ex.requests.length]);
    assert.deepEqual(
      ctx.metrics.finished.map((f) => f.finishReason),
      ["cancelled"],
    );
    assert.equal(ctx.inFlight.numAdmitted, 0);
  });

  test("a template that refuses the conversation: 400 naming messages", async () => {
    const ex = new ScriptedExecutor(() => [ev(0, [5, 6], "ok", "end", true)]);
    const { app, ctx } = scriptedApp(ex);
    ctx.model.chatTemplate = {
      render: (ms: { role: string }[]) => {
        if (ms[0].role !== "user") throw new ChatTemplateError("roles must alternate user/assistant");
        return "p";
      },
    } as unknown as typeof ctx.model.chatTemplate;
    ctx.model.tokenizer = {
      encode: () => ({ ids: [1], tokens: [] }),
      decode: (ids: number[]) => ids.map((i) => `<${i}>`).join(""),
    } as unknown as typeof ctx.model.tokenizer;
    const refused = await post(app, "/v1/chat/completions", {
      model: "scripted",
      messages: [{ role: "assistant", content: "x" }],
    });
    assert.equal(refused.statusCode, 400);
    assert.equal(refused.json().error.param, "messages");
    assert.match(refused.json().error.message, /alternate/);
    const r = await post(app, "/v1/chat/completions", {
      model: "scripted",
      messages: [{ role: "user", content: "x" }],
    });
    assert.equal(r.json().choices[0].message.content, "ok");
  });

  test("echo puts the prompt's text first (plain and streamed); add_generation_prompt reaches the template; --max-prompt-tokens", async () => {
    const ex = new ScriptedExecutor(() => [ev(0, [5], "a"), ev(0, [6], "b", "end", true)]);
    const { app, ctx } = scriptedApp(ex);
    const rendered: unknown[] = [];
    ctx.model.chatTemplate = {
      render: (_ms: unknown, o: { addGenerationPrompt: boolean }) => {
        rendered.push(o.addGenerationPrompt);
        return "p";
      },
    } as unknown as typeof ctx.model.chatTemplate;
    ctx.model.tokenizer = {
      encode: (t: string) => ({ ids: [...t].map(() => 1), tokens: [] }),
      decode: (ids: number[]) => ids.map((i) => `<${i}>`).join(""),
    } as unknown as typeof ctx.model.tokenizer;
    const plain = await post(app, "/v1/completions", { model: "scripted", prompt: "Hi there", echo: true });
    assert.equal(plain.json().choices[0].text, "Hi thereab");
    const ids = await post(app, "/v1/completions", { model: "scripted", prompt: [3, 4], echo: true });
    assert.equal(ids.json().choices[0].text, "<3><4>ab");
    const streamed = await post(app, "/v1/completions", {
      model: "scripted",
      prompt: "Hi",
      echo: true,
      stream: true,
    });
    const texts = parseSse(streamed.body).chunks.map(
      (c) => (c as { choices: { text: string }[] }).choices[0].text,
    );
    assert.deepEqual(texts, ["Hi", "a", "b"]);
    for (const add of [undefined, false, true])
      await post(app, "/v1/chat/completions", {
        model: "scripted",
        messages: [{ role: "user", content: "x" }],
        ...(add === undefined ? {} : { add_generation_prompt: add }),
      });
    assert.deepEqual(rendered, [true, false, true], "default true");
    ctx.settings.maxPromptTokens = 4;
    const long = await post(app, "/v1/completions", { model: "scripted", prompt: "12345" });
    assert.equal(long.statusCode, 400);
    assert.equal(long.json().error.param, "prompt");
    assert.match(long.json().error.message, /5 tokens; this server takes at most 4 .*--max-prompt-tokens 4/);
    const chat = await post(app, "/v1/chat/completions", {
      model: "scripted",
      messages: [{ role: "user", content: "x" }],
    });
    assert.equal(chat.statusCode, 200, "the rendered prompt (1 token) fits");
  });

  test("GET /v1/models, /version, /health, /metrics", async () => {
    const ex = new ScriptedExecutor(() => []);
    const { app, ctx } = scriptedApp(ex);
    const m = await app.inject({ url: "/v1/models" });
    assert.deepEqual(
      m.json().data.map((d: { id: string }) => d.id),
      ["scripted"],
    );
    assert.equal((await app.inject({ url: "/v1/models/scripted" })).statusCode, 200);
    assert.equal((await app.inject({ url: "/v1/models/other" })).statusCode, 404);
    assert.deepEqual((await app.inject({ url: "/version" })).json(), { version: "test" });
    assert.equal((await app.inject({ url: "/health" })).statusCode, 200);
    assert.equal((await app.inject({ url: "/metrics" })).statusCode, 200);
    ex.alive = false;
    assert.equal((await app.inject({ url: "/health" })).statusCode, 503);
    ex.alive = true;
    ctx.inFlight.beginShutdown();
    assert.equal((await app.inject({ url: "/health" })).statusCode, 503);
    const r = await post(app, "/v1/completions", { model: "scripted", prompt: [1] });
    assert.equal(r.statusCode, 503, "no new work while shutting down");
  });
});

describe("request log", () => {
  test("one JSON line per request: id, route, status, tokens, TTFT, duration", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const ex = new ScriptedExecutor(() => TWO);
    const ctx = scriptedContext(ex);
    const app = buildApp(ctx, [], logger);
    const ok = await post(app, "/v1/completions", { model: "scripted", prompt: [1, 2, 3], n: 2 });
    const bad = await post(app, "/v1/completions", { model: "scripted", prompt: [1], n: 0 });
    await app.inject({ url: "/nowhere" });
    const reqs = lines.filter((l) => l.msg === "request");
    assert.equal(reqs.length, 3, JSON.stringify(lines));
    assert.deepEqual(
      reqs.map((l) => [l.reqId, l.route, l.status]),
      [
        [ok.headers["x-request-id"], "/v1/completions", 200],
        [bad.headers["x-request-id"], "/v1/completions", 400],
        [reqs[2].reqId, "/nowhere", 404],
      ],
    );
    assert.equal(reqs[0].promptTokens, 3);
    assert.equal(reqs[0].completionTokens, 5);
    assert.equal(reqs[0].ttftMs, 1);
    assert.equal(typeof reqs[0].durationMs, "number");
    assert.notEqual(reqs[0].reqId, reqs[1].reqId);
  });
});
