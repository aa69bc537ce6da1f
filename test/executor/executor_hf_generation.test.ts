// Hugging Face `generate` fidelity of the executor: every case of the runtime's HF fixtures (greedy
// with each deterministic transform, and beam search: widths 2 and 4, length penalties, early
// stopping true/false/"never", several returned sequences) enqueued at once, so beams run in flight
// beside each other and beside greedy rows, returns HF's sequences, finish states and beam scores
// (within 1e-4, as test/runtime/hf_generation.test.ts). Fixtures: tools/make_generation_fixtures.py.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Executor, type ExecutorRequest } from "../../src/executor/executor.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { Session } from "../../src/runtime/session.ts";
import { tempCache } from "../helpers/tiny_model.ts";
import { assertIdle } from "./executor_helpers.ts";
import { collectGroup } from "./group_helpers.ts";

interface GenCase {
  name: string;
  promptIds: number[];
  kiln: Omit<ExecutorRequest, "prompt">;
  sequences: number[][];
  scores?: number[];
  finished: boolean[];
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DIR = join(ROOT, "test/fixtures/generation");

for (const file of readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort()) {
  const fx = JSON.parse(readFileSync(join(DIR, file), "utf8"));
  const cases = fx.cases as GenCase[];
  if (!cases.some((c) => (c.kiln.beamWidth ?? 1) > 1)) continue;
  describe(`HF generate through the executor: ${file}`, () => {
    const cache = tempCache();
    const runner = ModelRunner.fromDir(join(ROOT, fx.model), { cacheDir: cache.dir });
    after(() => {
      runner.dispose();
      cache.cleanup();
    });
    test(`all ${cases.length} cases in flight together`, async () => {
      const ex = new Executor(Session.open(runner.engine.dir), { maxNumTokens: 64, maxNumSeqs: 32 });
      try {
        const ids = cases.map((c) => ex.enqueue({ prompt: c.promptIds, ...c.kiln, endId: fx.eosIds }));
        const got = await Promise.all(ids.map((id) => collectGroup(ex, id)));
        cases.forEach((c, i) => {
          const seqs = got[i].seqs;
          assert.deepEqual(
            seqs.map((s) => s.tokens),
            c.sequences,
            `${c.name}: sequences`,
          );
          seqs.forEach((s, k) =>
            assert.equal(s.finishReason === "end", c.finished[k], `${c.name}: finish ${k}`),
          );
          c.scores?.forEach((want, k) => {
            const score = seqs[k].score as number;
            assert.ok(Math.abs(score - want) <= 1e-4, `${c.name}: score ${k}: ${score} vs ${want}`);
          });
        });
        assertIdle(ex);
      } finally {
        await ex.shutdown();
      }
    });
  });
}
