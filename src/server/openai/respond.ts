// Answers one generation request, streamed or not, from a Generation. Both endpoints share it and
// differ only in their ChoiceFormat (the JSON of a chunk, of the whole answer). The request is cancelled
// the moment its client goes away (the response socket closes before the end), streamed or not.
// Errors before the first byte are HTTP statuses (thrown to the app's error handler); errors after it
// are an error event, then `data: [DONE]`.
import type { FastifyReply, FastifyRequest } from "fastify";
import type { TokenLogProb } from "../../executor/request_results.ts";
import { errorAnswer } from "../http_errors.ts";
import type { ServerContext } from "../server_context.ts";
import { type ChoiceDelta, type ChoiceFinish, ClientGoneError, type Generation } from "./generation.ts";
import { SseStream } from "./sse.ts";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens the prefix cache held (whole KV blocks), as OpenAI reports them. */
  prompt_tokens_details: { cached_tokens: number };
}

/** One choice's whole output. */
export interface Choice {
  index: number;
  text: string;
  tokenIds: number[];
  logProbs: number[];
  /** Per token its top log-probs (empty when not asked for). */
  topLogProbs: TokenLogProb[][];
  finishReason: ChoiceFinish | null;
}

export interface ChoiceFormat {
  /** Chunks before any token (chat: the role of each choice; completions: the echoed prompt), each
   * as its JSON text. */
  streamStart(): string[];
  /** Chunks for one delta (chat: content, then an empty delta with finish_reason at the end), each as
   * its JSON text (chunk_json.ts: only the choice is serialised per token). */
  streamDelta(d: ChoiceDelta): string[];
  /** The usage chunk (choices: []). */
  usageChunk(u: Usage): unknown;
  /** The whole answer. */
  body(choices: Choice[], u: Usage): unknown;
}

export async function respond(
  ctx: ServerContext,
  request: FastifyRequest,
  reply: FastifyReply,
  makeGeneration: (signal: AbortSignal) => Generation,
  format: ChoiceFormat,
  { stream, includeUsage, numChoices }: { stream: boolean; includeUsage: boolean; numChoices: number },
): Promise<unknown> {
  const res = reply.raw;
  const gone = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) gone.abort();
  };
  res.on("close", onClose);
  // Shutdown waits for this response until its socket is done with it.
  res.once("close", ctx.inFlight.openResponse());
  const gen = makeGeneration(gone.signal);
  await gen.start();
  const usage = (): Usage => ({
    prompt_tokens: gen.promptTokens,
    completion_tokens: gen.completionTokens,
    total_tokens: gen.promptTokens + gen.completionTokens,
    prompt_tokens_details: { cached_tokens: gen.cachedTokens },
  });
  const note = () => {
    request.kiln.promptTokens = gen.promptTokens;
    request.kiln.completionTokens = gen.completionTokens;
    request.kiln.ttftMs = gen.ttftMs;
  };

  if (!stream) {
    const choices: Choice[] = Array.from({ length: numChoices }, (_, index) => ({
      index,
      text: "",
      tokenIds: [],
      logProbs: [],
      topLogProbs: [],
      finishReason: null,
    }));
    try {
      await gen.forEachDelta((d) => {
        const c = choices[d.index];
        c.text += d.text;
        c.tokenIds.push(...d.tokenIds);
        c.logProbs.push(...d.logProbs);
        c.topLogProbs.push(...(d.topLogProbs ?? []));
        if (d.finishReason !== null) c.finishReason = d.finishReason;
        return undefined;
      });
    } catch (e) {
      note();
      if (e instanceof ClientGoneError) return reply.hijack();
      throw e;
    }
    note();
    return reply.send(format.body(choices, usage()));
  }

  reply.hijack();
  const sse = new SseStream(res);
  sse.open({ "x-request-id": String(request.id) });
  try {
    for (const c of format.streamStart()) await sse.sendJson(c);
    await gen.forEachDelta((d) => {
      const chunks = format.streamDelta(d);
      // One chunk (the common case) returns the write's own wait, if any; more are sent in order.
      if (chunks.length === 1) return sse.sendJson(chunks[0]);
      return chunks.length === 0 ? undefined : sendAll(sse, chunks);
    });
    note();
    if (includeUsage) await sse.send(format.usageChunk(usage()));
    await sse.done();
  } catch (e) {
    note();
    if (e instanceof ClientGoneError || sse.closed) {
      res.destroy();
      return;
    }
    const a = errorAnswer(e);
    if (a.isBug) request.log.error({ err: e }, "kiln bug while streaming");
    request.kiln.streamError = a.body.error.message;
    await sse.send(a.body);
    await sse.done();
  }
}

async function sendAll(sse: SseStream, chunks: string[]): Promise<void> {
  for (const c of chunks) await sse.sendJson(c);
}
