// Log-probabilities in OpenAI's two shapes. kiln returns the chosen token's log-probability (after
// penalties, bans and temperature, before top-k/top-p truncation); top-k alternatives are not
// available from the executor, so the routes refuse to be asked for them.
import type { Tokenizer } from "../../tokenizer/tokenizer.ts";

/** A token as text (special tokens included), or its id as text without a tokenizer. */
export function tokenText(tokenizer: Tokenizer | null, id: number): string {
  return tokenizer ? tokenizer.decode([id], { skipSpecialTokens: false }) : String(id);
}

/** Chat: { content: [{ token, logprob, bytes, top_logprobs: [] }] }. */
export function chatLogprobs(tokenizer: Tokenizer | null, ids: readonly number[], lps: readonly number[]) {
  return {
    content: ids.map((id, i) => {
      const token = tokenText(tokenizer, id);
      return { token, logprob: lps[i], bytes: [...Buffer.from(token, "utf8")], top_logprobs: [] };
    }),
  };
}

/** Completions: { tokens, token_logprobs, top_logprobs (the chosen token only), text_offset }.
 * `offset`: where the first token's text starts in the choice's text. */
export function completionLogprobs(
  tokenizer: Tokenizer | null,
  ids: readonly number[],
  lps: readonly number[],
  offset: number,
) {
  const tokens = ids.map((id) => tokenText(tokenizer, id));
  const textOffset: number[] = [];
  let at = offset;
  for (const t of tokens) {
    textOffset.push(at);
    at += t.length;
  }
  return {
    tokens,
    token_logprobs: [...lps],
    top_logprobs: tokens.map((t, i) => ({ [t]: lps[i] })),
    text_offset: textOffset,
  };
}
