// What a caller reads for one request: result events through an async iterator. Every event names its
// sequence (`sequenceIndex`: 0 for a single-sequence request; the sample index for numReturnSequences;
// the rank for beams) and `isFinal` marks the request's last event; the iterator ends after it (or
// throws the error that ended the request).
//   sampling (n ≥ 1)  streaming: one event per token per sequence; otherwise one per sequence when it
//                     finishes, with all its tokens. Each sequence has its own cumLogProb and reason.
//   beam search       streaming: one event per step (sequenceIndex 0, no tokens, `beams`: the current
//                     beams' outputs, best first); then, streaming or not, one event per returned
//                     beam, best first, with its whole output, text, logProbs, cumLogProb and score.
// contextLogits and numCachedTokens ride on the request's first event.

import type { ResultSink } from "./event_queue.ts";
import type { RequestFinishReason } from "./request.ts";

/** One of a token's most likely alternatives: a token id and its log-probability. */
export interface TokenLogProb {
  tokenId: number;
  logProb: number;
}

/** Milliseconds on the executor's clock (Date.now by default); null until it happened. */
export interface RequestTiming {
  arrival: number;
  firstScheduled: number | null;
  firstToken: number | null;
  last: number | null;
}

export interface ResultEvent {
  requestId: number;
  /** Which sequence: 0 for one-sequence requests, the sample index (numReturnSequences), or the
   * beam's rank (best first) in beam search's final events. */
  sequenceIndex: number;
  /** The request's last event: the iterator ends after it. */
  isFinal: boolean;
  /** Tokens new in this event (all of them for a non-streaming sequence or a final beam). */
  tokenIds: number[];
  /** Their log-probabilities (after penalties, bans and temperature; before truncation). */
  logProbs: number[];
  /** Sum of the sequence's log-probs so far, this event's included (added in order, as
   * ModelRunner.generate's cumLogProb). */
  cumLogProb: number;
  /** topLogProbs > 0: per token (parallel to tokenIds), the k most likely tokens of the distribution
   * its logProb comes from, most likely first (ties by lower id). */
  topLogProbs?: TokenLogProb[][];
  /** returnGenerationLogits: the raw logits of this event's tokens, [tokenIds.length × vocab]. */
  generationLogits?: Float32Array;
  /** returnContextLogits, on the request's first event: logits of every prompt position,
   * [promptLen × vocab]. */
  contextLogits?: Float32Array;
  /** On the request's first event once it was scheduled: prompt tokens found in the prefix cache at
   * its first admission (whole blocks), so not computed. */
  numCachedTokens?: number;
  /** Beam search's final events: Hugging Face's sequence score (cumLogProb / length ** lengthPenalty). */
  score?: number;
  /** Beam search, streaming, per step: the current beams' generated tokens, best first. */
  beams?: number[][];
  /** The request's clientId, when it gave one. */
  clientId?: string | number;
  /** Text completed by these tokens (held back while it may still begin a stop string). */
  text: string;
  /** The sequence's finish reason (null while it runs). */
  finishReason: RequestFinishReason | null;
  timing: RequestTiming;
}

/** New tokens of one sequence, as the executor hands them over. */
export interface SequenceUpdate {
  sequenceIndex: number;
  tokenIds: number[];
  logProbs: number[];
  text: string;
  /** Ends the sequence. */
  finishReason: RequestFinishReason | null;
  /** One raw [V] row per token when the request returns generation logits. */
  rawLogits?: readonly Float32Array[];
  /** One top-log-probs list per token when the request asks for them. */
  topLogProbs?: readonly TokenLogProb[][];
  /** Ends the request (set on the last update of its last sequence). */
  isFinal: boolean;
}

/** A finished event as is (beam search): it is never merged with others. */
export type WholeEvent = Pick<
  ResultEvent,
  "sequenceIndex" | "isFinal" | "tokenIds" | "logProbs" | "cumLogProb" | "text" | "finishReason"
> &
  Pick<ResultEvent, "score" | "beams">;

/** A non-streaming sequence's event while it gathers tokens. */
interface Held {
  event: ResultEvent | null;
  logits: Float32Array[];
  cumLogProb: number;
}

/** The writer's side of one request's results: turns the executor's per-sequence updates into result
 * events (merged per sequence when not streaming; context logits and cached tokens on the first) and
 * hands them to its sink (event_queue.ts). */
export class ResultChannel {
  private done = false;
  /** Per sequence index: its cumLogProb and, when not streaming, its gathered event. */
  private readonly held = new Map<number, Held>();
  /** Context logits waiting for the request's first event. */
  private contextLogits: Float32Array | null = null;
  /** Cached prompt tokens waiting for the request's first event; null once sent (or never set). */
  private cachedTokens: number | null = null;
  private sentFirst = false;

  constructor(
    readonly requestId: number,
    readonly streaming: boolean,
    readonly timing: RequestTiming,
    /** Where the events go. */
    private readonly out: ResultSink,
    private readonly clientId?: string | number,
    /** Whether every event carries generationLogits. */
    private readonly withLogits = false,
    /** Whether every event carries topLogProbs. */
    private readonly withTop = false,
  ) {}

  get finished(): boolean {
    return this.done;
  }

  /** The request's context logits: they go out on its first event. */
  setContextLogits(logits: Float32Array): void {
    this.contextLogits = logits;
  }

  /** The request's cached prompt tokens at its first admission: they go out on its first event. */
  setCachedTokens(n: number): void {
    if (!this.sentFirst) this.cachedTokens = n;
  }

  /** New tokens (maybe none) and text of one sequence. */
  push(u: SequenceUpdate): void {
    if (this.done) return;
    let h = this.held.get(u.sequenceIndex);
    if (!h) {
      h = { event: null, logits: [], cumLogProb: 0 };
      this.held.set(u.sequenceIndex, h);
    }
    for (const lp of u.logProbs) h.cumLogProb += lp;
    const ev = this.event({
      sequenceIndex: u.sequenceIndex,
      isFinal: u.isFinal,
      tokenIds: u.tokenIds,
      logProbs: u.logProbs,
      cumLogProb: h.cumLogProb,
      text: u.text,
      finishReason: u.finishReason,
    });
    if (this.withLogits) ev.generationLogits = concat(u.rawLogits ?? []);
    if (this.withTop) ev.topLogProbs = [...(u.topLogProbs ?? [])];
    if (this.streaming) {
      this.enqueue(ev);
      return;
    }
    if (this.withLogits) h.logits.push(...(u.rawLogits ?? []));
    if (h.event) {
      h.event.tokenIds.push(...u.tokenIds);
      h.event.logProbs.push(...u.logProbs);
      if (this.withTop) h.event.topLogProbs?.push(...(u.topLogProbs ?? []));
      h.event.text += u.text;
      h.event.cumLogProb = h.cumLogProb;
      h.event.timing = ev.timing;
      h.event.finishReason = u.finishReason;
      h.event.isFinal = u.isFinal;
    } else h.event = ev;
    if (u.finishReason === null && !u.isFinal) return;
    if (this.withLogits) h.event.generationLogits = concat(h.logits);
    this.enqueue(h.event);
  }

  /** An event that is complete as given (beam search's step and final events). */
  pushWhole(w: WholeEvent): void {
    if (this.done) return;
    this.enqueue(this.event(w));
  }

  /** Ends the request with an error the reader's iterator throws. */
  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.out.fail(error);
  }

  private event(w: WholeEvent): ResultEvent {
    const ev: ResultEvent = { requestId: this.requestId, ...w, timing: { ...this.timing } };
    if (w.score === undefined) delete ev.score;
    if (w.beams === undefined) delete ev.beams;
    if (this.clientId !== undefined) ev.clientId = this.clientId;
    return ev;
  }

  private enqueue(ev: ResultEvent): void {
    if (this.contextLogits) {
      ev.contextLogits = this.contextLogits;
      this.contextLogits = null;
    }
    if (this.cachedTokens !== null) {
      ev.numCachedTokens = this.cachedTokens;
      this.cachedTokens = null;
    }
    this.sentFirst = true;
    if (ev.isFinal) this.done = true;
    this.out.push(ev);
  }
}

/** [V] rows joined into [rows × V]. */
function concat(rows: readonly Float32Array[]): Float32Array {
  const V = rows[0]?.length ?? 0;
  const out = new Float32Array(rows.length * V);
  rows.forEach((r, i) => {
    out.set(r, i * V);
  });
  return out;
}
