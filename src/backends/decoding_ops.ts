// Decoding steps as backend operations over a batch of logits rows [B, V], so the CUDA backend can
// run the same decoding on the GPU (no logits to the host) with one kernel per op. Per-row settings
// arrive as arrays of length B. The host implementation (backends/host_decoding.ts) is the
// reference.

export interface PenaltyParams {
  repetition: Float32Array; // [B]  HF: l<0 ? l·p : l/p over every token in the sequence; 1 = off
  presence: Float32Array; // [B]  OpenAI: l −= p if the token was generated; 0 = off
  frequency: Float32Array; // [B] OpenAI: l −= p·count(generated); 0 = off
  /** Per row: every token of the sequence so far (prompt + generated). */
  tokens: Int32Array[];
  /** Per row: how many of `tokens` are prompt (presence/frequency count only the rest). */
  promptLens: Int32Array; // [B]
  /** Per row (enqueueSample with a feed only): the row of `feed.from`'s samples whose token is the
   * last entry of `tokens[r]` (a placeholder on the host, which queued this step before it read that
   * token), or −1 (HOST_TOKEN) when `tokens[r]` is complete. The backend substitutes the sampled token
   * before it applies the penalties (backends/token_feed.ts). Absent: every list is complete. */
  fed?: Int32Array; // [B]
}

export interface SampleParams {
  greedy: Uint8Array; // [B]  argmax when 1
  temperature: Float32Array; // [B]
  topK: Int32Array; // [B]  0 = off
  topP: Float32Array; // [B]  1 = off
  minP: Float32Array; // [B]  0 = off
  /** Counter-based RNG key per row: (seed, sequence, step). */
  seed: Float64Array; // [B]
  sequence: Int32Array; // [B]
  step: Int32Array; // [B]
}

export interface DecodingOps {
  /** logits[r] += bias for every row. bias: [V]. */
  addBias(logits: Float32Array, B: number, V: number, bias: Float32Array): void;
  /** Penalties over complete token lists (p.fed absent or all −1: only enqueueSample resolves it). */
  applyPenalties(logits: Float32Array, B: number, V: number, p: PenaltyParams): void;
  /** Sets logits[r][id] = −∞ for every id in banned[r]. */
  banTokens(logits: Float32Array, B: number, V: number, banned: readonly (readonly number[])[]): void;
  /** log-softmax of every row into out [B, V] (temperature applied for non-greedy rows, as in sample). */
  logSoftmax(
    logits: Float32Array,
    B: number,
    V: number,
    temperature: Float32Array,
    greedy: Uint8Array,
    out: Float32Array,
  ): void;
  /** Picks one token per row: argmax, or temperature → top-k → top-p → min-p → draw. Returns tokens and
   * their log-probabilities under the temperature-scaled, untruncated distribution: the log-softmax
   * `logSoftmax` gives, which it writes to `lp` [B, V] when given (a caller that lists the top
   * log-probs of a row reads them there instead of computing it again). */
  sample(
    logits: Float32Array,
    B: number,
    V: number,
    p: SampleParams,
    lp?: Float32Array,
  ): { tokens: Int32Array; logProbs: Float32Array };
}

/** What the built-in stages need this step, or null for a stage with nothing to do: the same inputs
 * drive the host ops (sampling/logits_pipeline.ts) and a backend's on-device decoding (forwardSample). */
export interface StepTransforms {
  bias: Float32Array | null;
  penalties: PenaltyParams | null;
  /** Per row: token ids set to −∞ (no-repeat-ngram, bad words, end ids under min length). */
  banned: number[][] | null;
}

/** The built-in stages over rows [B, V] of `logits`, in place, in Hugging Face's order: embedding bias,
 * penalties, bans. The host pipeline (sampling/logits_pipeline.ts) and the CPU backend's
 * forwardSample both run exactly this, so their tokens agree bit for bit. */
export function applyTransforms(
  ops: DecodingOps,
  logits: Float32Array,
  B: number,
  V: number,
  t: StepTransforms,
): void {
  if (t.bias) ops.addBias(logits, B, V, t.bias);
  if (t.penalties) ops.applyPenalties(logits, B, V, t.penalties);
  if (t.banned) ops.banTokens(logits, B, V, t.banned);
}
