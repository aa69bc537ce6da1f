// Beam search against references that do not share its code: exhaustive enumeration of every
// sequence of a toy language model (a beam as wide as the number of sequences must return all of
// them, ranked by HF's score), greedy decoding (width 1), and hand-worked cases for HF's rules
// (early stopping modes, end ids ranked below beamWidth, several end ids, diversity).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { uniform } from "../../src/backends/counter_rng.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { topK } from "../../src/sampling/beam_hypotheses.ts";
import { BeamSearch, type BeamSearchParams } from "../../src/sampling/beam_search.ts";
import { batched, logSoftmax, runBeamSearchOnLogProbFn } from "./beam_search_helpers.ts";

const f32 = Math.fround;

/** A deterministic pseudo-random language model: logits in [−3, 3) keyed by (seed, prefix, token). */
function hashLm(V: number, seed: number): (tokens: number[]) => Float32Array {
  return (tokens) => {
    let h = 17;
    for (const t of tokens) h = (Math.imul(h, 31) + t + 1) >>> 0;
    return logSoftmax(Array.from({ length: V }, (_, v) => 6 * uniform(seed, h, tokens.length, v) - 3));
  };
}

/** A language model given as probability tables per prefix ("" = empty prefix, "1,2" = tokens 1, 2). */
function tableLm(table: Record<string, number[]>, fallback: number[]): (tokens: number[]) => Float32Array {
  return (tokens) => Float32Array.from(table[tokens.join(",")] ?? fallback, (p) => Math.log(p));
}

/** HF's finished score: float32 cum / float32(len ** lengthPenalty). */
const hfScore = (cum: number, len: number, lp: number) => f32(cum / f32(len ** lp));
/** float32 cumulative log-prob of a path, summed in order as HF does. */
const cumOf = (lps: readonly number[]) => lps.reduce((c, x) => f32(c + x), 0);
const lpOf = (lm: (t: number[]) => Float32Array, tokens: number[]) =>
  tokens.map((t, i) => lm(tokens.slice(0, i))[t]);

const params = (p: Partial<BeamSearchParams>): BeamSearchParams => ({
  beamWidth: 2,
  lengthPenalty: 1,
  earlyStopping: false,
  numReturnSequences: 1,
  endIds: [0],
  promptLen: 3,
  maxNewTokens: 5,
  diversityRate: 0,
  ...p,
});

/** Every sequence the model can produce: ends at an end id or at length L. */
function enumerate(lm: (t: number[]) => Float32Array, V: number, endIds: number[], L: number, lp: number) {
  const out: { tokens: number[]; score: number }[] = [];
  const visit = (prefix: number[], cum: number) => {
    const row = lm(prefix);
    for (let v = 0; v < V; v++) {
      const tokens = [...prefix, v];
      const c = f32(cum + row[v]);
      if (endIds.includes(v) || tokens.length === L)
        out.push({ tokens, score: hfScore(c, tokens.length, lp) });
      else visit(tokens, c);
    }
  };
  visit([], 0);
  return out;
}

/** Best first; equal scores by tokens, so ties do not make the comparison flaky. */
function ranked(xs: { tokens: number[]; score: number }[]) {
  return xs
    .map(({ tokens, score }) => ({ tokens, score }))
    .sort((a, b) => b.score - a.score || a.tokens.join().localeCompare(b.tokens.join()));
}

function greedy(lm: (t: number[]) => Float32Array, endIds: number[], maxNew: number): number[] {
  const tokens: number[] = [];
  while (tokens.length < maxNew) {
    const row = lm(tokens);
    let best = 0;
    for (let v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
    tokens.push(best);
    if (endIds.includes(best)) break;
  }
  return tokens;
}

describe("beam search", () => {
  test("a beam as wide as all sequences returns every sequence, ranked by HF's score", () => {
    const V = 5;
    const cases: [number, number[], number, boolean | "never", number][] = [
      // [L, endIds, lengthPenalty, earlyStopping, seed]
      [3, [4], 1, false, 1],
      [3, [4], 0, true, 2],
      [3, [3, 4], 2.5, "never", 3],
      [3, [], 1, false, 4],
      [4, [4], -0.7, "never", 5],
      [4, [3, 4], 1, true, 6],
      [4, [0], 1.5, false, 7],
      [5, [4], 1, "never", 8],
    ];
    for (const [L, endIds, lp, es, seed] of cases) {
      const lm = hashLm(V, seed);
      const expected = ranked(enumerate(lm, V, endIds, L, lp));
      const { hypotheses, steps } = runBeamSearchOnLogProbFn(
        params({
          beamWidth: V ** L,
          lengthPenalty: lp,
          earlyStopping: es,
          numReturnSequences: expected.length,
          endIds,
          maxNewTokens: L,
        }),
        batched(lm),
      );
      const label = `L=${L} endIds=${endIds} lp=${lp} earlyStopping=${es}`;
      assert.equal(steps, L, label);
      assert.deepEqual(ranked(hypotheses), expected, label);
      for (let i = 1; i < hypotheses.length; i++)
        assert.ok(hypotheses[i - 1].score >= hypotheses[i].score, label);
    }
  });

  test("width 1 is greedy decoding", () => {
    const modes: [boolean | "never", number][] = [
      [true, 1],
      [false, 1],
      [false, 2],
      [true, -1],
      ["never", 0],
      ["never", -0.5],
    ];
    for (let seed = 1; seed <= 30; seed++) {
      const V = 3 + (seed % 5);
      const lm = hashLm(V, 100 + seed);
      const [es, lp] = modes[seed % modes.length];
      const endIds = seed % 3 === 0 ? [0, 1] : [0];
      const want = greedy(lm, endIds, 8);
      const { hypotheses } = runBeamSearchOnLogProbFn(
        params({ beamWidth: 1, earlyStopping: es, lengthPenalty: lp, endIds, maxNewTokens: 8 }),
        batched(lm),
      );
      const [h] = hypotheses;
      assert.deepEqual(h.tokens, want, `seed ${seed}`);
      assert.equal(h.score, hfScore(cumOf(lpOf(lm, want)), want.length, lp), `seed ${seed}`);
    }
  });

  test("log-probs, cumulative log-probs and scores follow the model and the length-penalty formula", () => {
    for (const [lp, es] of [
      [1.3, false],
      [0.4, "never"],
      [-1, true],
    ] as const) {
      const V = 7;
      const lm = hashLm(V, 42);
      const { hypotheses } = runBeamSearchOnLogProbFn(
        params({
          beamWidth: 4,
          numReturnSequences: 4,
          lengthPenalty: lp,
          earlyStopping: es,
          maxNewTokens: 6,
        }),
        batched(lm),
      );
      assert.equal(hypotheses.length, 4);
      for (const h of hypotheses) {
        const lps = lpOf(lm, h.tokens);
        assert.deepEqual(h.logProbs, lps);
        assert.equal(h.cumLogProb, cumOf(lps));
        assert.equal(h.score, hfScore(cumOf(lps), h.tokens.length, lp));
        const endsWithEos = h.tokens.at(-1) === 0;
        assert.equal(h.finishReason, endsWithEos ? "end" : "length");
        assert.ok(endsWithEos || h.tokens.length === 6);
        assert.ok(
          h.tokens.slice(0, -1).every((t) => t !== 0),
          "an end id only ends a hypothesis",
        );
      }
    }
  });

  // V = 4, end id 0, beamWidth 2, lengthPenalty 1.
  //   step 1 (prefix ""): eos .5 | 1 .3 | 2 .15 | 3 .05 → [0] finishes (rank 0); running [1], [2]
  //   step 2: [1,0] = .3·.6 = .18 (rank 0, finishes); [2,1] = .075; [1,1] = .06 → 2 finished = beamWidth
  const earlyTable = tableLm(
    { "": [0.5, 0.3, 0.15, 0.05], "1": [0.6, 0.2, 0.1, 0.1], "2": [0.1, 0.5, 0.3, 0.1] },
    [0.25, 0.25, 0.25, 0.25],
  );
  const earlyParams = (earlyStopping: boolean | "never") =>
    params({ beamWidth: 2, numReturnSequences: 2, earlyStopping, maxNewTokens: 4 });

  test("earlyStopping true stops as soon as beamWidth hypotheses finished", () => {
    const { hypotheses, steps } = runBeamSearchOnLogProbFn(earlyParams(true), batched(earlyTable));
    assert.equal(steps, 2);
    const l = (p: number) => f32(Math.log(p));
    assert.deepEqual(
      hypotheses.map((h) => [h.tokens, h.score]),
      [
        [[0], hfScore(l(0.5), 1, 1)],
        [[1, 0], hfScore(f32(l(0.3) + l(0.6)), 2, 1)],
      ],
    );
    assert.deepEqual(
      hypotheses.map((h) => h.finishReason),
      ["end", "end"],
    );
  });

  test("earlyStopping false stops when the best running beam, at its length, cannot win; never looks ahead", () => {
    // false: best running [2,1] scores ln(.075)/2 = −1.30 < worst finished ln(.18)/2 = −0.86 → stop.
    assert.equal(runBeamSearchOnLogProbFn(earlyParams(false), batched(earlyTable)).steps, 2);
    // never, lengthPenalty 1 > 0: bound is ln(.075)/maxNewTokens = −0.65 > −0.86 → keeps going.
    assert.ok(runBeamSearchOnLogProbFn(earlyParams("never"), batched(earlyTable)).steps > 2);

    // beamWidth 1, V = 3, end id 0, lengthPenalty 2, maxNewTokens 3:
    //   step 1: eos .5 → [0] = ln .5 = −0.69; running [1] = ln .4
    //   false: ln(.4)/1² = −0.92 < −0.69 → stop with [0].
    //   never: ln(.4)/3² = −0.10 > −0.69 → step 2: [1,0] = ln(.36)/2² = −0.26 replaces [0];
    //          running [1,1] = ln(.036): ln(.036)/9 = −0.37 < −0.26 → stop.
    const lm = tableLm({ "": [0.5, 0.4, 0.1], "1": [0.9, 0.09, 0.01] }, [1 / 3, 1 / 3, 1 / 3]);
    const run = (es: boolean | "never") =>
      runBeamSearchOnLogProbFn(
        params({ beamWidth: 1, lengthPenalty: 2, earlyStopping: es, maxNewTokens: 3 }),
        batched(lm),
      );
    const l = (p: number) => f32(Math.log(p));
    for (const es of [false, true] as const) {
      const r = run(es);
      assert.equal(r.steps, 1, `earlyStopping ${es}`);
      assert.deepEqual(r.hypotheses[0].tokens, [0]);
      assert.equal(r.hypotheses[0].score, l(0.5));
    }
    const never = run("never");
    assert.equal(never.steps, 2);
    assert.deepEqual(never.hypotheses[0].tokens, [1, 0]);
    assert.equal(never.hypotheses[0].score, hfScore(f32(l(0.4) + l(0.9)), 2, 2));
  });

  test("an end id ranked at or below beamWidth does not finish a hypothesis", () => {
    // V = 4, end id 0, beamWidth 2, lengthPenalty 0 (score = cum log-prob).
    // step 1: 1 .4 | 2 .35 | eos .2 (rank 2 ≥ beamWidth: dropped, though ln .2 beats everything later)
    // step 2: [1,0] = .18, [2,0] = .1575 finish at ranks 0 and 1.
    const lm = tableLm(
      { "": [0.2, 0.4, 0.35, 0.05], "1": [0.45, 0.3, 0.15, 0.1], "2": [0.45, 0.3, 0.15, 0.1] },
      [0.25, 0.25, 0.25, 0.25],
    );
    const { hypotheses, steps } = runBeamSearchOnLogProbFn(
      params({ beamWidth: 2, numReturnSequences: 2, lengthPenalty: 0, earlyStopping: true, maxNewTokens: 5 }),
      batched(lm),
    );
    assert.equal(steps, 2);
    assert.deepEqual(
      hypotheses.map((h) => h.tokens),
      [
        [1, 0],
        [2, 0],
      ],
    );
  });

  test("several end ids: each ends a hypothesis, and 3·beamWidth candidates keep beams running", () => {
    // V = 5, end ids 3 and 4, beamWidth 2: both end ids rank 0 and 1 on step 1.
    const lm = tableLm({ "": [0.1, 0.2, 0.15, 0.3, 0.25] }, [0.2, 0.2, 0.2, 0.2, 0.2]);
    const p = params({ beamWidth: 2, numReturnSequences: 2, endIds: [3, 4], earlyStopping: true });
    const search = new BeamSearch(p);
    assert.equal(search.beamsToKeep, 6);
    const { parents, tokens } = search.step(batched(lm)([[], []]), 5);
    assert.deepEqual(parents, [0, 0]);
    assert.deepEqual(tokens, [1, 2], "the running beams are the best non-end candidates");
    assert.equal(search.done, true);
    const out = search.finalize();
    assert.deepEqual(
      out.map((h) => [h.tokens, h.finishReason, h.score]),
      [
        [[3], "end", f32(Math.log(0.3))],
        [[4], "end", f32(Math.log(0.25))],
      ],
    );
  });

  test("numReturnSequences returns the best ones, best first", () => {
    const lm = hashLm(6, 9);
    const run = (n: number) =>
      runBeamSearchOnLogProbFn(
        params({ beamWidth: 5, numReturnSequences: n, earlyStopping: "never", maxNewTokens: 6 }),
        batched(lm),
      ).hypotheses;
    const all = run(5);
    assert.equal(all.length, 5);
    for (let i = 1; i < 5; i++) assert.ok(all[i - 1].score >= all[i].score);
    for (let n = 1; n <= 5; n++) assert.deepEqual(run(n), all.slice(0, n));
  });

  test("maxNewTokens ends the search; unfinished beams end with reason length", () => {
    const lm = hashLm(6, 11);
    const { hypotheses, steps } = runBeamSearchOnLogProbFn(
      params({ beamWidth: 3, numReturnSequences: 3, endIds: [], maxNewTokens: 4 }),
      batched(lm),
    );
    assert.equal(steps, 4);
    for (const h of hypotheses) {
      assert.equal(h.tokens.length, 4);
      assert.equal(h.finishReason, "length");
    }
  });

  test("finalize before done ranks the running beams in as if their length were the limit", () => {
    // The end id (.05) is never in the top 2; step 2: [1,1] .25, [1,2] .15, [2,1] .12.
    const lm = tableLm({ "2": [0.05, 0.4, 0.35, 0.2] }, [0.05, 0.5, 0.3, 0.15]);
    const search = new BeamSearch(params({ beamWidth: 2, numReturnSequences: 2, maxNewTokens: 10 }));
    let beams: number[][] = [[], []];
    for (let s = 0; s < 2; s++) {
      const { parents, tokens } = search.step(batched(lm)(beams), 4);
      beams = parents.map((p, i) => [...beams[p], tokens[i]]);
    }
    assert.equal(search.done, false);
    const l = (p: number) => f32(Math.log(p));
    assert.deepEqual(
      search.finalize().map((h) => [h.tokens, h.score, h.finishReason]),
      [
        [[1, 1], hfScore(f32(l(0.5) + l(0.5)), 2, 1), "length"],
        [[1, 2], hfScore(f32(l(0.5) + l(0.3)), 2, 1), "length"],
      ],
    );
    assert.throws(() => search.step(batched(lm)(beams), 4));
  });

  // V = 6, end id 5, beamWidth 3, maxNewTokens 2, lengthPenalty 0.
  //   step 1: 0 .5 | 1 .3 | 2 .15 → running [0], [1], [2]
  //   step 2: [0,0] .165, [0,1] .16, [0,2] .155;  [1,0] .12;  [2,0] .06
  //   plain: all three from [0] (one first token).
  //   sourceBeam 0.6 (+0.6 · parent index): [1,0] ln .12 + 0.6 = −1.52; [2,0] ln .06 + 1.2 = −1.61;
  //     [0,0] ln .165 = −1.80 → three first tokens.
  //   siblingRank 0.6 (−0.6 · rank among siblings): [0,0] −1.80; [1,0] −2.12; [0,1] ln .16 − 0.6 = −2.43
  //     > [2,0] −2.81 → two first tokens.
  const diverseLm = tableLm(
    {
      "": [0.5, 0.3, 0.15, 0.03, 0.01, 0.01],
      "0": [0.33, 0.32, 0.31, 0.02, 0.01, 0.01],
      "1": [0.4, 0.15, 0.15, 0.15, 0.1, 0.05],
      "2": [0.4, 0.15, 0.15, 0.15, 0.1, 0.05],
    },
    [0.2, 0.2, 0.2, 0.2, 0.1, 0.1],
  );
  const diverse = (diversityRate: number, diversityMode?: "sourceBeam" | "siblingRank") =>
    runBeamSearchOnLogProbFn(
      params({
        beamWidth: 3,
        numReturnSequences: 3,
        endIds: [5],
        lengthPenalty: 0,
        earlyStopping: "never",
        maxNewTokens: 2,
        diversityRate,
        diversityMode,
      }),
      batched(diverseLm),
    ).hypotheses;
  const firstTokens = (hs: { tokens: number[] }[]) => new Set(hs.map((h) => h.tokens[0])).size;

  test("diversity rate 0 is plain beam search", () => {
    for (let seed = 1; seed <= 10; seed++) {
      const lm = batched(hashLm(7, 300 + seed));
      const p = params({
        beamWidth: 4,
        numReturnSequences: 4,
        maxNewTokens: 6,
        earlyStopping: seed % 2 === 0,
      });
      const plain = runBeamSearchOnLogProbFn(p, lm);
      for (const mode of ["sourceBeam", "siblingRank"] as const) {
        assert.deepEqual(
          runBeamSearchOnLogProbFn({ ...p, diversityMode: mode }, lm),
          plain,
          `seed ${seed} ${mode}`,
        );
      }
    }
    assert.equal(firstTokens(diverse(0)), 1);
  });

  test("a positive diversity rate spreads the beams over more first tokens", () => {
    const plain = diverse(0);
    assert.deepEqual(
      plain.map((h) => h.tokens[0]),
      [0, 0, 0],
    );
    const bySource = diverse(0.6);
    assert.equal(firstTokens(bySource), 3);
    assert.deepEqual(new Set(bySource.map((h) => h.tokens.join())), new Set(["0,0", "1,0", "2,0"]));
    // Ranking only: scores stay HF's (here, lengthPenalty 0: the raw cumulative log-prob).
    for (const h of bySource) assert.equal(h.score, cumOf(lpOf(diverseLm, h.tokens)));
    const bySibling = diverse(0.6, "siblingRank");
    assert.deepEqual(new Set(bySibling.map((h) => h.tokens.join())), new Set(["0,0", "1,0", "0,1"]));
    assert.equal(firstTokens(bySibling), 2);
  });

  test("top-k orders ties exactly as torch.topk does on the CPU", () => {
    // Expected indices printed by torch 2.13.0+cpu: torch.topk(x, k).indices.
    const halfZero = (n: number) => Array.from({ length: n }, (_, i) => (i < n / 2 ? 0 : -1e9));
    assert.deepEqual(topK(halfZero(16), 4), [7, 5, 6, 1]);
    assert.deepEqual(topK(halfZero(16), 6), [1, 0, 7, 6, 5, 3]);
    assert.deepEqual(topK(halfZero(8), 4), [1, 0, 3, 2]);
    assert.deepEqual(topK(halfZero(32), 8), [13, 9, 10, 11, 12, 15, 0, 1]);
    assert.deepEqual(topK(halfZero(100), 3), [33, 34, 35]);
    assert.deepEqual(topK(halfZero(2000), 8), [7, 4, 1, 3, 5, 0, 2, 6]); // k·64 ≤ n: partial_sort path
    assert.deepEqual(topK(new Float32Array(8), 4), [6, 5, 4, 7]);
    assert.deepEqual(topK([1, 3, 3, Number.NaN, 2, 3], 5), [3, 5, 1, 2, 4]); // NaN ranks first
    const perm = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 1000); // distinct values
    assert.deepEqual(topK(perm, 3), [perm.indexOf(999), perm.indexOf(998), perm.indexOf(997)]);
  });

  test("invalid settings are named errors", () => {
    const bad: Partial<BeamSearchParams>[] = [
      { beamWidth: 0 },
      { beamWidth: 2, numReturnSequences: 3 },
      { maxNewTokens: 0 },
      { lengthPenalty: Number.NaN },
      { diversityRate: -1 },
      { earlyStopping: "sometimes" as unknown as boolean },
      { endIds: [-1] },
      { diversityMode: "groups" as unknown as "sourceBeam" },
    ];
    for (const p of bad)
      assert.throws(() => new BeamSearch(params(p)), InvalidArgumentError, JSON.stringify(p));
    // 2 end ids → 3·beamWidth = 6 candidates, but a 2-token vocabulary offers 4.
    const s = new BeamSearch(params({ beamWidth: 2, endIds: [0, 1] }));
    assert.throws(() => s.step(new Float32Array(4), 2), InvalidArgumentError);
  });
});
