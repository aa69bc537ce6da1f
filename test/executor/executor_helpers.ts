// Shared by the executor tests: collect a request's results, wait a few loop iterations, check the
// idle invariant.
import assert from "node:assert/strict";
import type { Executor } from "../../src/executor/executor.ts";
import type { ResultEvent } from "../../src/executor/request_results.ts";

export interface Collected {
  tokens: number[];
  logProbs: number[];
  text: string;
  finishReason: string | null;
  events: ResultEvent[];
}

export async function collect(ex: Executor, id: number): Promise<Collected> {
  const out: Collected = { tokens: [], logProbs: [], text: "", finishReason: null, events: [] };
  for await (const ev of ex.results(id)) {
    assert.equal(out.finishReason, null, "an event after the last one");
    out.events.push(ev);
    out.tokens.push(...ev.tokenIds);
    out.logProbs.push(...ev.logProbs);
    out.text += ev.text;
    out.finishReason = ev.finishReason;
  }
  return out;
}

/** Lets the executor's loop run about n iterations. */
export async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Idle: nothing queued or running, every block free or cached and unreferenced. */
export function assertIdle(ex: Executor): void {
  ex.kv.audit();
  const s = ex.stats();
  assert.equal(s.numQueued, 0);
  assert.equal(s.numRunning, 0);
  assert.equal(s.kv.numFree + s.kv.numCachedFree, s.kv.numBlocks, "blocks leaked");
  assert.equal(s.kv.numUsed, 0);
}
