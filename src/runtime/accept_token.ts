// What happens to a sampled token on the host: it joins its sequence, top-p decays (or resets), the
// text grows, and the stop checks run (built-in: end ids, max length, stop words; then the context
// window; then the user's criteria). The result is the token's event for the stream.
import type { StoppingCriteria } from "../sampling/logits_processor.ts";
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import type { BuiltinStops, StopCheck } from "../sampling/stopping.ts";
import type { LiveSequence } from "./live_sequence.ts";
import type { TokenEvent } from "./outputs.ts";

export interface StopRules {
  readonly cfg: ResolvedSamplingConfig;
  /** Per prompt. */
  readonly stops: readonly BuiltinStops[];
  readonly criteria: readonly StoppingCriteria[];
  readonly maxSeqLen: number;
}

/** Appends `token` to `l` (or, when `speculated`, writes it over the placeholder a pipelined step
 * appended) and returns its event; sets the sequence's finishReason when it stops here. */
export function acceptToken(
  l: LiveSequence,
  token: number,
  logProb: number,
  speculated: boolean,
  step: number,
  rules: StopRules,
): TokenEvent {
  const { cfg } = rules;
  const p = l.promptIndex;
  if (speculated) l.seq.ids[l.seq.ids.length - 1] = token;
  else l.seq.ids.push(token);
  l.seq.logProbs.push(logProb);
  l.topP = token === cfg.topPResetIds[p] ? cfg.topP[p] : Math.max(l.topP * cfg.topPDecay[p], cfg.topPMin[p]);
  const from = l.text.push(token);
  const stop = stopOf(l, token, from, step, rules);
  let text: string;
  if (stop) {
    l.seq.finishReason = stop.reason;
    text = l.text.finish(stop.text === undefined ? undefined : stop.text.length);
  } else text = l.text.delta();
  return {
    promptIndex: p,
    sequenceIndex: l.sequenceIndex,
    tokenId: token,
    logProb,
    text,
    finishReason: l.seq.finishReason,
  };
}

/** The first stop that applies after `token`, or null. `from`: where the token's text starts. */
function stopOf(
  l: LiveSequence,
  token: number,
  from: number,
  step: number,
  rules: StopRules,
): StopCheck | null {
  const p = l.promptIndex;
  const out = l.seq.generated;
  let stop = rules.stops[p].check(out, token, l.text.text, from);
  if (!stop && l.seq.ids.length >= rules.maxSeqLen) stop = { reason: "length" };
  if (stop) return stop;
  for (const c of rules.criteria) {
    const v = c.shouldStop(
      {
        promptIndex: p,
        sequenceIndex: l.sequenceIndex,
        promptIds: l.seq.promptIds,
        outputIds: out,
        text: l.text.text,
      },
      step,
    );
    if (v) return { reason: v === true ? "stop" : v };
  }
  return null;
}
