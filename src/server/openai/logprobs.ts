// Log-probabilities in OpenAI's two shapes. kiln returns the chosen token's log-probability (after
// penalties, bans and temperature, before top-k/top-p truncation) and, when asked (chat top_logprobs,
// completions logprobs k), the k most likely tokens of that same distribution (the executor's
// topLogProbs), most likely first.
import type { TokenLogProb } from "../../executor/request_results.ts";
import type { Tokenizer } from "../../tokenizer/tokenizer.ts";

/** OpenAI's stand-in for a log-probability of minus infinity (a banned token): JSON has no -Infinity. */
const FLOOR = -9999;

/** A token as text (special tokens included), or its id as text without a tokenizer. */
export function tokenText(tokenizer: Tokenizer | null, id: number): string {
  return tokenizer ? tokenizer.decode([id], { skipSpecialTokens: false }) : String(id);
}

const finite = (lp: number) => Math.max(lp, FLOOR);

/** Chat: { content: [{ token, logprob, bytes, top_logprobs: [{ token, logprob, bytes }] }] }.
 * `tops`: per token its top log-probs; absent → empty lists (top_logprobs 0). */
export function chatLogprobs(
  tokenizer: Tokenizer | null,
  ids: readonly number[],
  lps: readonly number[],
  tops?: readonly (readonly TokenLogProb[])[],
) {
  const entry = (id: number, lp: number) => {
    const token = tokenText(tokenizer, id);
    return { token, logprob: finite(lp), bytes: [...Buffer.from(token, "utf8")] };
  };
  return {
    content: ids.map((id, i) => ({
      ...entry(id, lps[i]),
      top_logprobs: (tops?.[i] ?? []).map((e) => entry(e.tokenId, e.logProb)),
    })),
  };
}

/** Completions: { tokens, token_logprobs, top_logprobs, text_offset }. top_logprobs per position is a
 * {token: logprob} dict of the top k (`tops`), most likely first, plus the chosen token (as OpenAI:
 * up to k + 1 entries); without `tops`, the chosen token only. Two tokens with the same text share a
 * key: the more likely one's value stays. `offset`: where the first token's text starts in the
 * choice's text. */
export function completionLogprobs(
  tokenizer: Tokenizer | null,
  ids: readonly number[],
  lps: readonly number[],
  offset: number,
  tops?: readonly (readonly TokenLogProb[])[],
) {
  const tokens = ids.map((id) => tokenText(tokenizer, id));
  const textOffset: number[] = [];
  let at = offset;
  for (const t of tokens) {
    textOffset.push(at);
    at += t.length;
  }
  const dict = (i: number) => {
    const d: Record<string, number> = {};
    for (const e of tops?.[i] ?? []) {
      const t = tokenText(tokenizer, e.tokenId);
      if (!(t in d)) d[t] = finite(e.logProb);
    }
    if (!(tokens[i] in d)) d[tokens[i]] = finite(lps[i]);
    return d;
  };
  return {
    tokens,
    token_logprobs: [...lps],
    top_logprobs: tokens.map((_, i) => dict(i)),
    text_offset: textOffset,
  };
}
