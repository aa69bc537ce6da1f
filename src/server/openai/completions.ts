// POST /v1/completions: a prompt (text, token ids, or a list of either) → for each prompt n choices,
// choice index = prompt × n + sequence. `echo` puts the prompt's text before each choice's text.
import type { FastifyInstance } from "fastify";
import { badField } from "../http_errors.ts";
import type { ServerContext } from "../server_context.ts";
import { notAnObject } from "./body.ts";
import { ChunkJson, completionChoiceJson } from "./chunk_json.ts";
import { Fields, isPlainObject, shown } from "./fields.ts";
import { Generation } from "./generation.ts";
import { completionLogprobs } from "./logprobs.ts";
import { checkPromptIds, encodeText, maxTokensFor } from "./prompt_ids.ts";
import { readGenerationParams, readModel } from "./request_fields.ts";
import { type ChoiceFormat, respond } from "./respond.ts";

/** OpenAI's default max_tokens for completions. */
const DEFAULT_MAX_TOKENS = 16;

interface Prompt {
  ids: number[];
  /** The prompt as text (for echo). */
  text: string;
}

export function registerCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/completions", async (request, reply) => {
    const body = request.body;
    if (!isPlainObject(body)) throw notAnObject();
    const f = new Fields(body);
    readModel(f, ctx.model);
    const prompts = readPrompts(ctx, f.raw("prompt"));
    const params = readGenerationParams(f, ctx.model, ["max_tokens"]);
    const echo = f.bool("echo") ?? false;
    const logprobs = f.number("logprobs", { min: 0, max: 5, integer: true });
    if (logprobs !== undefined && logprobs > 0) {
      if (params.beamSearch)
        throw badField(
          "logprobs",
          `logprobs ${logprobs} with use_beam_search: beams' top log-probs are not returned; give 0 or drop use_beam_search`,
        );
      params.request.topLogProbs = logprobs;
    }
    if (echo && logprobs !== undefined)
      throw badField(
        "echo",
        "echo with logprobs needs the prompt's log-probabilities, which kiln does not return; drop one of them",
      );
    f.rejectUnread();
    const { n } = params;
    const id = `cmpl-${request.id}`;
    const created = Math.floor(Date.now() / 1000);
    const model = ctx.model.name;
    const tok = ctx.model.tokenizer;
    const withLogprobs = logprobs !== undefined;
    const offsets = new Map<number, number>();
    const echoed = (index: number) => (echo ? prompts[Math.floor(index / n)].text : "");
    const chunk = new ChunkJson({ id, object: "text_completion", created, model }, params.includeUsage);
    const format: ChoiceFormat = {
      streamStart: () =>
        echo
          ? Array.from({ length: prompts.length * n }, (_, index) =>
              chunk.of(completionChoiceJson(index, echoed(index), null, null)),
            )
          : [],
      streamDelta: (d) => {
        // An empty delta is text held back (a partial character, a stop string's prefix) and is not
        // sent; a model without a tokenizer has no text at all, so each token's delta goes out empty
        // (a streaming client still sees every token as it comes).
        const heldBack = tok !== null && d.text === "";
        if (d.finishReason === null && heldBack && (!withLogprobs || d.tokenIds.length === 0)) return [];
        const at = offsets.get(d.index) ?? echoed(d.index).length;
        offsets.set(d.index, at + d.text.length);
        const lp = withLogprobs ? completionLogprobs(tok, d.tokenIds, d.logProbs, at, d.topLogProbs) : null;
        return [chunk.of(completionChoiceJson(d.index, d.text, lp, d.finishReason))];
      },
      usageChunk: (usage) => ({ id, object: "text_completion", created, model, choices: [], usage }),
      body: (choices, usage) => ({
        id,
        object: "text_completion",
        created,
        model,
        choices: choices.map((c) => ({
          index: c.index,
          text: echoed(c.index) + c.text,
          logprobs: withLogprobs ? completionLogprobs(tok, c.tokenIds, c.logProbs, 0, c.topLogProbs) : null,
          finish_reason: c.finishReason,
        })),
        usage,
      }),
    };
    const limit = maxTokensFor(ctx, params, DEFAULT_MAX_TOKENS);
    const ids = prompts.map((p) => p.ids);
    for (const p of ids) limit(p.length); // a 400 for max_tokens before anything is queued
    return respond(ctx, request, reply, (signal) => new Generation(ctx, ids, params, limit, signal), format, {
      stream: params.stream,
      includeUsage: params.includeUsage,
      numChoices: prompts.length * n,
    });
  });
}

const MAX_PROMPTS = 256;

/** prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...]. */
function readPrompts(ctx: ServerContext, v: unknown): Prompt[] {
  const bad = () =>
    badField(
      "prompt",
      `prompt must be text, a list of token ids, or a non-empty list of either (at most ${MAX_PROMPTS}), got ${shown(v)}`,
    );
  const tok = ctx.model.tokenizer;
  const fromText = (text: string): Prompt => ({
    ids: checkPromptIds(ctx, encodeText(ctx, text, "prompt", true), "prompt"),
    text,
  });
  const fromIds = (ids: readonly unknown[]): Prompt => {
    const checked = checkPromptIds(ctx, ids, "prompt");
    return { ids: checked, text: tok ? tok.decode(checked, { skipSpecialTokens: false }) : "" };
  };
  if (typeof v === "string") return [fromText(v)];
  if (!Array.isArray(v)) throw bad();
  if (v.length === 0) throw badField("prompt", "prompt is an empty list; give at least one prompt");
  if (v.every((x) => typeof x === "number")) return [fromIds(v)];
  if (v.length > MAX_PROMPTS) throw bad();
  if (v.every((x) => typeof x === "string")) return v.map(fromText);
  if (v.every((x) => Array.isArray(x))) return v.map((x) => fromIds(x as unknown[]));
  throw bad();
}
