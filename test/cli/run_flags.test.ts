// Every decoding flag of `kiln run` reaches the library: for each flag, `kiln run --json` with it gives
// what ModelRunner.generate gives with the same field, and that differs from the run without the flag
// (so a flag the CLI dropped would fail). One CLI spawn per case; the library calls share one runner.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { defaultModelDir } from "../../src/cli/args.ts";
import { ChatTemplate, encodeChat } from "../../src/runtime/chat_template.ts";
import { type GenerateOptions, ModelRunner, type Prompt } from "../../src/runtime/model_runner.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

interface FlagCase {
  /** The flags under test (after --prompt PROMPT --max-new-tokens N). */
  args: string[];
  /** The library options the flags stand for. */
  options: GenerateOptions;
  /** Library options whose output the flags must change (what the run gives without them). */
  without: GenerateOptions;
  prompt?: string;
  maxNewTokens?: number;
  /** The library prompt when the CLI's differs from --prompt (--chat). */
  libraryPrompt?: (runner: ModelRunner) => Prompt;
}

const chatIds = (runner: ModelRunner, system?: string): Prompt => ({
  ids: encodeChat(
    runner.tokenizer,
    [...(system ? [{ role: "system", content: system }] : []), { role: "user", content: "ROMEO:" }],
    { template: ChatTemplate.fromDir(defaultModelDir()) },
  ),
});

// Values chosen so that each flag visibly changes the bundled model's tokens for these prompts.
const CASES: Record<string, FlagCase> = {
  "--temperature": { args: ["--temperature", "0.5"], options: { temperature: 0.5 }, without: {} },
  "--top-k": { args: ["--top-k", "5"], options: { topK: 5 }, without: {} },
  "--top-p": { args: ["--top-p", "0.5"], options: { topP: 0.5 }, without: {} },
  "--top-p-decay": { args: ["--top-p-decay", "0.5"], options: { topPDecay: 0.5 }, without: {} },
  "--top-p-min": {
    args: ["--top-p-decay", "0.5", "--top-p-min", "0.5"],
    options: { topPDecay: 0.5, topPMin: 0.5 },
    without: { topPDecay: 0.5 },
  },
  "--top-p-reset-ids": {
    args: ["--top-p-decay", "0.5", "--top-p-reset-ids", "43"],
    options: { topPDecay: 0.5, topPResetIds: 43 },
    without: { topPDecay: 0.5 },
  },
  "--min-p": { args: ["--min-p", "0.2"], options: { minP: 0.2 }, without: {} },
  "--min-length": {
    args: ["--top-p", "0.5", "--min-length", "10"],
    options: { topP: 0.5, minLength: 10 },
    without: { topP: 0.5 },
  },
  "--repetition-penalty": {
    args: ["--repetition-penalty", "1.5"],
    options: { repetitionPenalty: 1.5 },
    without: {},
  },
  "--presence-penalty": {
    args: ["--presence-penalty", "1.5"],
    options: { presencePenalty: 1.5 },
    without: {},
  },
  "--frequency-penalty": {
    args: ["--frequency-penalty", "1.5"],
    options: { frequencyPenalty: 1.5 },
    without: {},
  },
  "--no-repeat-ngram-size": {
    args: ["--greedy", "--no-repeat-ngram-size", "2"],
    options: { greedy: true, noRepeatNgramSize: 2 },
    without: { greedy: true },
  },
  "--seed": { args: ["--seed", "5"], options: { seed: 5 }, without: {} },
  "--random-seed": { args: ["--random-seed", "5"], options: { randomSeed: 5 }, without: {} },
  "--greedy": { args: ["--greedy"], options: { greedy: true }, without: {} },
  "--beam-width": { args: ["--beam-width", "3"], options: { beamWidth: 3 }, without: {} },
  "--length-penalty": {
    args: ["--beam-width", "3", "--length-penalty", "2"],
    options: { beamWidth: 3, lengthPenalty: 2 },
    without: { beamWidth: 3 },
  },
  "--early-stopping (alone)": {
    prompt: "JULIET:",
    maxNewTokens: 8,
    args: ["--early-stopping", "--beam-width", "2"],
    options: { beamWidth: 2, earlyStopping: true },
    without: { beamWidth: 2 },
  },
  "--early-stopping false": {
    prompt: "JULIET:",
    maxNewTokens: 8,
    args: ["--beam-width", "2", "--early-stopping", "false"],
    options: { beamWidth: 2, earlyStopping: false },
    without: { beamWidth: 2, earlyStopping: true },
  },
  "--early-stopping never": {
    prompt: "First Citizen:",
    maxNewTokens: 16,
    args: ["--beam-width", "2", "--early-stopping", "never"],
    options: { beamWidth: 2, earlyStopping: "never" },
    without: { beamWidth: 2 },
  },
  "--beam-search-diversity-rate": {
    args: ["--beam-width", "3", "--beam-search-diversity-rate", "2"],
    options: { beamWidth: 3, beamSearchDiversityRate: 2 },
    without: { beamWidth: 3 },
  },
  "--num-return-sequences": {
    args: ["--num-return-sequences", "3"],
    options: { numReturnSequences: 3 },
    without: {},
  },
  "--stop-words (text)": {
    args: ["--greedy", "--stop-words", "gentleman"],
    options: { greedy: true, stopWords: ["gentleman"] },
    without: { greedy: true },
  },
  "--stop-words (ids)": {
    args: ["--greedy", "--stop-words", "ids:14"],
    options: { greedy: true, stopWords: [[14]] },
    without: { greedy: true },
  },
  "--bad-words (text, repeated)": {
    args: ["--greedy", "--bad-words", "gentleman", "--bad-words", "ids:49"],
    options: { greedy: true, badWords: ["gentleman", [49]] },
    without: { greedy: true },
  },
  "--embedding-bias": {
    args: ["--greedy", "--embedding-bias", "500:100,7:-1"],
    options: { greedy: true, embeddingBias: { 500: 100, 7: -1 } },
    without: { greedy: true },
  },
  "--end-id": {
    args: ["--greedy", "--end-id", "14,99"],
    options: { greedy: true, endId: [14, 99] },
    without: { greedy: true },
  },
  "--ignore-eos": {
    args: ["--top-p", "0.5", "--ignore-eos"],
    options: { topP: 0.5, ignoreEos: true },
    without: { topP: 0.5 },
  },
  "--return-context-logits": {
    maxNewTokens: 2,
    args: ["--greedy", "--return-context-logits"],
    options: { greedy: true, returnContextLogits: true },
    without: { greedy: true },
  },
  "--return-generation-logits": {
    maxNewTokens: 2,
    args: ["--greedy", "--return-generation-logits"],
    options: { greedy: true, returnGenerationLogits: true },
    without: { greedy: true },
  },
  "--no-special-tokens": {
    args: ["--no-special-tokens"],
    options: { addSpecialTokens: false },
    without: {},
  },
  "--chat": { args: ["--chat"], options: {}, without: {}, libraryPrompt: (r) => chatIds(r) },
  "--system": {
    args: ["--chat", "--system", "You are a king."],
    options: {},
    without: {},
    libraryPrompt: (r) => chatIds(r, "You are a king."),
  },
};

// Flags of `kiln run` that are not decoding settings; every other flag needs a case above.
const NOT_DECODING = [
  "--model",
  "--prompt",
  "--input-ids",
  "--max-new-tokens", // in every case
  "--pad-id", // nothing to see in one prompt's output: tested by its error below
  "--chat-template", // test/cli/run_validation.test.ts
  "--dtype",
  "--quantize", // test/cli/quantize_flags.test.ts
  "--calibration", // test/cli/calibration_flags.test.ts
  "--calibration-tokens", // test/cli/calibration_flags.test.ts
  "--backend",
  "--cache-dir",
  "--random-weights",
  "--json",
  "--kv-cache-free-gpu-mem-fraction",
  "--max-kv-tokens",
  "--kv-cache-dtype", // test/cli/kv_cache_flags.test.ts, test/runtime/fp8_kv_cache.test.ts
  "--verbose",
  "--help",
];

/** What a run returned, without where its engine came from (a cache hit or a build). */
function result(o: Record<string, unknown> & { sequences: Record<string, unknown>[] }) {
  const pick = (x: Record<string, unknown>, keys: string[]) =>
    Object.fromEntries(keys.filter((k) => x[k] !== undefined).map((k) => [k, x[k]]));
  return {
    ...pick(o, ["outputIds", "logProbs", "text", "finishReason"]),
    contextLogits: o.contextLogits ? Array.from(o.contextLogits as ArrayLike<number>) : undefined,
    generationLogits: o.generationLogits
      ? (o.generationLogits as ArrayLike<number>[]).map((g) => Array.from(g))
      : undefined,
    sequences: o.sequences.map((s) => pick(s, ["outputIds", "text", "cumLogProb", "score", "finishReason"])),
  };
}

describe("kiln run: each decoding flag reaches SamplingConfig (bundled model)", () => {
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  let runner: ModelRunner;
  before(() => {
    runner = ModelRunner.fromDir(defaultModelDir(), { cacheDir: cache.dir });
  });
  after(() => {
    runner.dispose();
    cache.cleanup();
  });
  const library = async (prompt: Prompt, options: GenerateOptions) => {
    const [out] = await runner.generate(prompt, options);
    return result(out as unknown as Parameters<typeof result>[0]);
  };

  test("the CLI's defaults are the library's (prompt ROMEO:, seed 0)", async () => {
    const r = kiln(["run", "--json", "--max-new-tokens", "12"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(result(JSON.parse(r.stdout)), await library("ROMEO:", { maxNewTokens: 12 }));
  });

  for (const [name, c] of Object.entries(CASES)) {
    test(name, async () => {
      const prompt = c.prompt ?? "ROMEO:";
      const maxNewTokens = c.maxNewTokens ?? 12;
      const r = kiln(
        ["run", "--json", "--prompt", prompt, "--max-new-tokens", String(maxNewTokens), ...c.args],
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      const libPrompt = c.libraryPrompt ? c.libraryPrompt(runner) : prompt;
      const expected = await library(libPrompt, { maxNewTokens, ...c.options });
      const without = await library(prompt, { maxNewTokens, ...c.without });
      assert.notDeepEqual(expected, without, `${name} must change the output for this case`);
      assert.deepEqual(result(JSON.parse(r.stdout)), expected);
    });
  }

  test("every decoding flag of kiln run has a case above", () => {
    const help = kiln(["run", "--help"], env);
    assert.equal(help.code, 0, help.stderr);
    const flags = [...help.stdout.matchAll(/^ {2}(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]);
    assert.ok(flags.includes("--no-repeat-ngram-size"), help.stdout);
    const covered = new Set(Object.values(CASES).flatMap((c) => c.args.filter((a) => a.startsWith("--"))));
    const missing = flags.filter((f) => !covered.has(f) && !NOT_DECODING.includes(f));
    assert.deepEqual(missing, [], "flags without a test that shows their effect");
  });

  test("--pad-id arrives (an id outside the vocabulary is refused) and warns it cannot apply", () => {
    const r = kiln(["run", "--json", "--max-new-tokens", "1", "--pad-id", "99999"], env);
    assertUserError(
      r,
      "TokenIdOutOfRangeError",
      /padId: token id 99999 is out of range for this model.s vocabulary of \d+ ids/,
    );
    const ok = kiln(["run", "--json", "--max-new-tokens", "1", "--pad-id", "2"], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /^kiln: warning: --pad-id has no effect: .*\n$/);
  });

  test("beam search returns scored sequences, best first", () => {
    const r = kiln(
      ["run", "--json", "--beam-width", "4", "--num-return-sequences", "3", "--max-new-tokens", "10"],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.sequences.length, 3);
    const scores = out.sequences.map((s: { score: number }) => s.score);
    assert.deepEqual(
      [...scores].sort((a, b) => b - a),
      scores,
    );
    assert.deepEqual(out.outputIds, out.sequences[0].outputIds);
  });

  test("invalid sampling flags are named errors", () => {
    const run = (...args: string[]) => kiln(["run", "--json", ...args], env);
    assertUserError(run("--embedding-bias", "13=4"), "InvalidArgumentError", /--embedding-bias.*13=4/);
    assertUserError(run("--early-stopping", "maybe"), "InvalidArgumentError", /--early-stopping.*maybe/);
    assertUserError(run("--top-p", "0"), "InvalidSamplingConfigError", /topP.*\(0, 1\]/);
    assertUserError(
      run("--beam-width", "2", "--temperature", "0.5"),
      "InvalidSamplingConfigError",
      /conflicts with beamWidth/,
    );
    assertUserError(
      run("--greedy", "--num-return-sequences", "2"),
      "InvalidSamplingConfigError",
      /numReturnSequences/,
    );
    assertUserError(
      run("--no-repeat-ngram-size", "-1"),
      "InvalidArgumentError",
      /--no-repeat-ngram-size expects an integer ≥ 0, got "-1"/,
    );
  });
});
