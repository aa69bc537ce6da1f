// POST /tokenize and POST /detokenize, shaped as vLLM shapes them:
//   /tokenize   { model?, prompt, add_special_tokens? = true, return_token_strs? }
//            or { model?, messages, add_generation_prompt? = true, add_special_tokens? = false,
//                 return_token_strs? }
//               → { count, max_model_len, tokens, token_strs? }
//   /detokenize { model?, tokens } → { prompt }
// Messages are rendered with the model's chat template as transformers' apply_chat_template renders
// them, then encoded without special tokens (the template writes BOS itself), as encodeChat does.
// Errors are OpenAI-shaped (errorAnswer).
import type { FastifyInstance, FastifyReply } from "fastify";
import { type ChatMessage, encodeChat } from "../runtime/chat_template.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { badField, errorAnswer, HttpError } from "./http_errors.ts";
import type { ServerContext } from "./server_context.ts";

const TOKENIZE_FIELDS = new Set([
  "model",
  "prompt",
  "messages",
  "add_special_tokens",
  "add_generation_prompt",
  "return_token_strs",
]);
const ROLES = new Set(["system", "user", "assistant"]);

type Body = Record<string, unknown>;

function objectBody(body: unknown, fields: Set<string>, what: string): Body {
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw badField("body", `the request body must be a JSON object with ${what}`);
  for (const k of Object.keys(body))
    if (!fields.has(k))
      throw badField(
        k,
        `field ${k} is not supported here; drop it (this endpoint takes ${[...fields].join(", ")})`,
      );
  return body as Body;
}

function checkModel(ctx: ServerContext, b: Body): Tokenizer {
  if (b.model !== undefined && b.model !== null && b.model !== ctx.model.name)
    throw new HttpError(
      404,
      `model ${JSON.stringify(b.model)} is not served here; this server serves ${JSON.stringify(ctx.model.name)}`,
      "not_found_error",
      "model",
    );
  if (!ctx.model.tokenizer)
    throw new HttpError(
      400,
      "the served model has no tokenizer.json, so it cannot tokenize; serve one that has",
    );
  return ctx.model.tokenizer;
}

function flag(b: Body, name: string, fallback: boolean): boolean {
  const v = b[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw badField(name, `${name} ${JSON.stringify(v)} is not true or false`);
  return v;
}

/** OpenAI messages → ChatMessage: content a string or a list of text parts (joined by newlines, as vLLM). */
export function chatMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0)
    throw badField("messages", "messages must be a non-empty list of {role, content}");
  return v.map((m, i) => {
    const where = `messages[${i}]`;
    if (m === null || typeof m !== "object") throw badField("messages", `${where} must be {role, content}`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string" || !ROLES.has(role))
      throw badField(
        "messages",
        `${where}.role ${JSON.stringify(role)} is not one of system, user, assistant`,
      );
    if (typeof content === "string") return { role, content };
    const parts = Array.isArray(content) ? content : null;
    const texts = parts?.map((p) =>
      p !== null && typeof p === "object" && p.type === "text" && typeof p.text === "string" ? p.text : null,
    );
    if (!texts || texts.some((t) => t === null))
      throw badField(
        "messages",
        `${where}.content must be a string or a list of {"type": "text", "text": string} parts`,
      );
    return { role, content: texts.join("\n") };
  });
}

function answerError(app: FastifyInstance, reply: FastifyReply, e: unknown): FastifyReply {
  const a = errorAnswer(e);
  if (a.isBug) app.log.error({ err: e, reqId: reply.request.id }, "tokenize route failed");
  return reply.code(a.status).headers(a.headers).send(a.body);
}

export function tokenizeRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/tokenize", async (req, reply) => {
    try {
      const b = objectBody(req.body, TOKENIZE_FIELDS, "prompt or messages");
      const tok = checkModel(ctx, b);
      const strs = flag(b, "return_token_strs", false);
      let tokens: number[];
      if (b.messages !== undefined) {
        if (b.prompt !== undefined) throw badField("prompt", "give prompt or messages, not both");
        const template = ctx.model.chatTemplate;
        if (!template)
          throw badField("messages", "the served model has no chat template; tokenize a prompt instead");
        const messages = chatMessages(b.messages);
        const addGenerationPrompt = flag(b, "add_generation_prompt", true);
        if (flag(b, "add_special_tokens", false))
          tokens = tok.encode(template.render(messages, { addGenerationPrompt })).ids;
        else tokens = encodeChat(tok, messages, { template, addGenerationPrompt });
      } else {
        if (typeof b.prompt !== "string")
          throw badField(
            "prompt",
            `prompt must be a string (or give messages), got ${JSON.stringify(b.prompt)}`,
          );
        if (b.add_generation_prompt !== undefined)
          throw badField("add_generation_prompt", "add_generation_prompt applies to messages; drop it");
        tokens = tok.encode(b.prompt, { addSpecialTokens: flag(b, "add_special_tokens", true) }).ids;
      }
      return reply.send({
        count: tokens.length,
        max_model_len: ctx.model.maxModelLen,
        tokens,
        ...(strs ? { token_strs: tokens.map((id) => tok.idToToken(id)) } : {}),
      });
    } catch (e) {
      return answerError(app, reply, e);
    }
  });

  app.post("/detokenize", async (req, reply) => {
    try {
      const b = objectBody(req.body, new Set(["model", "tokens"]), "tokens");
      const tok = checkModel(ctx, b);
      const ids = b.tokens;
      if (!Array.isArray(ids)) throw badField("tokens", "tokens must be a list of token ids");
      const last = Math.min(tok.vocabSize, ctx.model.vocabSize) - 1;
      for (const id of ids)
        if (!Number.isInteger(id) || id < 0 || id > last || tok.idToToken(id) === null)
          throw badField(
            "tokens",
            `token id ${JSON.stringify(id)} is not in the vocabulary; use ids in 0..${last}`,
          );
      return reply.send({ prompt: tok.decode(ids as number[]) });
    } catch (e) {
      return answerError(app, reply, e);
    }
  });
}
