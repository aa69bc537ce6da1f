// A stand-in for the backend in scheduler tests: its "KV cache" stores the token id at each slot, so
// a step can check that the cache read through a request's block table holds exactly the request's
// tokens (prefix hits, copies and evictions included), and its "model" picks the next token from what
// it read. A request's tokens are then those of the same request run alone iff the bookkeeping is right.
import assert from "node:assert/strict";
import type { Request } from "../../src/executor/request.ts";
import type { Branch, Scheduler } from "../../src/executor/scheduler.ts";
import type { SchedulerOutput } from "../../src/executor/scheduler_output.ts";
import { stepFromSchedule } from "../../src/executor/step_from_schedule.ts";

/** The next token after `context`: depends on every token and the position. */
export function nextToken(context: readonly number[]): number {
  let h = context.length;
  for (const t of context) h = (h * 31 + t + 7) % 1_000_003;
  return h % 997;
}

/** A group's next sequences from the next token of each of its sequences (row order); null: the
 * request is done (the engine finishes it). Default: every sequence continues with its token. */
export type Brancher = (r: Request, next: readonly number[]) => Branch[] | null;

export class FakeEngine {
  private readonly slots: Int32Array;

  constructor(private readonly s: Scheduler) {
    this.slots = new Int32Array(s.kv.numBlocks * s.kv.tokensPerBlock).fill(-1);
  }

  /** schedule → run → update; returns the output. Checks the step's tokens and logits rows against
   * the bounds, and audits the KV manager after the step. */
  step(now = 0, branch?: Brancher): SchedulerOutput {
    const out = this.s.schedule(now);
    const bs = this.s.kv.tokensPerBlock;
    assert.ok(out.numTokens <= this.s.maxNumTokens);
    const rows = stepFromSchedule(out, bs).step.logitRows.length;
    assert.equal(out.numLogitRows, rows, "numLogitRows is the built step's logits rows");
    assert.ok(rows <= this.s.maxLogitRows, `a step of ${rows} logits rows over ${this.s.maxLogitRows}`);
    for (const { src, dst } of out.blockCopies) this.slots.copyWithin(dst * bs, src * bs, (src + 1) * bs);
    const slot = (table: Int32Array, pos: number) => table[Math.floor(pos / bs)] * bs + (pos % bs);
    for (const c of out.chunks)
      c.tokenIds.forEach((t, i) => (this.slots[slot(c.blockTable, c.start + i)] = t));
    const next = new Map<number, number[]>();
    for (const c of out.chunks) {
      const r = this.s.get(c.requestId);
      assert.ok(r, `request ${c.requestId} scheduled but not live`);
      const tokens = r.seqs[c.seq].tokens;
      assert.deepEqual(c.tokenIds, tokens.slice(c.start, c.start + c.tokenIds.length));
      if (!c.sample) continue;
      const context = Array.from(
        { length: c.start + c.tokenIds.length },
        (_, p) => this.slots[slot(c.blockTable, p)],
      );
      assert.deepEqual(context, tokens, `the KV cache of request ${r.id} holds other tokens`);
      const row = next.get(c.requestId) ?? [];
      row[c.seq] = nextToken(context);
      next.set(c.requestId, row);
    }
    const sampled = new Map<number, number | Branch[]>();
    for (const [id, row] of next) {
      const r = this.s.get(id) as Request;
      const b = branch ? branch(r, row) : row.map((token, parent) => ({ parent, token }));
      if (b === null) this.s.finish(id, "stop");
      else sampled.set(id, branch || row.length > 1 ? b : row[0]);
    }
    this.s.update(out, sampled);
    this.s.kv.audit();
    return out;
  }

  /** Steps until no request is live; returns every output. */
  drain(limit = 10_000, branch?: Brancher): SchedulerOutput[] {
    const outs: SchedulerOutput[] = [];
    while (this.s.hasWork) {
      assert.ok(outs.length < limit, "the scheduler made no progress");
      outs.push(this.step(0, branch));
    }
    return outs;
  }
}

/** The tokens a request generates when run alone. */
export function solo(prompt: readonly number[], maxNewTokens: number): number[] {
  const t = [...prompt];
  for (let i = 0; i < maxNewTokens; i++) t.push(nextToken(t));
  return t.slice(prompt.length);
}

/** [requestId, start, numTokens, sample] of each chunk: the shape tests assert. */
export const shape = (o: SchedulerOutput) =>
  o.chunks.map((c) => [c.requestId, c.start, c.tokenIds.length, c.sample]);

/** [requestId, seq, start, numTokens, sample] of each chunk. */
export const rowShape = (o: SchedulerOutput) =>
  o.chunks.map((c) => [c.requestId, c.seq, c.start, c.tokenIds.length, c.sample]);
