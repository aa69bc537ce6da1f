// The Triton routes over a scripted executor: a request that fails mid-way answers 500 (or an error
// event in a stream) without leaking the cause, one that timed out answers 408, and each is reported
// to the metrics exactly once with what it had generated.
import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import type { ResultEvent } from "../../src/executor/executor.ts";
import { InFlight } from "../../src/server/in_flight.ts";
import type { FinishedRequest, ServedExecutor, ServerContext } from "../../src/server/server_context.ts";
import { tritonRoutes } from "../../src/server/triton.ts";
import { Tokenizer } from "../../src/tokenizer/tokenizer.ts";
import { sseEvents } from "./bundled_server.ts";
import { idleStats } from "./scripted_executor.ts";

const tokenizer = Tokenizer.fromDir(BUNDLED_MODEL_DIR);
const timing = { arrival: 0, firstScheduled: 1, firstToken: 2, last: 3 };
const event = (tokenIds: number[], text: string, finishReason: ResultEvent["finishReason"]): ResultEvent => ({
  requestId: 1,
  tokenIds,
  logProbs: tokenIds.map(() => -0.5),
  cumLogProb: -0.5,
  text,
  finishReason,
  sequenceIndex: 0,
  isFinal: finishReason !== null,
  timing,
});

/** An executor whose every request yields `events`, then throws `error` if given. */
function scripted(events: ResultEvent[], error?: Error): ServedExecutor & { cancelled: number[] } {
  return {
    cancelled: [],
    enqueue: () => 1,
    async *results() {
      for (const e of events) yield e;
      if (error) throw error;
    },
    cancel(id) {
      this.cancelled.push(id);
      return true;
    },
    stats: idleStats,
    shutdown: async () => {},
    alive: true,
  };
}

async function serve(executor: ServedExecutor, setUp?: (app: FastifyInstance) => void) {
  const finished: FinishedRequest[] = [];
  const ctx: ServerContext = {
    model: {
      name: "m",
      executor,
      tokenizer,
      chatTemplate: null,
      maxModelLen: 512,
      vocabSize: 2048,
      eosTokenIds: [2],
      created: 0,
      backend: "cpu",
      kvCapacityTokens: 16,
    },
    metrics: {
      requestFinished: (r) => finished.push(r),
      iteration: () => {},
      render: async () => ({ contentType: "text/plain", body: "" }),
    },
    settings: {
      apiKey: null,
      maxPromptTokens: 512,
      maxConcurrent: Number.POSITIVE_INFINITY,
      requestTimeoutMs: 5000,
      bodyLimit: 1 << 20,
    },
    version: "test",
    shuttingDown: false,
    inFlight: new InFlight(Number.POSITIVE_INFINITY),
  };
  const app = Fastify({ logger: false });
  setUp?.(app);
  tritonRoutes(app, ctx);
  await app.ready();
  return { app, finished };
}

const BODY = { text_input: "Hello", max_tokens: 8, exclude_input_in_output: true };

test("a request that fails mid-way: 500 without its cause, reported once as an error", async () => {
  const { app, finished } = await serve(scripted([event([5, 6], "ab", null)], new Error("secret detail")));
  const r = await app.inject({ method: "POST", url: "/v2/models/m/generate", payload: BODY });
  assert.equal(r.statusCode, 500);
  assert.deepEqual(Object.keys(r.json()), ["error"]);
  assert.doesNotMatch(r.json().error, /secret/);
  assert.equal(finished.length, 1);
  assert.equal(finished[0].finishReason, "error");
  assert.equal(finished[0].generationTokens, 2);
  assert.equal(finished[0].promptTokens, tokenizer.encode("Hello").ids.length);
  const s = await app.inject({ method: "POST", url: "/v2/models/m/generate_stream", payload: BODY });
  assert.equal(s.statusCode, 200, "the stream had begun");
  const events = sseEvents(s.body) as Record<string, unknown>[];
  assert.equal(events[0].text_output, "ab");
  assert.match(String(events.at(-1)?.error), /internal error/);
  assert.equal(finished.length, 2);
  assert.equal(finished[1].finishReason, "error");
  await app.close();
});

test("a request past the timeout answers 408 (an error event in a stream), reported as timed out", async () => {
  const { app, finished } = await serve(
    scripted([event([5], "a", null), event([6], "b", null), event([], "", "timed_out")]),
  );
  const r = await app.inject({ method: "POST", url: "/v2/models/m/generate", payload: BODY });
  assert.equal(r.statusCode, 408);
  assert.match(r.json().error, /timeout of 5 s/);
  const s = await app.inject({ method: "POST", url: "/v2/models/m/generate_stream", payload: BODY });
  const events = sseEvents(s.body) as Record<string, unknown>[];
  assert.deepEqual(
    events.map((e) => e.text_output ?? "error"),
    ["a", "b", "error"],
  );
  assert.deepEqual(
    finished.map((f) => [f.finishReason, f.generationTokens, f.tokenTimes.length]),
    [
      ["timed_out", 2, 2],
      ["timed_out", 2, 2],
    ],
  );
  await app.close();
});

test("beam search: text_output and log-probs are lists, one per sequence, by sequenceIndex", async () => {
  const beam = (i: number, text: string, cum: number) => ({
    ...event([5 + i], text, "length"),
    cumLogProb: cum,
    sequenceIndex: i,
  });
  const { app, finished } = await serve(scripted([beam(1, "b", -2), beam(0, "a", -1)]));
  const payload = { ...BODY, beam_width: 2, return_log_probs: true };
  const r = await app.inject({ method: "POST", url: "/v2/models/m/generate", payload });
  assert.equal(r.statusCode, 200, r.body);
  const body = r.json();
  assert.deepEqual(body.text_output, ["a", "b"]);
  assert.deepEqual(body.cum_log_probs, [-1, -2]);
  assert.deepEqual(body.output_log_probs, [[-0.5], [-0.5]]);
  assert.equal(finished[0].generationTokens, 2);
  await app.close();
});

test("a client gone before its request started is cancelled at once", async () => {
  const executor = scripted([event([5], "a", "cancelled")]);
  const { app, finished } = await serve(executor, (a) =>
    a.addHook("preHandler", async (_req, reply) => {
      reply.raw.destroy();
    }),
  );
  await app.inject({ method: "POST", url: "/v2/models/m/generate", payload: BODY }).catch(() => {});
  for (let i = 0; i < 100 && finished.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
  assert.deepEqual(executor.cancelled, [1]);
  assert.equal(finished[0].finishReason, "cancelled");
  await app.close();
});
