// The executor's per-request options beyond sampling, each against ModelRunner.generate with the same
// option on the tiny CPU engine: embedding bias, cumulative log-probs, generation logits, the user's
// LogitsProcessor and StoppingCriteria (a throwing one ends only its own request), the client id, and
// context logits rejected by name. After every test the idle invariant holds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { RequestCallbackError } from "../../src/executor/errors.ts";
import type { LogitsProcessor, SequenceView, StoppingCriteria } from "../../src/sampling/logits_processor.ts";
import { collect, tinyEngineExecutors } from "./executor_helpers.ts";

const { runner, executor } = tinyEngineExecutors({ maxNumTokens: 8 });

function prompt(i: number, len: number): number[] {
  return Array.from({ length: len }, (_, k) => (i * 17 + k * 7 + 3) % 61);
}

const BASE = { maxNewTokens: 8, endId: [] as number[] };

/** Bans `every`-th step's favourite: a processor whose effect depends on its row and its step. */
class BanEvenIds implements LogitsProcessor {
  seen: { rows: number; promptIds: readonly number[]; step: number }[] = [];
  process(logits: Float32Array, V: number, seqs: readonly SequenceView[], step: number): void {
    this.seen.push({ rows: seqs.length, promptIds: seqs[0].promptIds, step });
    for (let r = 0; r < seqs.length; r++)
      for (let v = step % 2; v < V; v += 2) logits[r * V + v] = Number.NEGATIVE_INFINITY;
  }
}

const stopAt = (n: number): StoppingCriteria => ({ shouldStop: (s) => s.outputIds.length >= n });
const throwing = (what: string) => () => {
  throw new Error(`${what} broke`);
};

test("embeddingBias per request: rows with different biases each equal generate alone", async () => {
  const ex = executor();
  const free = (await runner.generate({ ids: prompt(1, 7) }, { ...BASE, greedy: true }))[0].outputIds;
  const biases = [{ [(free[0] + 1) % 61]: 50 }, null, { 5: 3, 9: -2, [free[1]]: -100 }];
  const ids = biases.map((b, i) =>
    ex.enqueue({
      prompt: prompt(1, 7),
      ...BASE,
      greedy: i !== 2,
      seed: 3,
      ...(b ? { embeddingBias: b } : {}),
    }),
  );
  const got = await Promise.all(ids.map((id) => collect(ex, id)));
  for (const [i, b] of biases.entries()) {
    const [want] = await runner.generate(
      { ids: prompt(1, 7) },
      { ...BASE, greedy: i !== 2, seed: 3, embeddingBias: b },
    );
    assert.deepEqual(got[i].tokens, want.outputIds, `request ${i}`);
  }
  assert.notDeepEqual(got[0].tokens, free, "the bias changed nothing");
});

test("cumLogProb: the running sum on every event, equal to generate's", async () => {
  const ex = executor();
  const req = { prompt: prompt(2, 9), ...BASE, temperature: 0.8, seed: 11 };
  const [stream, once] = await Promise.all([
    collect(ex, ex.enqueue({ ...req, streaming: true })),
    collect(ex, ex.enqueue(req)),
  ]);
  const [want] = await runner.generate({ ids: prompt(2, 9) }, { ...BASE, temperature: 0.8, seed: 11 });
  let sum = 0;
  for (const ev of stream.events) {
    for (const lp of ev.logProbs) sum += lp;
    assert.equal(ev.cumLogProb, sum);
  }
  assert.equal(sum, want.sequences[0].cumLogProb);
  assert.equal(once.events.length, 1);
  assert.equal(once.events[0].cumLogProb, sum);
});

test("returnGenerationLogits: the raw logits of each token, as generate returns them", async () => {
  const ex = executor();
  const opts = { ...BASE, greedy: true, embeddingBias: { 4: 7 }, returnGenerationLogits: true };
  const [stream, once] = await Promise.all([
    collect(ex, ex.enqueue({ prompt: prompt(3, 6), ...opts, streaming: true })),
    collect(ex, ex.enqueue({ prompt: prompt(3, 6), ...opts })),
  ]);
  const [want] = await runner.generate({ ids: prompt(3, 6) }, opts);
  const wantLogits = want.generationLogits?.[0] as Float32Array;
  assert.equal(wantLogits.length, 8 * 61);
  const streamed = stream.events.flatMap((ev) => [...(ev.generationLogits as Float32Array)]);
  for (const got of [streamed, [...(once.events[0].generationLogits as Float32Array)]]) {
    assert.equal(got.length, wantLogits.length);
    got.forEach((x, k) =>
      assert.ok(Math.abs(x - wantLogits[k]) < 1e-4, `logit ${k}: ${x} vs ${wantLogits[k]}`),
    );
  }
  assert.deepEqual(stream.tokens, want.outputIds);
  const plain = await collect(ex, ex.enqueue({ prompt: prompt(3, 6), ...BASE, greedy: true }));
  assert.equal(plain.events[0].generationLogits, undefined, "logits returned though not asked for");
});

test("LogitsProcessor and StoppingCriteria: each request's own, equal to generate with them", async () => {
  const ex = executor();
  const mine = new BanEvenIds();
  const a = ex.enqueue({ prompt: prompt(4, 5), ...BASE, greedy: true, logitsProcessors: mine });
  const b = ex.enqueue({ prompt: prompt(5, 6), ...BASE, greedy: true, stoppingCriteria: [stopAt(3)] });
  const c = ex.enqueue({ prompt: prompt(6, 7), ...BASE, temperature: 0.9, seed: 2 });
  const [ga, gb, gc] = await Promise.all([collect(ex, a), collect(ex, b), collect(ex, c)]);
  const ref = new BanEvenIds();
  const [wa] = await runner.generate({ ids: prompt(4, 5) }, { ...BASE, greedy: true, logitsProcessors: ref });
  const [wb] = await runner.generate(
    { ids: prompt(5, 6) },
    { ...BASE, greedy: true, stoppingCriteria: stopAt(3) },
  );
  const [wc] = await runner.generate({ ids: prompt(6, 7) }, { ...BASE, temperature: 0.9, seed: 2 });
  assert.deepEqual(ga.tokens, wa.outputIds);
  assert.ok(
    ga.tokens.every((t, s) => t % 2 !== s % 2),
    "the processor did not run",
  );
  assert.deepEqual(mine.seen, ref.seen, "the processor saw other rows or other steps");
  assert.ok(mine.seen.every((s) => s.rows === 1));
  assert.deepEqual(gb.tokens, wb.outputIds);
  assert.equal(gb.finishReason, "stop");
  assert.equal(gb.tokens.length, 3);
  assert.deepEqual(gc.tokens, wc.outputIds);
});

test("a throwing processor or criterion ends only its own request, with RequestCallbackError", async () => {
  const ex = executor();
  const bad1 = ex.enqueue({
    prompt: prompt(7, 5),
    ...BASE,
    greedy: true,
    logitsProcessors: { process: throwing("p") },
  });
  const bad2 = ex.enqueue({
    prompt: prompt(8, 6),
    ...BASE,
    greedy: true,
    stoppingCriteria: [stopAt(99), { shouldStop: throwing("c") }],
  });
  const good = ex.enqueue({ prompt: prompt(9, 7), ...BASE, greedy: true, streaming: true });
  const results = await Promise.allSettled([collect(ex, bad1), collect(ex, bad2), collect(ex, good)]);
  for (const [i, name] of [
    [0, "logitsProcessors[0]"],
    [1, "stoppingCriteria[1]"],
  ] as const) {
    const r = results[i];
    assert.equal(r.status, "rejected", `request ${i} did not fail`);
    const e = (r as PromiseRejectedResult).reason;
    assert.ok(e instanceof RequestCallbackError, String(e));
    assert.match(
      e.message,
      new RegExp(`request ${[bad1, bad2][i]}: its ${name.replace(/[[\]]/g, "\\$&")} threw`),
    );
    assert.match(String((e.cause as Error).message), /broke/);
  }
  assert.equal(results[2].status, "fulfilled");
  const [want] = await runner.generate({ ids: prompt(9, 7) }, { ...BASE, greedy: true });
  assert.deepEqual((results[2] as PromiseFulfilledResult<{ tokens: number[] }>).value.tokens, want.outputIds);
  // The loop goes on.
  const later = await collect(ex, ex.enqueue({ prompt: prompt(9, 7), ...BASE, greedy: true }));
  assert.deepEqual(later.tokens, want.outputIds);
});

test("clientId is echoed on every event; single-sequence events are sequence 0, the last one final", async () => {
  const ex = executor();
  const got = await collect(
    ex,
    ex.enqueue({ prompt: prompt(1, 4), ...BASE, greedy: true, streaming: true, clientId: "c-7" }),
  );
  assert.equal(got.events.length, 8);
  assert.ok(got.events.every((ev) => ev.clientId === "c-7"));
  const plain = await collect(ex, ex.enqueue({ prompt: prompt(1, 4), ...BASE, greedy: true }));
  assert.ok(!("clientId" in plain.events[0]));
  assert.ok(got.events.every((ev) => ev.sequenceIndex === 0));
  assert.deepEqual(
    got.events.map((ev) => ev.isFinal),
    [...Array(7).fill(false), true],
  );
  assert.deepEqual(
    plain.events.map((ev) => [ev.sequenceIndex, ev.isFinal]),
    [[0, true]],
  );
});

test("SamplingConfig's remaining fields: randomSeed, top-p decay and reset, padId, output switches", async () => {
  const ex = executor();
  const p = prompt(3, 5);
  const sampled = { ...BASE, temperature: 1, topP: 0.9 };
  const run = async (r: object) => collect(ex, ex.enqueue({ prompt: p, ...sampled, ...r }));
  // randomSeed is seed's SamplingConfig name.
  assert.deepEqual((await run({ randomSeed: 5 })).tokens, (await run({ seed: 5 })).tokens);
  // Decay to topPMin makes every later token the greedy continuation.
  const decayed = await run({ seed: 3, topPDecay: 0.01, topPMin: 1e-6 });
  for (const t of [3, 5, 7]) {
    const g = await collect(
      ex,
      ex.enqueue({ ...BASE, prompt: [...p, ...decayed.tokens.slice(0, t)], maxNewTokens: 1, greedy: true }),
    );
    assert.equal(decayed.tokens[t], g.tokens[0], `step ${t}`);
  }
  // Generating the reset id puts topP back at its start: step 1 then samples as without decay.
  const V = runner.session.config.model.vocabSize;
  const plain = await run({ seed: 3 });
  const reset = await run({ seed: 3, topPDecay: 0.01, topPMin: 1e-6, topPResetIds: decayed.tokens[0] });
  assert.deepEqual(reset.tokens.slice(0, 2), plain.tokens.slice(0, 2));
  // padId is validated as a token id; the output switches are accepted (events keep their log-probs).
  assert.throws(() => ex.enqueue({ prompt: p, ...BASE, padId: V }), /padId/);
  const quiet = await run({ seed: 5, outputLogProbs: false, outputCumLogProbs: false });
  assert.equal(quiet.logProbs.length, 8);
});
