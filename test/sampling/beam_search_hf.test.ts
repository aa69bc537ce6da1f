// Golden cases from Hugging Face transformers' own beam search, recorded by tools/make_beam_fixtures.py
// into test/fixtures/beam_search_hf.json (versions in its header): a tiny random Llama (vocab 8, lm_head
// scaled ×30–120 so distributions are peaked), generate(do_sample=False, num_beams 2–5, length_penalty
// ∈ {−0.5, 0, 1, 1.3, 2}, early_stopping ∈ {True, False, "never"}, 1–3 eos ids, max_new_tokens 2–10,
// num_return_sequences ≤ num_beams). Two LogitsProcessors ran last: one adding 0–3 to the eos log-probs
// (so hypotheses end at varied steps), then a recorder storing every log-prob row beam search consumed,
// keyed by the beam's generated tokens. Replaying those rows must give HF's sequences, float32
// sequences_scores, cumulative log-probs and step count exactly — ties included (some rows hold equal
// values; torch.topk's CPU order decides them). A prefix HF never evaluated means the search diverged.
// A case's `rows` is base64 of little-endian float32 rows in `rowKeys` order ([len(rowKeys), vocab]).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { runBeamSearchOnLogProbFn } from "./beam_search_helpers.ts";

interface HfBeamCase {
  promptIds: number[];
  numBeams: number;
  lengthPenalty: number;
  earlyStopping: boolean | "never";
  numReturnSequences: number;
  maxNewTokens: number;
  endIds: number[];
  steps: number;
  sequences: number[][];
  sequencesScores: number[];
  /** Per returned sequence, HF's compute_transition_scores summed (recorded by the generator). */
  cumLogProbs?: number[];
  rowKeys: string[];
  rows: string;
}

interface HfBeamFixture {
  generator: string;
  transformers: string;
  torch: string;
  vocab: number;
  cases: HfBeamCase[];
}

const FIXTURE = fileURLToPath(new URL("../fixtures/beam_search_hf.json", import.meta.url));
const fixture: HfBeamFixture = JSON.parse(readFileSync(FIXTURE, "utf8"));
const V = fixture.vocab;

/**
 * HF's cumulative log-prob of a returned sequence, from the recorded rows: the float32 running sum of
 * each step's row value at the chosen token (beam search adds each row to the beam's float32 score).
 */
function recordedCumLogProb(table: Map<string, Float32Array>, seq: number[]): number {
  let cum = 0;
  seq.forEach((tok, t) => {
    const row = table.get(seq.slice(0, t).join(","));
    if (!row) throw new Error(`fixture: no recorded row for prefix [${seq.slice(0, t)}]`);
    cum = Math.fround(cum + row[tok]);
  });
  return cum;
}

describe("beam search reproduces transformers' generate(num_beams=...) on recorded log-probs", () => {
  fixture.cases.forEach((c, i) => {
    const label = `case ${i}: beams ${c.numBeams}, lengthPenalty ${c.lengthPenalty}, earlyStopping ${c.earlyStopping}, endIds ${c.endIds}`;
    test(label, () => {
      const bytes = Buffer.from(c.rows, "base64");
      const data = new Float32Array(new Uint8Array(bytes).buffer);
      const table = new Map(c.rowKeys.map((k, r) => [k, data.subarray(r * V, (r + 1) * V)]));
      const { hypotheses, steps } = runBeamSearchOnLogProbFn(
        {
          beamWidth: c.numBeams,
          lengthPenalty: c.lengthPenalty,
          earlyStopping: c.earlyStopping,
          numReturnSequences: c.numReturnSequences,
          endIds: c.endIds,
          promptLen: c.promptIds.length,
          maxNewTokens: c.maxNewTokens,
          diversityRate: 0,
        },
        (beams) => {
          const out = new Float32Array(beams.length * V);
          beams.forEach((b, r) => {
            const row = table.get(b.join(","));
            if (!row) throw new Error(`beam [${b}] was never evaluated by HF: the search diverged`);
            out.set(row, r * V);
          });
          return out;
        },
      );
      assert.deepEqual(
        hypotheses.map((h) => h.tokens),
        c.sequences,
      );
      assert.deepEqual(
        hypotheses.map((h) => h.score),
        c.sequencesScores,
      );
      assert.equal(steps, c.steps);
      // Exact: kiln adds the same float32 values in the same order as HF's running beam score.
      assert.deepEqual(
        hypotheses.map((h) => h.cumLogProb),
        c.sequences.map((seq) => recordedCumLogProb(table, seq)),
        "cumLogProbs from the recorded rows",
      );
      // The generator also records HF's own (compute_transition_scores summed in float64): float32
      // rounding of up to 10 steps of a running sum below 64 (4e-6 each) stays below 1e-4.
      c.cumLogProbs?.forEach((want, k) => {
        const got = hypotheses[k].cumLogProb;
        assert.ok(Math.abs(got - want) <= 1e-4, `cumLogProb ${k}: ${got} vs HF ${want}`);
      });
    });
  });
});
