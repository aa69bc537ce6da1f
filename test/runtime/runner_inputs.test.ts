// What the public API does with inputs it cannot use, on a tiny engine: misspelt option keys in every
// options object, prompts that are neither text nor ids, temperatures too small for float32, and a
// checkpoint whose weights hold NaN. Each is a named error, never ignored or turned into garbage.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { buildEngine } from "../../src/builder/builder.ts";
import { InvalidPromptError, NonFiniteLogitsError, UnknownOptionError } from "../../src/runtime/errors.ts";
import { GenerationSession } from "../../src/runtime/generation_session.ts";
import { type GenerateOptions, ModelRunner, type RunnerOptions } from "../../src/runtime/model_runner.ts";
import type { SequenceView } from "../../src/sampling/logits_processor.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const unknown = (what: string, key: string, suggestion: string) => (e: unknown) =>
  e instanceof UnknownOptionError &&
  e.key === key &&
  e.message === `${what} has no option "${key}"; did you mean "${suggestion}"?`;

describe("runner inputs", () => {
  const model = writeTinyModel("llama", 5);
  const cache = tempCache();
  after(() => {
    model.cleanup();
    cache.cleanup();
  });
  const dir = join(model.dir, "engine");
  buildEngine(model.dir, dir, { kvBlockSize: 4 });
  const runner = ModelRunner.fromEngine(dir);
  after(() => runner.dispose());
  const prompt = { ids: [5, 6, 7] };

  test("a misspelt GenerateOptions key is refused with the nearest known key", async () => {
    const opts = { maxNewTokns: 5 } as GenerateOptions;
    await assert.rejects(
      runner.generate(prompt, opts),
      unknown("GenerateOptions", "maxNewTokns", "maxNewTokens"),
    );
    await assert.rejects(runner.stream(prompt, opts).next(), UnknownOptionError);
    // Keys of each part of GenerateOptions are known: SamplingConfig, DecodeOptions and its own.
    const [out] = await runner.generate(prompt, {
      maxNewTokens: 2,
      seed: 1,
      signal: undefined,
      ignoreEos: true,
    });
    assert.equal(out.outputIds.length, 2);
    await assert.rejects(
      runner.generate(prompt, { ignoreEOS: true } as GenerateOptions),
      unknown("GenerateOptions", "ignoreEOS", "ignoreEos"),
    );
  });

  test("RunnerOptions, its kvCache and GenerationSession's options refuse unknown keys", () => {
    assert.throws(
      () => ModelRunner.fromDir(model.dir, { cacheDri: cache.dir } as RunnerOptions),
      unknown("RunnerOptions", "cacheDri", "cacheDir"),
    );
    assert.throws(
      () => ModelRunner.fromDir(model.dir, { cacheDir: cache.dir, maxBatchSise: 2 } as RunnerOptions),
      unknown("RunnerOptions", "maxBatchSise", "maxBatchSize"),
    );
    assert.throws(
      () =>
        ModelRunner.fromDir(model.dir, { cacheDir: cache.dir, kvCache: { maxToken: 64 } } as RunnerOptions),
      unknown("KvCacheConfig", "maxToken", "maxTokens"),
    );
    assert.throws(
      () => ModelRunner.fromEngine(dir, undefined, {}, { streamIdleTimeout: 5 } as object),
      unknown("GenerationSessionOptions", "streamIdleTimeout", "streamIdleTimeoutMs"),
    );
    assert.throws(
      () => new GenerationSession(runner.session, {}, { streamIdleTimeoutMS: 5 } as object),
      unknown("GenerationSessionOptions", "streamIdleTimeoutMS", "streamIdleTimeoutMs"),
    );
  });

  test("cudaTuning is a RunnerOptions key (a CPU runner ignores it); a misspelling is refused", () => {
    const cpu = ModelRunner.fromDir(model.dir, {
      cacheDir: cache.dir,
      cudaTuning: cudaTuning({ graphs: false }),
    });
    cpu.dispose();
    assert.throws(
      () => ModelRunner.fromDir(model.dir, { cacheDir: cache.dir, cudaTunning: {} } as RunnerOptions),
      unknown("RunnerOptions", "cudaTunning", "cudaTuning"),
    );
  });

  test("streamIdleTimeoutMs must be a whole number of milliseconds", () => {
    for (const bad of [0, -5, 1.5, Number.NaN]) {
      assert.throws(
        () => ModelRunner.fromEngine(dir, undefined, {}, { streamIdleTimeoutMs: bad }),
        new RegExp(`streamIdleTimeoutMs must be a whole number of milliseconds ≥ 1, got ${bad}`),
      );
    }
  });

  test("a misspelt DecodeOptions key is refused by GenerationSession.decode", async () => {
    await assert.rejects(
      runner.generation.decode([prompt.ids], { maxNewTokens: 2 }, { signl: undefined } as object),
      unknown("DecodeOptions", "signl", "signal"),
    );
  });

  test("a prompt that is neither text nor ids is a named error saying what a prompt may be", async () => {
    for (const bad of [null, 42, [null], [{ ids: [1] }, 7], { ids: "1,2" }]) {
      await assert.rejects(
        runner.generate(bad as never, { maxNewTokens: 1 }),
        (e: unknown) =>
          e instanceof InvalidPromptError && /a prompt must be text or \{ ids: number\[\] \}/.test(e.message),
        `prompt ${JSON.stringify(bad)}`,
      );
    }
  });

  test("a temperature too small for float32 decodes greedily, with finite log-probs", async () => {
    const opts = { maxNewTokens: 8, ignoreEos: true };
    const [greedy] = await runner.generate(prompt, { ...opts, greedy: true });
    for (const temperature of [1e-300, 1e-45, 1e-6]) {
      const [tiny] = await runner.generate(prompt, { ...opts, temperature, seed: 3 });
      assert.deepEqual(tiny.outputIds, greedy.outputIds, `temperature ${temperature}`);
      assert.deepEqual(tiny.logProbs, greedy.logProbs, `temperature ${temperature}`);
    }
  });

  test("NaN logits name the step, the prompt and the sequence they appear in", async () => {
    // A processor sees one sequence's row at a time (the executor's rows), with its batch indices.
    const nanInRow1AtStep2 = {
      process(logits: Float32Array, _V: number, rows: readonly SequenceView[], step: number) {
        if (step === 2 && rows[0].promptIndex === 0 && rows[0].sequenceIndex === 1) logits[7] = Number.NaN;
      },
    };
    await assert.rejects(
      runner.generate([{ ids: [3] }, { ids: [4] }], {
        maxNewTokens: 4,
        temperature: 0.7,
        numReturnSequences: 2,
        logitsProcessors: nanInRow1AtStep2,
      }),
      (e: unknown) =>
        e instanceof NonFiniteLogitsError &&
        e.message.startsWith("the model's logits at generation step 2 (prompt 0, sequence 1) are NaN"),
    );
  });
});

describe("a checkpoint with NaN weights", () => {
  // The tiny llama with one NaN in the final norm: every logit comes out NaN.
  const model = writeTinyModel("llama", 5, { nanIn: "model.norm.weight" });
  after(model.cleanup);
  const dir = join(model.dir, "engine");
  buildEngine(model.dir, dir, { kvBlockSize: 4 });
  const runner = ModelRunner.fromEngine(dir);
  after(() => runner.dispose());

  for (const [mode, opts] of [
    ["greedy", { greedy: true }],
    ["sampling", { temperature: 0.8, topK: 5, seed: 1 }],
    ["with penalties", { greedy: true, repetitionPenalty: 1.2 }],
  ] as [string, GenerateOptions][]) {
    test(`${mode}: NonFiniteLogitsError naming the step and sequence, not token 0 with a NaN log-prob`, async () => {
      await assert.rejects(
        runner.generate([{ ids: [1, 2] }, { ids: [3] }], { ...opts, maxNewTokens: 4 }),
        (e: unknown) =>
          e instanceof NonFiniteLogitsError &&
          e.step === 0 &&
          e.promptIndex === 0 &&
          /step 0 \(prompt 0, sequence 0\) are NaN or infinite.*weights probably hold NaN\/inf/.test(
            e.message,
          ),
      );
    });
  }

  test("beam search: NonFiniteLogitsError", async () => {
    await assert.rejects(
      runner.generate({ ids: [3] }, { beamWidth: 2, maxNewTokens: 3 }),
      NonFiniteLogitsError,
    );
  });
});
