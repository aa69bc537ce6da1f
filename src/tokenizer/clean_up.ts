// transformers' `clean_up_tokenization`: removes the space before punctuation and English contractions
// ("hello , world" → "hello, world", "do n't" → "don't"). A batch function, and a streaming form whose
// concatenated output equals the batch function applied to the concatenated input.

// Applied in this order, each over the whole string, as transformers does.
const REPLACEMENTS: readonly [string, string][] = [
  [" .", "."],
  [" ?", "?"],
  [" !", "!"],
  [" ,", ","],
  [" ' ", "'"],
  [" n't", "n't"],
  [" 'm", "'m"],
  [" 's", "'s"],
  [" 've", "'ve"],
  [" 're", "'re"],
];

export function cleanUpTokenization(text: string): string {
  for (const [from, to] of REPLACEMENTS) text = text.replaceAll(from, to);
  return text;
}

// Adjacent non-space pairs inside a pattern. Every replacement only deletes spaces, so two adjacent
// non-space characters stay adjacent through all passes; if they are not one of these pairs, no match
// can straddle them and clean(a + b) === clean(a) + clean(b) for a cut between them.
const JOINED_PAIRS = new Set(["n'", "'t", "'m", "'s", "'v", "ve", "'r", "re"]);

function isSafeCut(text: string, at: number): boolean {
  const left = text[at - 1];
  const right = text[at];
  const code = text.charCodeAt(at);
  const splitsSurrogatePair = code >= 0xdc00 && code <= 0xdfff; // never emit half a character
  return left !== " " && right !== " " && !JOINED_PAIRS.has(left + right) && !splitsSurrogatePair;
}

/** Streams `cleanUpTokenization`: holds back the tail after the last point where cutting is safe. */
export class StreamingCleanUp {
  private pending = "";

  push(text: string): string {
    this.pending += text;
    for (let at = this.pending.length - 1; at > 0; at--) {
      if (isSafeCut(this.pending, at)) {
        const ready = this.pending.slice(0, at);
        this.pending = this.pending.slice(at);
        return cleanUpTokenization(ready);
      }
    }
    return "";
  }

  flush(): string {
    const rest = cleanUpTokenization(this.pending);
    this.pending = "";
    return rest;
  }
}
