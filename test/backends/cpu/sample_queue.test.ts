// The CPU backend's forwardSample / enqueueSample / collectSample (cpu_backend.ts, sample_queue.ts):
// the same tokens and log-probs, bit for bit, as the host path (forward + the logits pipeline +
// sample); a pipelined run of mixed steps, fed from earlier tickets, equal to the unfed synchronous
// run; the CUDA queue's rules (feed checks before anything runs, queue order, two outstanding); and
// enqueueForward / collectForward: forward's logits through a queue of one.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { TokenFeedError } from "../../../src/backends/token_feed.ts";
import { buildEngine } from "../../../src/builder/builder.ts";
import { Session } from "../../../src/runtime/session.ts";
import { processLogits, type Row } from "../../../src/sampling/logits_pipeline.ts";
import { runMixedSteps, sampleParams } from "../../helpers/mixed_feed.ts";
import { writeTinyModel } from "../../helpers/tiny_model.ts";

const model = writeTinyModel("llama", 11);
const dir = join(model.dir, "engine");
buildEngine(model.dir, dir, { kvBlockSize: 4 });
const session = Session.open(dir, { backend: "cpu" });
const backend = session.backend;
backend.allocateKvCache(16);
after(() => {
  session.dispose();
  model.cleanup();
});
const NONE = { bias: null, penalties: null, banned: null };

test("forwardSample with bias, penalties and bans equals forward + processLogits + sample, bit for bit", () => {
  const step = {
    tokenIds: Int32Array.from([4, 9]),
    positions: Int32Array.from([0, 1]),
    slotMapping: Int32Array.from([60, 61]),
    seqs: [{ queryStart: 0, queryLen: 2, contextLen: 2, blockTable: Int32Array.from([15]) }],
    logitRows: Int32Array.from([0, 1]),
  };
  const V = backend.vocabSize;
  const t = {
    bias: Float32Array.from({ length: V }, (_, i) => (i % 3) * 0.25),
    penalties: {
      repetition: Float32Array.from([1.3, 1]),
      presence: Float32Array.from([0, 0.5]),
      frequency: Float32Array.from([0.2, 0]),
      tokens: [Int32Array.from([4, 9, 9]), Int32Array.from([4, 9])],
      promptLens: Int32Array.from([1, 1]),
    },
    banned: [[1, 2], [7]],
  };
  const p = sampleParams(2, 3);
  const logits = backend.forward(step).slice();
  const rows = [0, 1].map((r) => ({ promptIndex: r }) as unknown as Row);
  processLogits(backend.decoding, logits, V, rows, t, [], 3);
  const host = backend.decoding.sample(logits, 2, V, p);
  const device = backend.forwardSample?.(step, p, t);
  assert.deepEqual(device, host);
});

test("mixed steps queued ahead and fed (prompt chunks and host tokens beside) equal the unfed run", () => {
  const unfed = runMixedSteps(backend);
  const hostTokenOfB = unfed[0].tokens[0];
  for (const placeholder of [0, 57]) {
    const fed = runMixedSteps(backend, { hostTokenOfB, placeholder });
    assert.deepEqual(fed, unfed, `placeholder ${placeholder}`);
  }
});

test("penalties fed from the last ticket equal the complete lists; the placeholder alone differs", () => {
  const enqueue = backend.enqueueSample?.bind(backend);
  const collect = backend.collectSample?.bind(backend);
  assert.ok(enqueue && collect);
  // Step 0: a prompt of two tokens (block 14), sampled; step 1: its decode, fed step 0's token.
  const prefill = {
    tokenIds: Int32Array.from([4, 9]),
    positions: Int32Array.from([0, 1]),
    slotMapping: Int32Array.from([56, 57]),
    seqs: [{ queryStart: 0, queryLen: 2, contextLen: 2, blockTable: Int32Array.from([14]) }],
    logitRows: Int32Array.from([1]),
  };
  const t0 = enqueue(prefill, sampleParams(1, 0), NONE);
  const [x] = collect(t0).tokens;
  const decode = (token: number) => ({
    tokenIds: Int32Array.from([token]),
    positions: Int32Array.from([2]),
    slotMapping: Int32Array.from([58]),
    seqs: [{ queryStart: 0, queryLen: 1, contextLen: 3, blockTable: Int32Array.from([14]) }],
    logitRows: Int32Array.from([0]),
  });
  const placeholder = x === 0 ? 1 : 0;
  const pen = (last: number, fed?: number) => ({
    bias: null,
    banned: null,
    penalties: {
      repetition: Float32Array.from([1.8]),
      presence: Float32Array.from([0.7]),
      frequency: Float32Array.from([0.4]),
      tokens: [Int32Array.from([4, 9, last])],
      promptLens: Int32Array.from([2]),
      fed: fed === undefined ? undefined : Int32Array.from([fed]),
    },
  });
  const fedRow = { from: t0, rows: Int32Array.from([0]) };
  const fed = collect(enqueue(decode(placeholder), sampleParams(1, 1), pen(placeholder, 0), fedRow));
  const whole = backend.forwardSample?.(decode(x), sampleParams(1, 1), pen(x));
  assert.deepEqual(fed, whole);
  const t2 = enqueue(prefill, sampleParams(1, 0), NONE);
  collect(t2);
  const missed = collect(
    enqueue(decode(placeholder), sampleParams(1, 1), pen(placeholder), {
      from: t2,
      rows: Int32Array.from([0]),
    }),
  );
  assert.notDeepEqual(missed.logProbs, fed.logProbs, "the newest token's penalty must show");
  // A fed penalty row needs a feed: forwardSample has none.
  assert.throws(() => backend.forwardSample?.(decode(x), sampleParams(1, 1), pen(x, 0)), TokenFeedError);
});

test("a feed that breaks the rule throws TokenFeedError before the step runs or is queued", () => {
  const step = {
    tokenIds: Int32Array.from([4, 9, 0]),
    positions: Int32Array.from([0, 1, 5]),
    slotMapping: Int32Array.from([60, 61, 40]),
    seqs: [
      { queryStart: 0, queryLen: 2, contextLen: 2, blockTable: Int32Array.from([15]) },
      { queryStart: 2, queryLen: 1, contextLen: 6, blockTable: Int32Array.from([9, 10]) },
    ],
    logitRows: Int32Array.from([1, 2]),
  };
  const enqueue = backend.enqueueSample?.bind(backend);
  const collect = backend.collectSample?.bind(backend);
  assert.ok(enqueue && collect);
  const t0 = enqueue(step, sampleParams(2, 0), NONE);
  for (const rows of [
    [0, -1], // a prompt chunk fed
    [-1, 2], // a row ticket 0 does not have
    [-1], // one row for two sequences
  ])
    assert.throws(
      () => enqueue(step, sampleParams(2, 1), NONE, { from: t0, rows: Int32Array.from(rows) }),
      TokenFeedError,
    );
  const t1 = enqueue(step, sampleParams(2, 1), NONE, { from: t0, rows: Int32Array.from([-1, 1]) });
  assert.equal(t1.id, t0.id + 1, "the rejected steps took no ticket");
  // Only the last queued ticket feeds, collected or not.
  assert.throws(
    () => enqueue(step, sampleParams(2, 2), NONE, { from: t0, rows: Int32Array.from([-1, 0]) }),
    TokenFeedError,
  );
  assert.throws(() => collect(t1), /collecting ticket .* but .* is next/);
  collect(t0);
  collect(t1);
  const t2 = enqueue(step, sampleParams(2, 2), NONE, { from: t1, rows: Int32Array.from([-1, 0]) });
  assert.throws(() => collect(t1), /collecting ticket/, "a ticket is collected once");
  // A third ticket with two outstanding drops them (an abandoned generation), as on the device.
  const t3 = enqueue(step, sampleParams(2, 3), NONE);
  const t4 = enqueue(step, sampleParams(2, 4), NONE);
  assert.throws(() => collect(t2), /collecting ticket/);
  assert.throws(() => collect(t3), /collecting ticket/);
  assert.equal(collect(t4).tokens.length, 2);
});

test("enqueueForward / collectForward: forward's logits; one ticket outstanding, queuing drops it", () => {
  const step = {
    tokenIds: Int32Array.from([3, 8, 5]),
    positions: Int32Array.from([0, 1, 2]),
    slotMapping: Int32Array.from([52, 53, 54]),
    seqs: [{ queryStart: 0, queryLen: 3, contextLen: 3, blockTable: Int32Array.from([13]) }],
    logitRows: Int32Array.from([1, 2]),
  };
  const enqueue = backend.enqueueForward?.bind(backend);
  const collect = backend.collectForward?.bind(backend);
  assert.ok(enqueue && collect);
  assert.equal(backend.forwardReady, undefined, "the CPU runs the step when queued: nothing to poll");
  const want = backend.forward(step).slice();
  const t = enqueue(step);
  assert.equal(t.rows, 2);
  assert.deepEqual(collect(t), want);
  assert.throws(() => collect(t), /not outstanding/, "a ticket is collected once");
  const dropped = enqueue(step);
  const kept = enqueue(step);
  assert.throws(() => collect(dropped), /not outstanding/);
  assert.deepEqual(collect(kept), want);
});
