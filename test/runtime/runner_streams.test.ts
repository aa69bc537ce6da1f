// ModelRunner's steps and streams over the executor, on the bundled model: the steps of a batch
// whose sequences end at different steps (token and text stop words, a criterion, min length, the
// context window) add up to exactly what generate returns; an abort after one sample finished leaves
// the next call exact; and the backend's own decoding (its sample queue, as CUDA's) gives what the
// host path gives, non-finite log-probs included.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { ExecutionBackend, SampleTicket } from "../../src/backends/backend.ts";
import { NonFiniteLogitsError } from "../../src/runtime/errors.ts";
import { type GenerateOptions, ModelRunner } from "../../src/runtime/model_runner.ts";
import type { RequestOutput, StepOutput } from "../../src/runtime/outputs.ts";
import type { StoppingCriteria } from "../../src/sampling/logits_processor.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const MODEL = fileURLToPath(new URL("../../models/default", import.meta.url));

const DEVICE_DECODING = ["forwardSample", "enqueueSample", "collectSample"] as const;

/** Hides the backend's device-side decoding (forwardSample and the sample queue), so every step's
 * logits come to the host and are decoded there. Returns the undo. */
function hostDecodingOnly(backend: ExecutionBackend): () => void {
  const b = backend as unknown as Record<string, unknown>;
  for (const k of DEVICE_DECODING) b[k] = undefined;
  return () => {
    for (const k of DEVICE_DECODING) delete b[k];
  };
}

/** Counts the steps the backend decodes itself (its sample queue, which forwardSample also goes
 * through); `poison(collection)` names rows whose log-prob reads NaN, as non-finite logits make it
 * on the device. */
function watchDeviceDecoding(
  backend: ExecutionBackend,
  poison: (call: number) => readonly number[] = () => [],
) {
  const b = backend as unknown as Record<string, unknown>;
  const enqueue = backend.enqueueSample?.bind(backend);
  const collect = backend.collectSample?.bind(backend);
  assert.ok(enqueue && collect, "the CPU backend has a sample queue");
  const stats = { calls: 0 };
  b.enqueueSample = (...args: Parameters<typeof enqueue>) => {
    stats.calls++;
    return enqueue(...args);
  };
  let collected = 0;
  b.collectSample = (ticket: SampleTicket) => {
    const r = collect(ticket);
    const rows = poison(collected++);
    if (rows.length === 0) return r;
    const logProbs = r.logProbs.slice();
    for (const row of rows) logProbs[row] = Number.NaN;
    return { tokens: r.tokens, logProbs };
  };
  const uninstall = () => {
    delete b.enqueueSample;
    delete b.collectSample;
  };
  return { stats, uninstall };
}

describe("runner steps and streams", () => {
  const cache = tempCache();
  const runner = ModelRunner.fromDir(MODEL, { cacheDir: cache.dir });
  after(() => {
    runner.dispose();
    cache.cleanup();
  });
  const prompts = ["ROMEO:\n", "JULIET:\nO ", "First Citizen:\nBefore we proceed"];
  const strip = (outs: readonly RequestOutput[]) =>
    outs.map((o) =>
      o.sequences.map((s) => ({ ids: s.outputIds, lp: s.logProbs, why: s.finishReason, text: s.text })),
    );

  /** Every step a stream yields and what it returns. */
  async function stepsOf(r: ModelRunner, input: string | string[], o: GenerateOptions) {
    const it = r.steps(input, o);
    const steps: StepOutput[] = [];
    for (;;) {
      const x = await it.next();
      if (x.done) return { steps, result: x.value };
      steps.push(x.value);
    }
  }

  /** Checks that the steps add up to the result: step s holds token s of each sequence still running,
   * prompt by prompt, then by sample; per sequence, the ids, text and finish reason of its output. */
  function assertStepsMatch(steps: StepOutput[], result: RequestOutput[]) {
    steps.forEach((s, i) => {
      assert.equal(s.step, i);
      const want = result.flatMap((r, p) =>
        r.sequences.flatMap((q, k) => (q.outputIds.length > i ? [[p, k, q.outputIds[i]]] : [])),
      );
      assert.deepEqual(
        s.tokens.map((e) => [e.promptIndex, e.sequenceIndex, e.tokenId]),
        want,
        `step ${i}`,
      );
    });
    result.forEach((r, p) => {
      r.sequences.forEach((q, k) => {
        const mine = steps.flatMap((s) =>
          s.tokens.filter((e) => e.promptIndex === p && e.sequenceIndex === k),
        );
        assert.equal(mine.map((e) => e.text).join(""), q.text, `text of ${p}/${k}`);
        assert.deepEqual(
          mine.map((e) => e.finishReason),
          [...Array(mine.length - 1).fill(null), q.finishReason],
        );
      });
    });
  }

  test("samples that end at different steps (token and text stop words, a criterion) stream their outputs", async () => {
    const base = {
      temperature: 0.8,
      topK: 30,
      seed: 11,
      maxNewTokens: 16,
      ignoreEos: true,
      numReturnSequences: 3,
    };
    const two = prompts.slice(0, 2);
    const free = await runner.generate(two, base);
    const stopIds = free[0].sequences[1].outputIds.slice(3, 5);
    const text = free[1].sequences[0].text;
    const stopText = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    const third: StoppingCriteria = {
      shouldStop: (q) => q.promptIndex === 0 && q.sequenceIndex === 2 && q.outputIds.length >= 6,
    };
    const o: GenerateOptions = { ...base, stopWords: [stopIds, stopText], stoppingCriteria: third };
    const { steps, result } = await stepsOf(runner, two, o);
    assertStepsMatch(steps, result);
    assert.deepEqual(strip(result), strip(await runner.generate(two, o)));
    const lens = result.flatMap((r) => r.sequences.map((q) => q.outputIds.length));
    assert.ok(
      lens.some((n) => n < 16) && lens.some((n) => n === 16),
      `samples end at different steps: ${lens}`,
    );
    assert.equal(result[0].sequences[2].outputIds.length, 6, "the criterion saw its prompt and sample index");
    assert.ok(result.some((r) => r.sequences.some((q) => q.finishReason === "stop")));
  });

  test("sequences that finish at different steps (stop words, a StoppingCriteria, min length)", async () => {
    const [g] = await runner.generate(prompts[0], { greedy: true, maxNewTokens: 20, ignoreEos: true });
    const stopSecond: StoppingCriteria = {
      shouldStop: (s) => s.promptIndex === 1 && s.outputIds.length >= 7,
    };
    const o: GenerateOptions = {
      greedy: true,
      maxNewTokens: 20,
      stopWords: [g.outputIds.slice(4, 6)],
      stoppingCriteria: stopSecond,
      minLength: 3,
    };
    const { steps, result } = await stepsOf(runner, prompts, o);
    assertStepsMatch(steps, result);
    const lens = result.map((p) => p.sequences[0].outputIds.length);
    assert.equal(lens[0], 6, "prompt 0 ends at its stop word");
    assert.equal(lens[1], 7, "prompt 1 ends at the StoppingCriteria");
  });

  test("a sequence at the context window leaves while the others go on", async () => {
    const short = ModelRunner.fromDir(MODEL, { cacheDir: cache.dir, maxSeqLen: 40 });
    try {
      const long = { ids: Array.from({ length: 35 }, (_, i) => 3 + (i % 50)) };
      const o: GenerateOptions = { greedy: true, maxNewTokens: 12, ignoreEos: true };
      const both = await short.generate([long, { ids: [3, 4, 5] }], o);
      assert.deepEqual(
        both.map((p) => [p.outputIds.length, p.finishReason]),
        [
          [5, "length"],
          [12, "length"],
        ],
      );
      const [alone] = await short.generate(long, o);
      assert.deepEqual(alone.outputIds, both[0].outputIds);
    } finally {
      short.dispose();
    }
  });

  test("an abort after a forked sample finished leaves the next call exact", async () => {
    const o = { temperature: 0.8, seed: 9, maxNewTokens: 6, ignoreEos: true, numReturnSequences: 2 };
    const before = await runner.generate(prompts[2], o);
    const ac = new AbortController();
    const first: StoppingCriteria = { shouldStop: (q) => q.sequenceIndex === 0 && q.outputIds.length >= 2 };
    let n = 0;
    await assert.rejects(async () => {
      for await (const e of runner.stream(prompts.slice(0, 2), {
        temperature: 0.8,
        seed: 5,
        maxNewTokens: 30,
        ignoreEos: true,
        numReturnSequences: 2,
        stoppingCriteria: first,
        signal: ac.signal,
      })) {
        if (e.promptIndex === 1 && e.sequenceIndex === 1 && ++n === 4) ac.abort();
      }
    }, /abort/i);
    assert.deepEqual(strip(await runner.generate(prompts[2], o)), strip(before));
    assert.equal(runner.generation.stats()?.kv.numUsed, 0);
  });

  test("the backend's own decoding gives what the host path gives", async () => {
    for (const [input, o] of [
      [prompts, { greedy: true, maxNewTokens: 14, ignoreEos: true }],
      [
        prompts.slice(0, 2),
        {
          temperature: 0.8,
          topK: 30,
          topP: 0.9,
          seed: 7,
          maxNewTokens: 10,
          ignoreEos: true,
          numReturnSequences: 3,
        },
      ],
      [prompts.slice(0, 2), { greedy: true, maxNewTokens: 8, ignoreEos: true, repetitionPenalty: 1.3 }],
      [
        prompts.slice(0, 2),
        { temperature: 0.9, seed: 3, maxNewTokens: 8, ignoreEos: true, topPDecay: 0.9, topP: 0.9 },
      ],
    ] as [string[], GenerateOptions][]) {
      const undo = hostDecodingOnly(runner.session.backend);
      let plain: RequestOutput[];
      try {
        plain = await runner.generate(input, o);
      } finally {
        undo();
      }
      const emu = watchDeviceDecoding(runner.session.backend);
      try {
        const fused = await runner.generate(input, o);
        assert.deepEqual(strip(fused), strip(plain), JSON.stringify(o));
        assert.ok(emu.stats.calls > 0, "the backend decoded steps itself");
      } finally {
        emu.uninstall();
      }
    }
  });

  test("non-finite log-probs from the backend's decoding raise NonFiniteLogitsError naming the row's sequence", async () => {
    // Token 0 is sampled on the host (each prompt's row fans out to its 2 samples); fused call c then
    // samples token c + 1 of 2 prompts × 2 samples, whose row 2 is prompt 1, sample 0.
    const emu = watchDeviceDecoding(runner.session.backend, (c) => (c === 2 ? [2] : []));
    try {
      const o = { temperature: 0.8, seed: 5, maxNewTokens: 10, ignoreEos: true, numReturnSequences: 2 };
      await assert.rejects(
        runner.generate(prompts.slice(0, 2), o),
        (e: unknown) =>
          e instanceof NonFiniteLogitsError && e.step === 3 && e.promptIndex === 1 && e.sequenceIndex === 0,
      );
    } finally {
      emu.uninstall();
    }
    const [out] = await runner.generate(prompts[0], { greedy: true, maxNewTokens: 3, ignoreEos: true });
    assert.equal(out.outputIds.length, 3, "the runner goes on");
  });
});
