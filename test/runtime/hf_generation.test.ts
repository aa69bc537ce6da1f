// Hugging Face `generate` fidelity of the decoding runtime: greedy with each deterministic transform
// (repetition penalty, no-repeat-ngram, min length, bad words, embedding bias) and beam search
// (widths 2 and 4, length penalties, early stopping true/false/"never", several returned sequences)
// return HF's sequences (fp32), with log-probs within 1e-3 and beam scores and cumulative log-probs
// within 1e-4. Fixtures:
// tools/make_generation_fixtures.py, run with transformers 5.17 on the GPU machine.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import type { SamplingConfig } from "../../src/sampling/sampling_config.ts";
import { assertLogProbsNear } from "../helpers/log_probs.ts";
import { tempCache } from "../helpers/tiny_model.ts";

interface GenCase {
  name: string;
  promptText: string;
  promptIds: number[];
  kiln: Partial<SamplingConfig> & { embeddingBias?: Record<string, number> };
  sequences: number[][];
  scores?: number[];
  /** Greedy cases: per step, log-softmax of HF's processed scores at the chosen token. */
  logProbs?: number[];
  /** Beam cases: per sequence, the sum of its tokens' processed log-probs (compute_transition_scores). */
  cumLogProbs?: number[];
  finished: boolean[];
}

// kiln keeps HF's float32 running beam sum; the fixture adds compute_transition_scores' per-step values
// (differences of that float32 sum) in float64. They differ by float32 rounding: at most 16 steps of
// half an ulp of a sum below 64 (4e-6 each), so 1e-4, the beam scores' tolerance, covers it.
const CUM_LOGPROB_TOL = 1e-4;

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DIR = join(ROOT, "test/fixtures/generation");

for (const file of readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort()) {
  const fx = JSON.parse(readFileSync(join(DIR, file), "utf8"));
  describe(`HF generate: ${file}`, () => {
    const cache = tempCache();
    const runner = ModelRunner.fromDir(join(ROOT, fx.model), { cacheDir: cache.dir });
    after(() => {
      runner.dispose();
      cache.cleanup();
    });
    for (const c of fx.cases as GenCase[]) {
      test(`${c.name} ${JSON.stringify(c.promptText)}`, async () => {
        assert.deepEqual(runner.encode(c.promptText), c.promptIds, "prompt tokenization");
        const cfg: Partial<SamplingConfig> = { ...c.kiln, endId: fx.eosIds, padId: fx.padId };
        const [out] = await runner.generate({ ids: c.promptIds }, cfg);
        const got = out.sequences.map((s) => s.outputIds);
        assert.deepEqual(got, c.sequences, "sequences");
        out.sequences.forEach((s, i) =>
          assert.equal(s.finishReason === "end", c.finished[i], `sequence ${i} finish`),
        );
        if (c.scores) {
          assert.equal(out.sequences.length, c.scores.length, "sequences with a score");
          c.scores.forEach((want, i) => {
            const got = out.sequences[i].score as number;
            assert.ok(Math.abs(got - want) <= 1e-4, `score ${i}: ${got} vs ${want}`);
          });
        }
        if (c.cumLogProbs) {
          assert.equal(out.sequences.length, c.cumLogProbs.length, "sequences with a cumulative log-prob");
          c.cumLogProbs.forEach((want, i) => {
            const got = out.sequences[i].cumLogProb;
            assert.ok(Math.abs(got - want) <= CUM_LOGPROB_TOL, `cumLogProb ${i}: ${got} vs ${want}`);
          });
        }
        if (c.logProbs) assertLogProbsNear(out.sequences[0].logProbs, c.logProbs, 1e-3, "greedy log-probs");
      });
    }
  });
}
