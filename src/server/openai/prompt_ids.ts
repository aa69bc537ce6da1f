// Prompts to token ids, with the limits every generation route applies: ids inside the vocabulary,
// at most --max-prompt-tokens, room in the context window for at least one new token.
import { badField } from "../http_errors.ts";
import type { ServerContext } from "../server_context.ts";
import type { GenerationParams } from "./request_fields.ts";

/** Text → ids with the model's tokenizer (400 naming `param` when there is none). */
export function encodeText(
  ctx: ServerContext,
  text: string,
  param: string,
  addSpecialTokens: boolean,
): number[] {
  const tok = ctx.model.tokenizer;
  if (!tok)
    throw badField(param, `${param} is text but the model has no tokenizer (tokenizer.json); give token ids`);
  return tok.encode(text, { addSpecialTokens }).ids;
}

/** Checks a prompt's ids and length; `param` names the field in a 400. */
export function checkPromptIds(ctx: ServerContext, ids: readonly unknown[], param: string): number[] {
  const V = ctx.model.vocabSize;
  if (ids.length === 0) throw badField(param, `${param} is empty; give at least one token`);
  for (const id of ids)
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id >= V)
      throw badField(
        param,
        `${param} has token id ${JSON.stringify(id)}; token ids are integers in 0..${V - 1}`,
      );
  const max = Math.min(ctx.settings.maxPromptTokens, ctx.model.maxModelLen - 1);
  if (ids.length > max)
    throw badField(
      param,
      `${param} has ${ids.length} tokens; this server takes at most ${max} (the context window is ${ctx.model.maxModelLen} tokens, --max-prompt-tokens ${ctx.settings.maxPromptTokens}); shorten it`,
    );
  return ids as number[];
}

/** max_tokens for a prompt of `length` tokens: the request's (400 when prompt + it exceed the context
 * window), else `fallback` capped to what fits. */
export function maxTokensFor(ctx: ServerContext, params: GenerationParams, fallback: number) {
  return (length: number): number => {
    const room = ctx.model.maxModelLen - length;
    if (params.maxTokens === null) return Math.max(1, Math.min(fallback, room));
    if (params.maxTokens > room)
      throw badField(
        "max_tokens",
        `max_tokens ${params.maxTokens} plus the prompt's ${length} tokens exceed the context window of ${ctx.model.maxModelLen} tokens; ask for at most ${room}`,
      );
    return params.maxTokens;
  };
}
