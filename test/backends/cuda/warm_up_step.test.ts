// What the CUDA backend's warm-up runs and keeps back, checked on the CPU: the warm-up step carries
// every token it is asked for in sequences no longer than the context window (at most maxSeqs of
// them), writes no KV (slots −1), reads only block 0, and returns the last logit rows; the graphs'
// reserve counts every graph the backend may capture; the graph warm-up steps cover every graph key a
// decode step can take, once each.
import assert from "node:assert/strict";
import { test } from "node:test";
import { graphSplits, MAX_SPLITS } from "../../../src/backends/cuda/attention_splits.ts";
import { isGraphable } from "../../../src/backends/cuda/decode_graphs.ts";
import { rowBucket, rowBuckets } from "../../../src/backends/cuda/gemm_algorithms.ts";
import {
  GRAPH_NODE_BYTES,
  graphReserveBytes,
  STEP_SLACK_BYTES,
} from "../../../src/backends/cuda/graph_reserve.ts";
import { graphWarmUpSteps, warmUpStep } from "../../../src/backends/cuda/warm_up_step.ts";

test("the warm-up step: T tokens in sequences within the context window, no KV writes, block 0 only", () => {
  const s = warmUpStep(10, { maxSeqLen: 4, maxSeqs: 8, blockSize: 2, maxLogitRows: 3 });
  assert.equal(s.tokenIds.length, 10);
  assert.deepEqual(
    s.seqs.map((q) => [q.queryStart, q.queryLen, q.contextLen, [...q.blockTable]]),
    [
      [0, 4, 4, [0, 0]],
      [4, 4, 4, [0, 0]],
      [8, 2, 2, [0]],
    ],
  );
  assert.deepEqual([...s.positions], [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
  assert.ok(s.slotMapping.every((x) => x === -1));
  assert.deepEqual([...s.logitRows], [7, 8, 9]);
  // One long sequence when the window allows; decode attention's maxSeqs bounds the sequences.
  const one = warmUpStep(8192, { maxSeqLen: 131072, maxSeqs: 1, blockSize: 16, maxLogitRows: 256 });
  assert.deepEqual(
    one.seqs.map((q) => [q.queryLen, q.blockTable.length]),
    [[8192, 512]],
  );
  assert.equal(one.logitRows.length, 256);
  const capped = warmUpStep(100, { maxSeqLen: 10, maxSeqs: 3, blockSize: 4, maxLogitRows: 64 });
  assert.equal(capped.tokenIds.length, 30);
  assert.equal(capped.seqs.length, 3);
});

test("the graphs' reserve: every (bucket, splits, slot) graph at one node per launch, and the slack", () => {
  const launches = 225;
  // Row buckets up to 256: 1, 2, 4, …, 64 and eight per octave above (72 … 128, 144 … 256).
  const graphs = (7 + 16) * (Math.log2(MAX_SPLITS) + 1) * 3;
  assert.equal(
    graphReserveBytes(launches, 256),
    graphs * (launches + 1) * GRAPH_NODE_BYTES + STEP_SLACK_BYTES,
  );
  assert.ok(graphReserveBytes(launches, 512) > graphReserveBytes(launches, 256));
});

test("the graph warm-up: one decode step per (bucket, splits) a request can reach, writing no KV", () => {
  const target = { smCount: 132, ctasPerSeq: 8 }; // the 8B on an H100/H200
  const limits = { maxSeqLen: 4096, maxSeqs: 300, blockSize: 16, maxLogitRows: 512 };
  const steps = graphWarmUpSteps(limits, target);
  const stride = Math.ceil(limits.maxSeqLen / limits.blockSize);
  const keyOf = (bucket: number, longest: number) => `${bucket}/${graphSplits(target, bucket, longest)}`;
  const keys = steps.map((s) => keyOf(s.seqs.length, Math.max(...s.seqs.map((q) => q.contextLen))));
  assert.equal(new Set(keys).size, keys.length, "no graph twice");
  for (const s of steps) {
    assert.ok(isGraphable(s, limits.maxLogitRows, stride), "a decode step the graphs take");
    assert.ok(
      s.slotMapping.every((x) => x === -1),
      "writes no KV",
    );
    assert.ok(
      s.seqs.every((q, i) => q.blockTable.every((b) => b === 0) && s.positions[i] === q.contextLen - 1),
    );
  }
  // Every batch of 1 … maxSeqs sequences at every context finds its graph: the row buckets up to 320
  // (rowBucket(300)).
  const buckets = new Set(steps.map((s) => s.seqs.length));
  assert.deepEqual([...buckets], rowBuckets(300));
  assert.equal(Math.max(...buckets), 320);
  for (let n = 1; n <= limits.maxSeqs; n += n < 16 ? 1 : 37)
    for (let ctx = 1; ctx <= limits.maxSeqLen; ctx += ctx < 300 ? 7 : 301)
      assert.ok(keys.includes(keyOf(rowBucket(n), ctx)), `batch ${n}, longest context ${ctx}`);
  // Small buckets take several split counts, large ones one.
  assert.ok(keys.filter((k) => k.startsWith("1/")).length > 3);
  assert.equal(keys.filter((k) => k.startsWith("320/")).length, 1);
  // maxLogitRows caps the buckets.
  const capped = graphWarmUpSteps({ ...limits, maxSeqs: 2000 }, target);
  assert.equal(Math.max(...capped.map((s) => s.seqs.length)), 512);
});
