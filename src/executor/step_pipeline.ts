// The step pipeline: how a scheduled, built step reaches the backend and its tokens come back to the
// output processor. Two ways:
//
//   runNow:  startStep(step) (queued: enqueueForward or enqueueSample); the loop polls its ready()
//            between turns of the event loop → readSync: context logits, beams (logits rows),
//            samples (host decoding, LogitsProcessors) → scheduler.update
//   queue:   enqueueSample(step N+1, feed ← N) → scheduler.advance (placeholders); the loop then
//            polls sampleReady(N) between turns of the event loop → land(N)
//   land(N): collectSample(N) → samples → scheduler.resolve (tokens over the placeholders)
//
// Queued (overlap.ts), when the backend queues steps (enqueueSample) and every live request is
// sampled on the device: one iteration schedules, builds and queues step N+1 (its decodes fed on the
// device with N's tokens), then reads step N and does N's host work (stops, text, events) while N+1
// runs. When a request of step N needs its token on the host to build its next inputs, N is read
// before N+1 is scheduled (landFirst; penalties do not: overlap.ts feedPenalties); while a request
// that needs host logits or whose next inputs are not its own tokens (beams, a group before its
// fan-out) runs or is next in the queue, every step is synchronous (queueable is false; overlap.ts's
// overlapMode has the rules): queued alone and read before the next is built, the loop serving the
// event loop meanwhile as for a queued step. A request cancelled while its synchronous step runs is
// skipped when the step is read (its LogitsProcessors are not called). It holds the one step queued
// and not read yet (a Flight, or a SyncStep) and reports each step it reads to the IterationReporter.
import type { ExecutionBackend } from "../backends/backend.ts";
import { BeamGroup } from "./beam_group.ts";
import { invariant } from "./errors.ts";
import type { IterationReporter, StepCounts } from "./iteration_stats.ts";
import type { LiveRequest, OutputProcessor } from "./output_processor.ts";
import { type Flight, feedFrom, feedPenalties, overlapMode } from "./overlap.ts";
import { rowSampling, type SampledRow, type StepInFlight, startStep } from "./sample_rows.ts";
import { type RowSample, SamplingGroup } from "./sampling_group.ts";
import type { Branch, Scheduler } from "./scheduler.ts";
import type { SchedulerOutput } from "./scheduler_output.ts";
import type { ScheduledStep } from "./step_from_schedule.ts";

/** A synchronous step queued on the device and not read yet: what runNow built to read it with. */
interface SyncStep {
  out: SchedulerOutput;
  context: ScheduledStep["context"];
  /** Per request: its rows among the sampled ones (sampling groups), or its logits rows (beams). */
  mine: Map<number, { rows: number[]; logitRows: number[] }>;
  pending: StepInFlight;
  counts: StepCounts;
  /** The executor's clock when the loop began scheduling it. */
  now: number;
  /** Host ms spent queueing it (all of the step, on a backend that runs it when queued). */
  queueMs: number;
}

export class StepPipeline {
  /** The queued step not read yet (overlapped loop). */
  private flight: Flight | null = null;
  /** The step an iteration left for the loop to read (readReady, readNow): the flight it queued the
   * next step behind, or the one it must read first. The loop serves the event loop until the device
   * has its tokens instead of blocking in collectSample. */
  private unread: Flight | null = null;
  /** The synchronous step queued and not read yet (runNow), left for the loop to read like `unread`. */
  private sync: SyncStep | null = null;

  constructor(
    private readonly live: Map<number, LiveRequest>,
    private readonly scheduler: Scheduler,
    private readonly backend: ExecutionBackend,
    private readonly outputs: OutputProcessor,
    private readonly reporter: IterationReporter,
    private readonly clock: () => number,
  ) {}

  /** Whether a step is queued and not read yet. */
  get inFlight(): boolean {
    return this.flight !== null;
  }

  /** Whether the step in flight must be read before another is scheduled: the loop runs
   * synchronously now (`overlap` false), or a request of it builds its next inputs on the host. */
  landFirst(overlap: boolean): boolean {
    return this.flight !== null && (!overlap || this.needsRead(this.flight));
  }

  /** Leaves the step in flight, if any, for the loop to read. */
  readInFlight(): void {
    if (this.flight) this.unread = this.flight;
  }

  /** Whether a step is left to read. */
  get readPending(): boolean {
    return this.unread !== null || this.sync !== null;
  }

  /** Whether the step left to read has its results on the host (a backend that cannot tell: yes). */
  readReady(): boolean {
    if (this.sync) return this.sync.pending.ready();
    const f = this.unread;
    return f === null || (this.backend.sampleReady?.(f.ticket) ?? true);
  }

  /** Reads the step left to read, if any; `waitedMs`: how long the loop waited for it. */
  readNow(waitedMs = 0): void {
    const s = this.sync;
    if (s) {
      this.sync = null;
      this.readSync(s, waitedMs);
      return;
    }
    const f = this.unread;
    if (!f) return;
    this.unread = null;
    this.land(f, waitedMs);
  }

  /** Whether the next step may be queued on the device: the backend queues steps, and no request
   * that needs the synchronous step (overlap.ts) runs or is the next to be admitted. Those further
   * back in the queue wait (schedule's `admits`) until one is next: then the loop turns synchronous. */
  queueable(): boolean {
    if (!this.backend.enqueueSample || !this.backend.collectSample) return false;
    for (const l of this.live.values())
      if (l.request.status === "running" && this.modeOf(l) === "sync") return false;
    const next = this.scheduler.firstWaiting;
    return !(next && this.isSync(next.id));
  }

  isSync(id: number): boolean {
    const l = this.live.get(id);
    return l !== undefined && this.modeOf(l) === "sync";
  }

  private modeOf(l: LiveRequest): ReturnType<typeof overlapMode> {
    return overlapMode(l.state, l.group instanceof SamplingGroup && l.group.fannedOut);
  }

  /** Whether a request of the step in flight builds its next inputs from its token on the host. */
  private needsRead(f: Flight): boolean {
    for (const { requestId } of f.pending.values()) {
      const l = this.live.get(requestId);
      if (l && this.modeOf(l) === "afterRead") return true;
    }
    return false;
  }

  /** Queues the synchronous step of `out` (startStep) and leaves it for the loop to read (readReady,
   * readNow → readSync): context logits, each beam group from its logits rows, each sampling group
   * from its sampled rows. No step of the overlapped loop may be in flight. */
  runNow(
    out: SchedulerOutput,
    { step, sampled, context }: ScheduledStep,
    counts: StepCounts,
    now: number,
  ): void {
    invariant(this.flight === null && this.sync === null, "a synchronous step behind another step");
    // Sampled rows (sampling groups) and the logits rows of beams, per request in row order.
    const rows: SampledRow[] = [];
    const mine = new Map<number, { rows: number[]; logitRows: number[] }>();
    for (const sr of sampled) {
      const l = this.live.get(sr.requestId) as LiveRequest;
      let m = mine.get(sr.requestId);
      if (!m) {
        m = { rows: [], logitRows: [] };
        mine.set(sr.requestId, m);
      }
      if (l.group instanceof BeamGroup) m.logitRows.push(sr.row);
      else {
        for (const row of l.group.rows(l.request, sr.seq, sr.row)) {
          m.rows.push(rows.length);
          rows.push(row);
        }
      }
    }
    const needLogits = context.length > 0 || [...mine.values()].some((m) => m.logitRows.length > 0);
    const t0 = performance.now();
    const pending = startStep(this.backend, step, rows, needLogits);
    const queueMs = performance.now() - t0;
    this.sync = { out, context, mine, pending, counts, now, queueMs };
  }

  /** Reads the synchronous step `s` (its requests cancelled meanwhile skipped): `waitedMs`, how long
   * the loop polled for it. The host's wait is its queueing, the polls and the read. */
  private readSync(s: SyncStep, waitedMs: number): void {
    const { out, context, mine, counts, now } = s;
    const t0 = performance.now();
    const got = s.pending.read((id) => this.live.has(id));
    const hostWaitMs = s.queueMs + waitedMs + performance.now() - t0;
    this.scheduler.computed(out); // before the samples: a request that ends here keeps its blocks cached
    const V = this.backend.vocabSize;
    for (const c of context) {
      const l = this.live.get(c.requestId);
      if (!l) continue; // cancelled while the step ran
      const done = l.context?.add(
        c.start,
        (got.logits as Float32Array).subarray(c.row * V, (c.row + c.count) * V),
      );
      if (done && l.context) {
        l.channel.setContextLogits(l.context.logits);
        l.context = null;
      }
    }
    const t = this.clock();
    const next = new Map<number, readonly Branch[]>();
    for (const [id, m] of mine) {
      const l = this.live.get(id);
      if (!l) continue; // cancelled while the step ran: its rows are dropped
      let branches: Branch[] | null;
      if (l.group instanceof BeamGroup) {
        const logits = new Float32Array(m.logitRows.length * V);
        m.logitRows.forEach((row, k) => {
          logits.set((got.logits as Float32Array).subarray(row * V, (row + 1) * V), k * V);
        });
        branches = this.outputs.advanceBeams(l, l.group, logits, t);
      } else {
        const samples: RowSample[] = m.rows.map((i) => ({
          token: got.tokens[i],
          logProb: got.logProbs[i],
          raw: got.rawLogits[i],
          top: got.topLogProbs[i],
          failed: got.failed[i],
        }));
        branches = this.outputs.advanceSamples(l, l.group, samples, t);
      }
      if (branches) next.set(id, branches);
    }
    this.scheduler.update(out, next);
    this.outputs.closeAtLength(next.keys());
    this.reporter.report(out, counts, t - now, false, hostWaitMs);
  }

  /** Queues the step of `out` (fed from the step in flight), advances the scheduler past it with
   * placeholders, then leaves the step that was in flight, if any, for the loop to read. */
  queue(out: SchedulerOutput, { step, sampled }: ScheduledStep, counts: StepCounts, now: number): void {
    const rows: SampledRow[] = [];
    for (const sr of sampled) {
      const l = this.live.get(sr.requestId) as LiveRequest;
      rows.push(...(l.group as SamplingGroup).rows(l.request, sr.seq, sr.row));
    }
    const prev = this.flight;
    const kvIds = out.chunks.map((c) => (this.live.get(c.requestId) as LiveRequest).request.seqs[c.seq].kvId);
    const feed = feedFrom(prev, out, kvIds);
    const sampling = rowSampling(rows);
    const params = sampling.params;
    const transforms = feedPenalties(sampling.transforms, feed, out);
    const enqueue = this.backend.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>;
    const ticket = enqueue.call(this.backend, step, params, transforms, feed ?? undefined);
    this.scheduler.advance(out);
    const pending: Flight["pending"] = new Map();
    out.chunks.forEach((c, i) => {
      if (c.sample)
        pending.set(kvIds[i], {
          requestId: c.requestId,
          row: pending.size,
          position: c.start + c.tokenIds.length,
        });
    });
    this.flight = { out, ticket, pending, ...counts, started: now, overlapped: prev !== null };
    if (prev) this.unread = prev;
    else if (this.needsRead(this.flight)) this.unread = this.flight; // nothing to overlap it with
  }

  /** Reads the queued step `f`: each request accepts its token (stops, text, events), then the
   * scheduler writes the tokens of those that go on over their placeholders. `waitedMs`: how long
   * the loop polled for it before (the host's wait is that and collectSample's). */
  private land(f: Flight, waitedMs = 0): void {
    if (this.flight === f) this.flight = null;
    const collect = this.backend.collectSample as NonNullable<ExecutionBackend["collectSample"]>;
    const waitStart = performance.now();
    const got = collect.call(this.backend, f.ticket);
    const hostWaitMs = waitedMs + performance.now() - waitStart;
    const t = this.clock();
    const requests = new Set<number>();
    for (const p of f.pending.values()) requests.add(p.requestId);
    const next = new Map<number, number>(); // by KV table id: the token of each sequence that goes on
    const going: number[] = [];
    for (const id of requests) {
      const l = this.live.get(id);
      if (!l) continue; // cancelled, timed out or failed since: its tokens are dropped
      // The rows of the sequences still live, in Request.seqs order (the group's); a sequence that
      // ended when the step before was read has a row here too: it is dropped.
      const r = l.request;
      const rows = r.seqs.map((s) => {
        const p = f.pending.get(s.kvId);
        invariant(p !== undefined, `sequence ${s.kvId} of request ${id} has no row in the step read`);
        return p;
      });
      const samples: RowSample[] = rows.map(({ row }) => ({
        token: got.tokens[row],
        logProb: got.logProbs[row],
        raw: null,
        top: null,
        failed: null,
      }));
      const before = rows[0].position;
      const branches = this.outputs.advanceSamples(l, l.group as SamplingGroup, samples, t, before);
      if (!branches) continue;
      for (const b of branches) next.set(r.seqs[b.parent].kvId, b.token);
      going.push(id);
    }
    this.scheduler.resolve(f.out, next);
    this.outputs.closeAtLength(going);
    this.reporter.report(f.out, f, t - f.started, f.overlapped, hostWaitMs);
  }

  /** Reads the steps not read yet (the one left to read, then the one in flight), after a failure or
   * before the loop sleeps, waiting for the device; a read that fails is dropped (the backend's
   * queue is abandoned). */
  tryLand(): void {
    const s = this.sync;
    this.sync = null;
    try {
      s?.pending.drop();
    } catch {
      // as below
    }
    const steps = [this.unread, this.flight].filter(
      (f, i, all): f is Flight => f !== null && all.indexOf(f) === i,
    );
    this.unread = null;
    this.flight = null;
    for (const f of steps) {
      try {
        this.land(f);
      } catch {
        // the device failed already; its requests have ended with that error
      }
    }
  }
}
