// Token bans computed from a sequence's history, as Hugging Face's logits processors define them.

/** HF NoRepeatNGramLogitsProcessor: tokens that would complete an n-gram already in `ids`. */
export function noRepeatNgramBans(ids: readonly number[], n: number): number[] {
  const len = ids.length;
  if (n <= 0 || len + 1 < n) return [];
  const prefix = ids.slice(len - n + 1); // the last n−1 tokens
  const banned = new Set<number>();
  for (let i = 0; i + n <= len; i++) {
    let match = true;
    for (let j = 0; j < n - 1 && match; j++) match = ids[i + j] === prefix[j];
    if (match) banned.add(ids[i + n - 1]);
  }
  return [...banned];
}

/** HF NoBadWordsLogitsProcessor: a one-token bad word is always banned; a longer one bans its last
 * token when the sequence ends with the rest. */
export function badWordBans(ids: readonly number[], badWords: readonly (readonly number[])[]): number[] {
  const banned: number[] = [];
  for (const w of badWords) {
    const head = w.length - 1;
    if (head > ids.length) continue;
    let match = true;
    for (let j = 0; j < head && match; j++) match = ids[ids.length - head + j] === w[j];
    if (match) banned.push(w[head]);
  }
  return banned;
}

/** Whether `ids` ends with the token sequence `word`. */
export function endsWith(ids: readonly number[], word: readonly number[]): boolean {
  if (word.length > ids.length) return false;
  for (let j = 0; j < word.length; j++) if (ids[ids.length - word.length + j] !== word[j]) return false;
  return true;
}
