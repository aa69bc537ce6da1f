// POST /v1/chat/completions: messages rendered with the model's chat template (or --chat-template
// FILE) as transformers' apply_chat_template renders them, encoded without added special tokens (the
// template writes BOS itself), then generated like a completion; n choices, index = sequence.
import type { FastifyInstance } from "fastify";
import { type ChatMessage, ChatTemplateError } from "../../runtime/chat_template.ts";
import { badField } from "../http_errors.ts";
import type { ServerContext } from "../server_context.ts";
import { notAnObject } from "./body.ts";
import { ChunkJson, chatChoiceJson } from "./chunk_json.ts";
import { Fields, isPlainObject, shown } from "./fields.ts";
import { Generation } from "./generation.ts";
import { chatLogprobs } from "./logprobs.ts";
import { checkPromptIds, encodeText, maxTokensFor } from "./prompt_ids.ts";
import { readGenerationParams, readModel, readResponseFormat } from "./request_fields.ts";
import { type ChoiceFormat, respond } from "./respond.ts";

const ROLES = new Set(["system", "user", "assistant"]);
const MAX_MESSAGES = 4096;

export function registerChatCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/chat/completions", async (request, reply) => {
    const body = request.body;
    if (!isPlainObject(body)) throw notAnObject();
    const f = new Fields(body);
    readModel(f, ctx.model);
    const messages = readMessages(f.raw("messages"));
    const addGenerationPrompt = f.bool("add_generation_prompt") ?? true;
    const params = readGenerationParams(f, ctx.model, ["max_tokens", "max_completion_tokens"]);
    const logprobs = f.bool("logprobs") ?? false;
    const top = f.number("top_logprobs", { min: 0, max: 20, integer: true });
    if (top !== undefined && !logprobs)
      throw badField(
        "top_logprobs",
        "top_logprobs needs logprobs true; set logprobs or leave top_logprobs out",
      );
    if (top !== undefined && top > 0) {
      if (params.beamSearch)
        throw badField(
          "top_logprobs",
          `top_logprobs ${top} with use_beam_search: beams' top log-probs are not returned; give 0 or drop use_beam_search`,
        );
      params.request.topLogProbs = top;
    }
    readResponseFormat(f);
    f.rejectUnread();

    const template = ctx.model.chatTemplate;
    if (!template)
      throw badField(
        "messages",
        "the model has no chat template; start kiln serve with --chat-template FILE, or use /v1/completions",
      );
    let text: string;
    try {
      text = template.render(messages, { addGenerationPrompt });
    } catch (e) {
      // The template refused the conversation (raise_exception, e.g. roles that must alternate).
      if (e instanceof ChatTemplateError) throw badField("messages", e.message);
      throw e;
    }
    const ids = checkPromptIds(ctx, encodeText(ctx, text, "messages", false), "messages");
    const limit = maxTokensFor(ctx, params, Math.min(ctx.model.maxModelLen, ctx.model.kvCapacityTokens));
    limit(ids.length);

    const id = `chatcmpl-${request.id}`;
    const created = Math.floor(Date.now() / 1000);
    const model = ctx.model.name;
    const tok = ctx.model.tokenizer;
    const envelope = new ChunkJson(
      { id, object: "chat.completion.chunk", created, model },
      params.includeUsage,
    );
    const chunk = (index: number, deltaJson: string, lp: unknown, finish: string | null) =>
      envelope.of(chatChoiceJson(index, deltaJson, lp, finish));
    const format: ChoiceFormat = {
      streamStart: () =>
        Array.from({ length: params.n }, (_, i) => chunk(i, '{"role":"assistant","content":""}', null, null)),
      streamDelta: (d) => {
        const out: string[] = [];
        if (d.text !== "" || (logprobs && d.tokenIds.length > 0))
          out.push(
            chunk(
              d.index,
              `{"content":${JSON.stringify(d.text)}}`,
              logprobs ? chatLogprobs(tok, d.tokenIds, d.logProbs, d.topLogProbs) : null,
              null,
            ),
          );
        if (d.finishReason !== null) out.push(chunk(d.index, "{}", null, d.finishReason));
        return out;
      },
      usageChunk: (usage) => ({ id, object: "chat.completion.chunk", created, model, choices: [], usage }),
      body: (choices, usage) => ({
        id,
        object: "chat.completion",
        created,
        model,
        choices: choices.map((c) => ({
          index: c.index,
          message: { role: "assistant", content: c.text },
          logprobs: logprobs ? chatLogprobs(tok, c.tokenIds, c.logProbs, c.topLogProbs) : null,
          finish_reason: c.finishReason,
        })),
        usage,
      }),
    };
    return respond(
      ctx,
      request,
      reply,
      (signal) => new Generation(ctx, [ids], params, limit, signal),
      format,
      { stream: params.stream, includeUsage: params.includeUsage, numChoices: params.n },
    );
  });
}

/** messages: [{role, content: string | [{type: "text", text}], name?}], not empty. */
function readMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_MESSAGES)
    throw badField(
      "messages",
      `messages must be a non-empty list (at most ${MAX_MESSAGES}) of {role, content}, got ${shown(v)}`,
    );
  return v.map((m, i) => {
    const at = `messages[${i}]`;
    if (!isPlainObject(m)) throw badField(at, `${at} must be an object {role, content}, got ${shown(m)}`);
    const f = new Fields(m, `${at}.`);
    const role = f.raw("role");
    if (typeof role !== "string" || !ROLES.has(role))
      throw badField(`${at}.role`, `${at}.role ${shown(role)} is not one of system, user, assistant`);
    const content = readContent(f.raw("content"), `${at}.content`);
    const name = f.string("name");
    f.rejectUnread();
    return name === undefined ? { role, content } : { role, content, name };
  });
}

/** A string, or a list of text parts joined with newlines (as vLLM joins them). */
function readContent(v: unknown, at: string): string {
  if (typeof v === "string") return v;
  const part = (p: unknown, i: number): string => {
    if (!isPlainObject(p) || p.type !== "text" || typeof p.text !== "string" || Object.keys(p).length !== 2)
      throw badField(
        `${at}[${i}]`,
        `${at}[${i}] must be a text part {"type": "text", "text": string} (kiln serves text only), got ${shown(p)}`,
      );
    return p.text;
  };
  if (Array.isArray(v) && v.length > 0) return v.map(part).join("\n");
  throw badField(at, `${at} must be a string or a non-empty list of text parts, got ${shown(v)}`);
}
