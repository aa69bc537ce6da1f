// One HTTP generation request against the executor: its prompts (one executor request each) are
// admitted, enqueued with streaming on (so every token has its time for the metrics) and their result
// events turned into choice deltas, in arrival order:
//
//   prompt p, sequence s  →  choice index p × n + s
//
// n > 1 runs as the executor's numReturnSequences (one event per sample and token, by sequenceIndex);
// beam search as its beamWidth (one final event per returned beam, best first, by sequenceIndex).
// Whatever ends the request (done, error, the client gone, the consumer stopping), every executor
// request is cancelled if still live, its results taken, its admission released and its metrics
// reported once.

import { RequestTooLargeError } from "../../executor/errors.ts";
import type { ExecutorRequest, ResultEvent } from "../../executor/executor.ts";
import type { RequestFinishReason } from "../../executor/request.ts";
import type { RequestTiming, TokenLogProb } from "../../executor/request_results.ts";
import { badField, HttpError } from "../http_errors.ts";
import type { FinishedRequest, ServerContext } from "../server_context.ts";
import type { GenerationParams } from "./request_fields.ts";

export type ChoiceFinish = "stop" | "length";

/** New output of one choice. */
export interface ChoiceDelta {
  index: number;
  tokenIds: number[];
  logProbs: number[];
  /** Per token its top log-probs, when the request asked for them (top_logprobs / logprobs k). */
  topLogProbs?: TokenLogProb[][];
  text: string;
  finishReason: ChoiceFinish | null;
}

/** The client went away: nothing more is sent, the request is cancelled. */
export class ClientGoneError extends Error {}

export class Generation {
  promptTokens = 0;
  completionTokens = 0;
  /** Of promptTokens, those the prefix cache held when each prompt was first scheduled. */
  cachedTokens = 0;
  /** Arrival → first token of the first prompt to produce one (ms), for the request log. */
  ttftMs: number | null = null;

  constructor(
    private readonly ctx: ServerContext,
    private readonly prompts: readonly number[][],
    private readonly params: GenerationParams,
    /** max_tokens for a prompt of this length. */
    private readonly maxTokensFor: (promptLength: number) => number,
    private readonly signal: AbortSignal,
  ) {}

  /** The executor requests enqueued (id → its prompt's index), in prompt order. */
  private readonly promptOf = new Map<number, number>();
  private started = false;

  /** Admits and enqueues every prompt, or throws (HttpError 429/503, the executor's 400s) with
   * nothing left queued. Call forEachDelta() right after. */
  async start(): Promise<void> {
    const { executor } = this.ctx.model;
    const timeout = this.ctx.settings.requestTimeoutMs;
    this.ctx.inFlight.admit(this.prompts.length);
    this.started = true;
    try {
      if (this.signal.aborted) throw new ClientGoneError();
      // Every prompt is posted at once: behind an executor thread each answer takes a turn of its loop.
      const settled = await Promise.allSettled(
        this.prompts.map(async (p) => executor.enqueue(this.requestFor(p, timeout))),
      );
      settled.forEach((r, i) => {
        if (r.status !== "fulfilled") return;
        this.promptOf.set(r.value, i);
        this.ctx.inFlight.track(r.value);
        this.promptTokens += this.prompts[i].length;
      });
      const refused = settled.find((r) => r.status === "rejected");
      if (refused) throw refused.reason;
    } catch (e) {
      this.end(new Set());
      throw this.asFieldError(e);
    }
  }

  /** The executor request of one prompt. */
  private requestFor(p: number[], timeout: number): ExecutorRequest {
    const maxNewTokens = this.maxTokensFor(p.length);
    const { minLength } = this.params.request;
    return {
      ...this.params.request,
      prompt: p,
      maxNewTokens,
      // min_tokens beyond what the context leaves this prompt: the whole generation bans the end.
      ...(minLength !== undefined ? { minLength: Math.min(minLength, maxNewTokens) } : {}),
      ...(Number.isFinite(timeout) ? { allottedTimeMs: timeout } : {}),
    };
  }

  /** The executor's refusals that belong to a field, as 400s naming it. */
  private asFieldError(e: unknown): unknown {
    if (e instanceof RequestTooLargeError)
      return badField(
        "max_tokens",
        `the prompt (${e.promptTokens} tokens) plus max_tokens (${e.maxNewTokens}) need more KV cache than the server has (${e.totalBlocks * e.tokensPerBlock} tokens); ask for fewer tokens or shorten the prompt`,
      );
    return e;
  }

  /** Hands each choice delta, in arrival order, to `take` (waiting for it when it returns a promise),
   * and resolves at the end; throws HttpError (408 timeout, 503 shutdown), ClientGoneError, the
   * executor's error or take's. A callback, not an async iterator: one less promise hop per token. */
  async forEachDelta(take: (d: ChoiceDelta) => Promise<void> | undefined): Promise<void> {
    const { executor } = this.ctx.model;
    const taken = new Set<number>();
    const cancelAll = () => {
      for (const id of this.promptOf.keys()) executor.cancel(id);
    };
    this.signal.addEventListener("abort", cancelAll);
    try {
      if (this.signal.aborted) throw new ClientGoneError();
      if (this.promptOf.size === 1) {
        // One prompt of one sequence group (the common case): its events straight through, without a
        // generator per prompt and a merge between them.
        const [id] = this.promptOf.keys();
        taken.add(id);
        const p = this.promptReader(0);
        try {
          for await (const ev of executor.results(id)) {
            const wait = take(p.delta(id, ev));
            if (wait) await wait;
            if (ev.isFinal) break;
          }
        } finally {
          p.report();
        }
      } else {
        const merged = merge(
          [...this.promptOf].map(([id, promptIndex]) => {
            taken.add(id);
            return this.one(id, executor.results(id), promptIndex);
          }),
        );
        for await (const d of merged) {
          const wait = take(d);
          if (wait) await wait;
        }
      }
    } finally {
      this.signal.removeEventListener("abort", cancelAll);
      this.end(taken);
    }
  }

  /** Cancels what is live, drops untaken results, releases the admission (once). */
  private end(taken: Set<number>): void {
    if (!this.started) return;
    this.started = false;
    const { executor } = this.ctx.model;
    for (const [id, promptIndex] of this.promptOf) {
      executor.cancel(id); // false (a no-op) once it finished
      if (!taken.has(id)) {
        executor.results(id); // drop the executor's channel
        const timing = { arrival: Date.now(), firstScheduled: null, firstToken: null, last: null };
        this.ctx.metrics.requestFinished({
          finishReason: "cancelled",
          promptTokens: this.prompts[promptIndex].length,
          generationTokens: 0,
          timing,
          tokenTimes: [],
        });
      }
      this.ctx.inFlight.untrack(id);
    }
    this.ctx.inFlight.release(this.prompts.length);
  }

  /** One prompt's deltas, for merge. */
  private async *one(
    id: number,
    results: AsyncIterable<ResultEvent>,
    promptIndex: number,
  ): AsyncGenerator<ChoiceDelta> {
    const p = this.promptReader(promptIndex);
    try {
      for await (const ev of results) {
        yield p.delta(id, ev);
        if (ev.isFinal) break;
      }
    } finally {
      p.report();
    }
  }

  /** Turns one prompt's result events into choice deltas (throwing for a request the executor ended
   * without finishing it); report() tells the metrics how it finished, once, when it is read no more. */
  private promptReader(promptIndex: number): {
    delta(id: number, ev: ResultEvent): ChoiceDelta;
    report(): void;
  } {
    const { n, includeStopStr, stops } = this.params;
    const tokenizer = this.ctx.model.tokenizer;
    let finish: FinishedRequest["finishReason"] = "error";
    let timing: RequestTiming = { arrival: Date.now(), firstScheduled: null, firstToken: null, last: null };
    const tokenTimes: number[] = [];
    let generated = 0;
    // Per sequence, for include_stop_str_in_output: the text and tokens so far. (The executor's text
    // never splits a character between events.)
    const sofar = new Map<number, { text: string; ids: number[] }>();
    return {
      delta: (id, ev) => {
        timing = ev.timing;
        this.cachedTokens += ev.numCachedTokens ?? 0;
        const seq = ev.sequenceIndex;
        if (ev.tokenIds.length > 0) {
          generated += ev.tokenIds.length;
          // A beam's final event carries its whole output at once: no inter-token time.
          if (ev.score === undefined) tokenTimes.push(ev.timing.last ?? Date.now());
          if (this.ttftMs === null && ev.timing.firstToken !== null)
            this.ttftMs = ev.timing.firstToken - ev.timing.arrival;
        }
        const reason = ev.finishReason;
        if (reason === "cancelled" || reason === "timed_out") {
          finish = reason;
          throw this.endedError(id, reason);
        }
        let text = ev.text;
        if (includeStopStr && stops.length > 0 && tokenizer) {
          const s = sofar.get(seq) ?? { text: "", ids: [] };
          s.ids.push(...ev.tokenIds);
          if (reason === "stop") {
            // The executor cut the text where a stop string begins; add back the one found there.
            const whole = tokenizer.decode(s.ids, { skipSpecialTokens: true });
            const at = s.text.length + text.length;
            const hit = stops.find((w) => whole.startsWith(w, at));
            if (hit) text += hit;
          }
          s.text += text;
          sofar.set(seq, s);
        }
        this.completionTokens += ev.tokenIds.length;
        if (ev.isFinal) finish = reason ?? "stop";
        const d: ChoiceDelta = {
          index: promptIndex * n + seq,
          tokenIds: ev.tokenIds,
          logProbs: ev.logProbs,
          text,
          finishReason: reason === null ? null : reason === "length" ? "length" : "stop",
        };
        if (ev.topLogProbs) d.topLogProbs = ev.topLogProbs;
        return d;
      },
      report: () => {
        this.ctx.metrics.requestFinished({
          finishReason: finish,
          promptTokens: this.prompts[promptIndex].length,
          generationTokens: generated,
          timing,
          tokenTimes,
        });
      },
    };
  }

  /** The error for a request the executor ended without finishing it. */
  private endedError(id: number, reason: RequestFinishReason): Error {
    if (this.signal.aborted) return new ClientGoneError();
    if (reason === "timed_out")
      return new HttpError(
        408,
        `the request ran past the server's request timeout (${this.ctx.settings.requestTimeoutMs / 1000} s) and was cancelled; ask for fewer tokens or retry later`,
        "timeout_error",
      );
    if (this.ctx.inFlight.cancelCause(id) === "shutdown")
      return new HttpError(
        503,
        "the server shut down before this request finished; it was cancelled",
        "service_unavailable",
      );
    return new HttpError(
      503,
      "the request was cancelled by the server before it finished",
      "service_unavailable",
    );
  }
}

type Step<T> = { i: number; r?: IteratorResult<T>; e?: unknown };

/** Items of every generator as they come. A failure of one is thrown after the rest are returned. */
async function* merge<T>(gens: AsyncGenerator<T>[]): AsyncGenerator<T> {
  // One prompt of one executor request (the common case): its items as they are, without a race per
  // item.
  if (gens.length === 1) {
    yield* gens[0];
    return;
  }
  const step = (i: number): Promise<Step<T>> =>
    gens[i].next().then(
      (r) => ({ i, r }),
      (e: unknown) => ({ i, e }),
    );
  const pending = new Map<number, Promise<Step<T>>>(gens.map((_, i) => [i, step(i)]));
  try {
    while (pending.size > 0) {
      const s = await Promise.race(pending.values());
      if (s.e !== undefined) {
        pending.delete(s.i);
        throw s.e;
      }
      if (s.r?.done) {
        pending.delete(s.i);
        continue;
      }
      pending.set(s.i, step(s.i));
      yield (s.r as IteratorYieldResult<T>).value;
    }
  } finally {
    // A generator still waiting ends at its next event (its request is being cancelled).
    for (const i of pending.keys()) gens[i].return(undefined).catch(() => {});
  }
}
