// Triton / KServe v2 routes, as Triton serves a TensorRT-LLM model:
//   POST /v2/models/{model}/generate          one JSON answer  { model_name, model_version, text_output,
//                                                                 cum_log_probs?, output_log_probs? }
//   POST /v2/models/{model}/generate_stream   SSE: `data: {same, text_output = the delta}\n\n` per token
//   GET  /v2/health/live, /v2/health/ready, /v2/models/{model}, /v2/models/{model}/ready
// Errors are Triton's `{ "error": message }` with the status errorAnswer gives (in a stream that has
// begun: one `data: {"error": message}` event, then the end). A client that goes away cancels its
// request in the executor, which frees its KV blocks. Admission (--max-concurrent → 429, shutting
// down → 503) and graceful shutdown go through ctx.inFlight, as for the OpenAI routes: the two APIs
// share one limit, and shutdown waits for Triton's responses and cancels them after its grace period
// (503, or an error event in a stream).
import { PassThrough } from "node:stream";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { ResultEvent } from "../executor/executor.ts";
import type { RequestTiming } from "../executor/request_results.ts";
import { errorAnswer, HttpError } from "./http_errors.ts";
import type { FinishedRequest, ServerContext } from "./server_context.ts";
import { parseTritonRequest, type TritonRequest } from "./triton_request.ts";

const MODEL_VERSION = "1";

/** One generated sequence (beam search gives several, by sequenceIndex). */
interface Sequence {
  tokens: number[];
  logProbs: number[];
  text: string;
  cumLogProb: number;
}

/** 404 unless `name` is the served model. */
function servedModel(ctx: ServerContext, name: string): void {
  if (name !== ctx.model.name)
    throw new HttpError(
      404,
      `model ${JSON.stringify(name)} is not served here; this server serves ${JSON.stringify(ctx.model.name)}`,
      "not_found_error",
      "model",
    );
}

const isReady = (ctx: ServerContext) => !ctx.shuttingDown && ctx.model.executor.alive;

function sendError(app: FastifyInstance, reply: FastifyReply, e: unknown): FastifyReply {
  const a = errorAnswer(e);
  if (a.isBug) app.log.error({ err: e, reqId: reply.request.id }, "triton route failed");
  return reply.code(a.status).headers(a.headers).send({ error: a.body.error.message });
}

/** Tokenizes, checks and enqueues a parsed request. */
async function enqueue(ctx: ServerContext, t: TritonRequest): Promise<{ id: number; promptIds: number[] }> {
  const { tokenizer } = ctx.model;
  if (!tokenizer)
    throw new HttpError(
      400,
      "the served model has no tokenizer, so text_input cannot be read; serve a model with tokenizer.json",
      "invalid_request_error",
      "text_input",
    );
  const promptIds = tokenizer.encode(t.textInput).ids;
  const most = ctx.settings.maxPromptTokens;
  if (promptIds.length > most)
    throw new HttpError(
      400,
      `text_input has ${promptIds.length} tokens, more than this server's limit of ${most}; shorten it`,
      "invalid_request_error",
      "text_input",
    );
  const timeout = ctx.settings.requestTimeoutMs;
  const id = await ctx.model.executor.enqueue({
    ...t.request,
    prompt: promptIds,
    // One event per token (beam search: only its final beams, one event each).
    streaming: (t.request.beamWidth ?? 1) <= 1,
    ...(Number.isFinite(timeout) ? { allottedTimeMs: timeout } : {}),
  });
  ctx.inFlight.track(id);
  return { id, promptIds };
}

/** Takes one request's room in ctx.inFlight (429/503), then enqueues it; the room is released when
 * enqueue fails. Call `finish` once the request ended. */
async function admitAndEnqueue(
  ctx: ServerContext,
  t: TritonRequest,
): Promise<{ id: number; promptIds: number[]; finish: () => void }> {
  ctx.inFlight.admit(1);
  let started: { id: number; promptIds: number[] };
  try {
    started = await enqueue(ctx, t);
  } catch (e) {
    ctx.inFlight.release(1);
    throw e;
  }
  return {
    ...started,
    finish: () => {
      ctx.inFlight.untrack(started.id);
      ctx.inFlight.release(1);
    },
  };
}

/** The error a request that ended without finishing answers: 408 past its timeout, 503 when the
 * server's shutdown cancelled it; null when it finished (or its client went away). */
function endedError(
  ctx: ServerContext,
  id: number,
  reason: FinishedRequest["finishReason"],
): HttpError | null {
  if (reason === "timed_out") return timedOut(ctx);
  if (reason === "cancelled" && ctx.inFlight.cancelCause(id) === "shutdown")
    return new HttpError(
      503,
      "the server shut down before this request finished; it was cancelled",
      "service_unavailable",
    );
  return null;
}

/** What a timed-out request answers (its partial output is not a result). */
function timedOut(ctx: ServerContext): HttpError {
  return new HttpError(
    408,
    `the request ran past the server's timeout of ${ctx.settings.requestTimeoutMs / 1000} s and was cancelled; ` +
      "ask for fewer max_tokens or retry",
    "invalid_request_error",
  );
}

/**
 * Reads request `id`'s events, passing each on, and reports the request to the metrics once it ends
 * (also when it failed). Cancels it if `reply`'s connection closes first.
 */
async function drive(
  ctx: ServerContext,
  reply: FastifyReply,
  id: number,
  promptTokens: number,
  onEvent: (ev: ResultEvent, seq: Sequence, index: number) => void,
): Promise<{ sequences: Sequence[]; finishReason: FinishedRequest["finishReason"] }> {
  const { executor } = ctx.model;
  const sequences: Sequence[] = [];
  const tokenTimes: number[] = [];
  let timing: RequestTiming = { arrival: Date.now(), firstScheduled: null, firstToken: null, last: null };
  let finishReason: FinishedRequest["finishReason"] = "cancelled";
  let done = false;
  const onClose = () => {
    if (!done) executor.cancel(id);
  };
  reply.raw.on("close", onClose);
  if (reply.raw.destroyed) onClose(); // gone before we listened
  try {
    for await (const ev of executor.results(id)) {
      // Beam search's final events: one per beam, best first, by sequenceIndex.
      const index = ev.sequenceIndex;
      sequences[index] ??= { tokens: [], logProbs: [], text: "", cumLogProb: 0 };
      const seq = sequences[index];
      seq.tokens.push(...ev.tokenIds);
      seq.logProbs.push(...ev.logProbs);
      seq.text += ev.text;
      seq.cumLogProb = ev.cumLogProb;
      timing = ev.timing;
      if (ev.tokenIds.length > 0 && ev.timing.last !== null && ev.score === undefined)
        tokenTimes.push(ev.timing.last);
      if (ev.finishReason !== null) finishReason = ev.finishReason;
      onEvent(ev, seq, index);
    }
  } catch (e) {
    finishReason = "error";
    throw e;
  } finally {
    done = true;
    reply.raw.off("close", onClose);
    const generationTokens = sequences.reduce((n, s) => n + (s?.tokens.length ?? 0), 0);
    ctx.metrics.requestFinished({ finishReason, promptTokens, generationTokens, timing, tokenTimes });
  }
  return { sequences: sequences.filter(Boolean), finishReason };
}

export function tritonRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const head = () => ({ model_name: ctx.model.name, model_version: MODEL_VERSION });
  const parse = (body: unknown) => parseTritonRequest(body, ctx.model.vocabSize, ctx.model.maxModelLen);

  app.post<{ Params: { model: string } }>("/v2/models/:model/generate", async (req, reply) => {
    // Shutdown waits for this response until its socket is done with it.
    reply.raw.once("close", ctx.inFlight.openResponse());
    let finish = () => {};
    try {
      servedModel(ctx, req.params.model);
      const t = parse(req.body);
      if (t.stream === true)
        throw new HttpError(
          400,
          "stream true is served by /v2/models/{model}/generate_stream; post there, or drop stream",
          "invalid_request_error",
          "stream",
        );
      const started = await admitAndEnqueue(ctx, t);
      finish = started.finish;
      const { id, promptIds } = started;
      const { sequences, finishReason } = await drive(ctx, reply, id, promptIds.length, () => {});
      const ended = endedError(ctx, id, finishReason);
      if (ended) throw ended;
      const text = (s: Sequence) => (t.excludeInputInOutput ? s.text : t.textInput + s.text);
      const many = sequences.length > 1;
      const pick = <T>(f: (s: Sequence) => T): T | T[] => (many ? sequences.map(f) : f(sequences[0]));
      return reply.send({
        ...head(),
        text_output: pick(text),
        ...(t.returnLogProbs
          ? { cum_log_probs: pick((s) => s.cumLogProb), output_log_probs: pick((s) => s.logProbs) }
          : {}),
      });
    } catch (e) {
      return sendError(app, reply, e);
    } finally {
      finish();
    }
  });

  app.post<{ Params: { model: string } }>("/v2/models/:model/generate_stream", async (req, reply) => {
    reply.raw.once("close", ctx.inFlight.openResponse());
    let started: { id: number; promptIds: number[]; finish: () => void };
    let t: TritonRequest;
    try {
      servedModel(ctx, req.params.model);
      t = parse(req.body);
      if ((t.request.beamWidth ?? 1) > 1)
        throw new HttpError(
          400,
          `beam_width ${t.request.beamWidth} is not streamed; post to /v2/models/{model}/generate for beam search`,
          "invalid_request_error",
          "beam_width",
        );
      started = await admitAndEnqueue(ctx, t);
    } catch (e) {
      return sendError(app, reply, e);
    }
    // The events go through fastify (not a hijacked socket), so its hooks, headers and logs apply.
    const events = new PassThrough();
    reply.code(200).header("content-type", "text/event-stream").header("cache-control", "no-cache");
    reply.send(events);
    const send = (data: unknown) => {
      if (!events.destroyed) events.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    try {
      const { finishReason } = await drive(ctx, reply, started.id, started.promptIds.length, (ev, seq) => {
        if (ev.tokenIds.length === 0 && ev.text === "") return;
        send({
          ...head(),
          text_output: ev.text,
          ...(t.returnLogProbs ? { cum_log_probs: seq.cumLogProb, output_log_probs: ev.logProbs } : {}),
        });
      });
      const ended = endedError(ctx, started.id, finishReason);
      if (ended) send({ error: ended.message });
    } catch (e) {
      const a = errorAnswer(e);
      if (a.isBug) app.log.error({ err: e, reqId: req.id }, "triton stream failed");
      send({ error: a.body.error.message });
    } finally {
      started.finish();
    }
    events.end();
    return reply;
  });

  app.get("/v2/health/live", async (_req, reply) => reply.code(200).send());
  app.get("/v2/health/ready", async (_req, reply) => reply.code(isReady(ctx) ? 200 : 503).send());

  app.get<{ Params: { model: string } }>("/v2/models/:model", async (req, reply) => {
    try {
      servedModel(ctx, req.params.model);
    } catch (e) {
      return sendError(app, reply, e);
    }
    const tensor = (name: string, datatype: string) => ({ name, datatype, shape: [-1] });
    return reply.send({
      name: ctx.model.name,
      versions: [MODEL_VERSION],
      platform: "kiln",
      inputs: [
        tensor("text_input", "BYTES"),
        tensor("max_tokens", "INT32"),
        tensor("bad_words", "BYTES"),
        tensor("stop_words", "BYTES"),
        tensor("end_id", "INT32"),
        tensor("pad_id", "INT32"),
        tensor("temperature", "FP32"),
        tensor("top_k", "INT32"),
        tensor("top_p", "FP32"),
        tensor("beam_width", "INT32"),
        tensor("repetition_penalty", "FP32"),
        tensor("presence_penalty", "FP32"),
        tensor("frequency_penalty", "FP32"),
        tensor("random_seed", "UINT64"),
        tensor("return_log_probs", "BOOL"),
        tensor("exclude_input_in_output", "BOOL"),
        tensor("stream", "BOOL"),
      ],
      outputs: [
        tensor("text_output", "BYTES"),
        tensor("cum_log_probs", "FP32"),
        tensor("output_log_probs", "FP32"),
      ],
    });
  });

  app.get<{ Params: { model: string } }>("/v2/models/:model/ready", async (req, reply) => {
    try {
      servedModel(ctx, req.params.model);
    } catch (e) {
      return sendError(app, reply, e);
    }
    return reply.code(isReady(ctx) ? 200 : 503).send();
  });
}
