// The output processor (vLLM v1's OutputProcessor): turns a step's sampled tokens (or, for beams, its
// logits rows) into each request's group step, result events and scheduler branches, and ends
// requests (done, failed, cancelled, timed out). It owns no request: the executor keeps the live map
// (id → LiveRequest) and adds to it; this removes a request from it, and from the scheduler, when it
// ends, so the loop never sees it again.
//
//   rows of request r → r.group.step → events on r.channel
//                                    → Branch[] (the sequences that go on) or null (r ended)
import type { ExecutionBackend } from "../backends/backend.ts";
import { BeamGroup } from "./beam_group.ts";
import type { ContextLogits } from "./context_logits.ts";
import type { DecodingState } from "./executor_request.ts";
import type { Request, RequestFinishReason } from "./request.ts";
import type { ResultChannel, SequenceUpdate } from "./request_results.ts";
import type { RowSample, SamplingGroup } from "./sampling_group.ts";
import type { Branch, Scheduler } from "./scheduler.ts";
import type { SchedulerOutput } from "./scheduler_output.ts";

/** A request from enqueue until it ends: its scheduler entry, decoding state, group and channel. */
export interface LiveRequest {
  request: Request;
  state: DecodingState;
  group: SamplingGroup | BeamGroup;
  channel: ResultChannel;
  /** returnContextLogits, until the prompt's rows are all in. */
  context: ContextLogits | null;
}

export class OutputProcessor {
  /** Tokens generated, every sequence's (ExecutorStats.numGeneratedTokens). */
  generatedTokens = 0;

  constructor(
    private readonly live: Map<number, LiveRequest>,
    private readonly scheduler: Scheduler,
    private readonly backend: ExecutionBackend,
    private readonly clock: () => number,
  ) {}

  /** Stamps each request's first scheduling on its channel: the time and its prompt's cached tokens. */
  scheduled(out: SchedulerOutput, now: number): void {
    for (const c of out.chunks) {
      const l = this.live.get(c.requestId) as LiveRequest;
      if (l.channel.timing.firstScheduled === null) {
        l.channel.timing.firstScheduled = now;
        l.channel.setCachedTokens(l.request.numCachedTokens);
      }
    }
  }

  /** A beam step of `l` from its rows' raw logits [rows × V]: the step's event when streaming, the
   * final beams when done. Returns its branches, or null when it ended (done or failed). */
  advanceBeams(l: LiveRequest, group: BeamGroup, logits: Float32Array, t: number): Branch[] | null {
    const id = l.request.id;
    const res = group.step(l.request, this.backend.decoding, logits, this.backend.vocabSize);
    if ("error" in res) return this.fail(l, res.error);
    this.generatedTokens += res.branches.length;
    l.channel.timing.firstToken ??= t;
    l.channel.timing.last = t;
    if (l.channel.streaming) {
      const none = { tokenIds: [], logProbs: [], cumLogProb: 0, text: "", finishReason: null };
      l.channel.pushWhole({ sequenceIndex: 0, isFinal: false, ...none, beams: res.beams });
    }
    if (!res.finals) return res.branches;
    this.scheduler.finish(id, res.finals[0]?.finishReason ?? "length");
    this.live.delete(id);
    for (const f of res.finals) l.channel.pushWhole(f);
    return null;
  }

  /** The sampled tokens of `l`'s rows: one event per sequence (token or finish). Returns the branches
   * of the sequences that go on, or null when none does (or it failed). */
  advanceSamples(
    l: LiveRequest,
    group: SamplingGroup,
    samples: RowSample[],
    t: number,
    before?: number,
  ): Branch[] | null {
    const res = group.step(l.request, samples, before);
    if ("error" in res) return this.fail(l, res.error);
    this.generatedTokens += samples.length;
    l.channel.timing.firstToken ??= t;
    l.channel.timing.last = t;
    const done = res.branches.length === 0;
    if (done) {
      this.scheduler.finish(l.request.id, res.updates.at(-1)?.finishReason ?? "length");
      this.live.delete(l.request.id);
    }
    this.emit(l.channel, res.updates, done);
    return done ? null : res.branches;
  }

  /** Ends `l` alone with `error`; its blocks are freed now. */
  private fail(l: LiveRequest, error: unknown): null {
    this.scheduler.finish(l.request.id, "cancelled");
    this.live.delete(l.request.id);
    l.channel.fail(error);
    return null;
  }

  /** Ends a live request that left the scheduler (cancelled, timed out): flushes each live
   * sequence's text (beams: one event with no tokens). */
  close(id: number, reason: RequestFinishReason): void {
    const l = this.live.get(id) as LiveRequest;
    this.live.delete(id);
    l.channel.timing.last = this.clock();
    if (l.group instanceof BeamGroup) {
      const none = { tokenIds: [], logProbs: [], cumLogProb: 0, text: "" };
      l.channel.pushWhole({ sequenceIndex: 0, isFinal: true, ...none, finishReason: reason });
      return;
    }
    this.emit(l.channel, l.group.close(reason), true);
  }

  /** Closes those still live of the requests that left the scheduler since its last output (a
   * timeout, say), with the scheduler's reason. */
  closeFinished(finished: SchedulerOutput["finished"]): void {
    for (const f of finished) if (this.live.has(f.requestId)) this.close(f.requestId, f.reason);
  }

  /** Closes those of `ids` still live that the scheduler ended at maxNewTokens after a step: their
   * groups have said so already (same limit), this flushes their events. */
  closeAtLength(ids: Iterable<number>): void {
    for (const id of ids) if (this.live.has(id) && !this.scheduler.get(id)) this.close(id, "length");
  }

  /** Pushes `updates` in order; with `last`, the final one ends the request. */
  private emit(channel: ResultChannel, updates: Omit<SequenceUpdate, "isFinal">[], last: boolean): void {
    updates.forEach((u, i) => {
      channel.push({ ...u, isFinal: last && i === updates.length - 1 });
    });
  }

  /** Ends every live request with `error` (a step failed); their blocks are freed now. */
  failAll(error: unknown): void {
    for (const [id, l] of [...this.live]) {
      this.scheduler.finish(id, "cancelled", false); // the failed step's blocks stay out of the cache
      this.live.delete(id);
      l.channel.fail(error);
    }
  }
}
