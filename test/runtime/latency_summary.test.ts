// The benches' latency figures (latency_summary.ts): TTFT, TPOT and ITL from each request's start and
// arrival times, computed by hand here; requests with nothing or one token left out where they count
// in no figure; a text chunk carrying several tokens (serve) divides TPOT by the tokens; and the
// interpolated percentile both benches summarise with.
import assert from "node:assert/strict";
import { test } from "node:test";
import { latencySummary, percentile, summary } from "../../src/runtime/latency_summary.ts";

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

test("percentile interpolates between ranks (numpy's default)", () => {
  assert.equal(percentile([4, 1, 3, 2], 50), 2.5);
  assert.ok(
    close(
      percentile(
        Array.from({ length: 100 }, (_, i) => i + 1),
        99,
      ),
      99.01,
    ),
  );
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.deepEqual(summary([3, 1, 2]), { mean: 2, median: 2, p99: 2.98 });
});

test("TTFT, TPOT and ITL per request, summarised over the requests", () => {
  const s = latencySummary([
    { start: 0, times: [10, 14, 22] }, // TTFT 10, TPOT 6, ITL 4, 8
    { start: 5, times: [9, 11] }, // TTFT 4, TPOT 2, ITL 2
    { start: 7, times: [20] }, // TTFT 13; one token: no TPOT, no ITL
    { start: 8, times: [] }, // nothing arrived: in no figure
  ]);
  assert.deepEqual(s.ttftMs, summary([10, 4, 13]));
  assert.deepEqual(s.tpotMs, summary([6, 2]));
  assert.deepEqual(s.itlMs, summary([4, 8, 2]));
  assert.equal(s.ttftMs.median, 10);
  assert.equal(s.tpotMs.mean, 4);
});

test("tokens: chunks that carry several tokens divide TPOT by the tokens, not the chunks", () => {
  const s = latencySummary([
    { start: 0, times: [10, 30], tokens: 5 }, // TPOT (30 − 10) / 4
    { start: 0, times: [12], tokens: 3 }, // one chunk of 3 tokens: TPOT 0 / 2
    { start: 0, times: [15], tokens: 1 },
  ]);
  assert.deepEqual(s.tpotMs, summary([5, 0]));
  assert.deepEqual(s.itlMs, summary([20]));
});
