// kernels/sampling.cu against cpuDecodingOps (src/backends/host_decoding.ts): bias, penalties, bans,
// log-softmax, greedy argmax and sampling (temperature → top-k → top-p → min-p → counter-based draw)
// over batches whose rows all have different settings. Sampled tokens must be identical to the
// reference's (see tolerances.ts); log-probabilities within TOLERANCES.logSoftmax. sample_topk_topp
// reduces P slices per row on Q CTAs per row: any P (dividing the row or not, more slices than the row
// fills) gives the same tokens, any Q (a CTA a slice … a warp a slice) too, and a launch leaves its
// arrival counters zero for the next one (graph replays).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { argmax, logSoftmax } from "../../../src/backends/cpu/kernels/sampling_math.ts";
import type { CudaModule, DevicePtr } from "../../../src/backends/cuda/device/index.ts";
import { SLICE_STATS_BYTES, samplingSlices } from "../../../src/backends/cuda/sampling_launch.ts";
import type { SampleParams } from "../../../src/backends/decoding_ops.ts";
import { cpuDecodingOps } from "../../../src/backends/host_decoding.ts";
import { assertWithin, i32, KernelHarness, noGpu, ptr, randn } from "./harness.ts";
import { TOLERANCES } from "./tolerances.ts";

const VOCABS = [7, 769, 5125, 32000];

/** Logits of row `r`: normal with a row-dependent spread, some rows with ties and −∞ entries. */
function makeLogits(B: number, V: number, seed: number): Float32Array {
  const logits = randn(B * V, seed);
  for (let r = 0; r < B; r++) {
    const spread = [1, 3, 8, 0.05][r % 4];
    const ties = r % 3 === 0;
    const infs = r % 5 === 2;
    for (let i = 0; i < V; i++) {
      let x = logits[r * V + i] * spread;
      if (ties) x = Math.round(x);
      if (infs && i % 3 === 1) x = Number.NEGATIVE_INFINITY;
      logits[r * V + i] = x;
    }
  }
  return logits;
}

/** Settings of row r: every combination of the knobs appears over 48 rows. */
function makeParams(B: number): SampleParams {
  const temps = [0.3, 1, 2.5, 40];
  const topKs = [0, 1, 5, 50, 1500, 0, 3];
  const topPs = [1, 0.9, 0.5, 0.999, 1];
  const minPs = [0, 0.05, 0, 0.3];
  return {
    greedy: Uint8Array.from({ length: B }, (_, r) => (r % 11 === 4 ? 1 : 0)),
    temperature: Float32Array.from({ length: B }, (_, r) => temps[r % temps.length]),
    topK: Int32Array.from({ length: B }, (_, r) => topKs[r % topKs.length]),
    topP: Float32Array.from({ length: B }, (_, r) => topPs[r % topPs.length]),
    minP: Float32Array.from({ length: B }, (_, r) => minPs[Math.floor(r / 3) % minPs.length]),
    seed: Float64Array.from({ length: B }, (_, r) => (r % 2 === 0 ? 2 ** 40 + 977 * r : r)),
    sequence: Int32Array.from({ length: B }, (_, r) => r * 7 + 1),
    step: Int32Array.from({ length: B }, (_, r) => r * 13),
  };
}

/** Rows the slice merge must get right: all −∞, −∞ over whole leading slices, one finite logit at
 * the end, a NaN (in greedy row 4: torch.argmax picks it). */
function addEdgeRows(logits: Float32Array, V: number): void {
  const row = (r: number) => logits.subarray(r * V, (r + 1) * V);
  row(7).fill(Number.NEGATIVE_INFINITY);
  row(6).fill(Number.NEGATIVE_INFINITY, 0, Math.floor((3 * V) / 4));
  row(9).fill(Number.NEGATIVE_INFINITY, 0, V - 1);
  row(4)[Math.floor((3 * V) / 5)] = Number.NaN;
}

/** sample_topk_topp's workspace for `B` rows at `slices` CTAs each; the counters start at zero. */
function workspace(
  h: KernelHarness,
  B: number,
  slices: number,
): { partials: DevicePtr; counters: DevicePtr } {
  return {
    partials: h.raw(new Uint8Array(SLICE_STATS_BYTES * B * slices)),
    counters: h.raw(new Int32Array(B)),
  };
}

/** sample_topk_topp of `slices` slices per row over grid (ctas, B): the tokens and log-probabilities. */
function sample(
  h: KernelHarness,
  mod: CudaModule,
  logits: DevicePtr,
  p: SampleParams,
  B: number,
  slices: number,
  ws = workspace(h, B, slices),
  ctas = slices,
): { tokens: Int32Array; logProbs: Float32Array } {
  const tokens = h.raw(new Int32Array(B).fill(-7));
  const lps = h.raw(new Float32Array(B));
  h.run(
    mod,
    "sample_topk_topp",
    [ctas, B],
    [1024],
    [
      ptr(logits),
      ptr(h.raw(p.greedy)),
      ptr(h.raw(p.temperature)),
      ptr(h.raw(p.topK)),
      ptr(h.raw(p.topP)),
      ptr(h.raw(p.minP)),
      ptr(h.raw(p.seed)),
      ptr(h.raw(p.sequence)),
      ptr(h.raw(p.step)),
      ptr(tokens),
      ptr(lps),
      ptr(ws.partials),
      ptr(ws.counters),
      i32(slices),
    ],
  );
  return { tokens: h.downloadI32(tokens, B), logProbs: h.download(lps, B, "fp32") };
}

const describeRow = (p: SampleParams, r: number) =>
  `row ${r} (t ${p.temperature[r]}, top-k ${p.topK[r]}, top-p ${p.topP[r]}, min-p ${p.minP[r]}, greedy ${p.greedy[r]})`;

describe("sampling.cu", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** sample_topk_topp of `mod` on 48 rows of every knob against the CPU reference. */
  function checkAgainstReference(mod: CudaModule, V: number): void {
    const B = 48;
    const logits = makeLogits(B, V, V);
    const p = makeParams(B);
    const want = cpuDecodingOps.sample(logits, B, V, p);
    const got = sample(h, mod, h.raw(logits), p, B, samplingSlices(V));
    for (let r = 0; r < B; r++) assert.equal(got.tokens[r], want.tokens[r], describeRow(p, r));
    assertWithin(
      got.logProbs,
      want.logProbs,
      (i) => TOLERANCES.logSoftmax.bound("fp32", { want: want.logProbs[i], scale: 30 }),
      "logProbs",
    );
  }

  /** 24 rows of V logits (seed `seed`) with the edge rows, their parameters, the reference's draw, the
   * module and the logits on the device. */
  function edgeProblem(V: number, seed: number) {
    const mod = h.module("sampling.cu", { VOCAB: V });
    const B = 24;
    const logits = makeLogits(B, V, seed);
    addEdgeRows(logits, V);
    const p = makeParams(B);
    return { mod, B, p, want: cpuDecodingOps.sample(logits, B, V, p), ld: h.raw(logits) };
  }

  for (const V of VOCABS) {
    it(`sample_topk_topp V ${V}: the reference's tokens, its log-probabilities`, () => {
      const mod = h.module("sampling.cu", { VOCAB: V });
      checkAgainstReference(mod, V);
    });

    it(`sample_topk_topp V ${V}: many seeds draw what the reference draws`, () => {
      const mod = h.module("sampling.cu", { VOCAB: V });
      const B = 64;
      // One distribution for all rows (spread 2, no ties), sampled with 64 different seeds.
      const row = randn(V, V + 1, 2);
      const logits = new Float32Array(B * V);
      for (let r = 0; r < B; r++) logits.set(row, r * V);
      const p: SampleParams = {
        greedy: new Uint8Array(B),
        temperature: new Float32Array(B).fill(1),
        topK: new Int32Array(B),
        topP: new Float32Array(B).fill(1),
        minP: new Float32Array(B),
        seed: Float64Array.from({ length: B }, (_, r) => 1000 + r),
        sequence: new Int32Array(B),
        step: new Int32Array(B),
      };
      const want = cpuDecodingOps.sample(logits, B, V, p);
      const got = sample(h, mod, h.raw(logits), p, B, samplingSlices(V));
      assert.deepEqual(Array.from(got.tokens), Array.from(want.tokens));
    });

    it(`sample_topk_topp V ${V}: every CTA count per row gives the reference's tokens, P = 1's log-probs`, () => {
      const { mod, B, p, want, ld } = edgeProblem(V, V + 5);
      const one = sample(h, mod, ld, p, B, 1);
      // 3 and 7 divide no vocabulary here; at 64 a small row leaves most slices empty.
      for (const P of new Set([1, 2, 3, 7, samplingSlices(V), 64])) {
        const got = sample(h, mod, ld, p, B, P);
        for (let r = 0; r < B; r++) {
          assert.equal(got.tokens[r], want.tokens[r], `P ${P}: ${describeRow(p, r)}`);
          assert.equal(got.tokens[r], one.tokens[r], `P ${P} vs 1: ${describeRow(p, r)}`);
        }
        const bound = (want: number) => TOLERANCES.logSoftmax.bound("fp32", { want, scale: 30 });
        assertWithin(got.logProbs, want.logProbs, (i) => bound(want.logProbs[i]), `P ${P}: logProbs`);
        assertWithin(got.logProbs, one.logProbs, (i) => bound(one.logProbs[i]), `P ${P} vs 1: logProbs`);
      }
    });

    it(`sample_topk_topp V ${V}: any CTAs per row (teams of warps a slice) give P CTAs' tokens`, () => {
      const { mod, B, p, want, ld } = edgeProblem(V, V + 9);
      // P = 32 (a warp a slice at Q = 1), P = 64 (32 a CTA at Q = 2), and the vocabulary's own P.
      for (const P of new Set([32, 64, samplingSlices(V)])) {
        const base = sample(h, mod, ld, p, B, P);
        const qs = new Set([1, 2, 3, 5, Math.ceil(P / 2), P + 3].filter((q) => Math.ceil(P / q) <= 32));
        for (const Q of qs) {
          const ws = workspace(h, B, P);
          const got = sample(h, mod, ld, p, B, P, ws, Q);
          for (let r = 0; r < B; r++) {
            assert.equal(got.tokens[r], want.tokens[r], `P ${P} Q ${Q}: ${describeRow(p, r)}`);
            assert.equal(got.tokens[r], base.tokens[r], `P ${P} Q ${Q} vs Q = P: ${describeRow(p, r)}`);
          }
          const bound = (w: number) => TOLERANCES.logSoftmax.bound("fp32", { want: w, scale: 30 });
          assertWithin(
            got.logProbs,
            base.logProbs,
            (i) => bound(base.logProbs[i]),
            `P ${P} Q ${Q}: logProbs`,
          );
          assert.deepEqual(Array.from(h.downloadI32(ws.counters, B)), new Array(B).fill(0), "counters at 0");
        }
      }
      // More than 32 slices a CTA is refused: every row's token is −1.
      const refused = sample(h, mod, ld, p, B, 64, workspace(h, B, 64), 1);
      assert.deepEqual(Array.from(refused.tokens), new Array(B).fill(-1));
    });

    it(`sample_topk_topp V ${V}: a launch leaves the counters zero, so a second one (a replay) is right`, () => {
      const mod = h.module("sampling.cu", { VOCAB: V });
      const B = 12;
      const P = Math.max(5, samplingSlices(V));
      const p = makeParams(B);
      const ws = workspace(h, B, P);
      // Different logits each time: a stale partial or count from the first launch would show.
      for (const seed of [V + 6, V + 7]) {
        const logits = makeLogits(B, V, seed);
        addEdgeRows(logits, V);
        const want = sample(h, mod, h.raw(logits), p, B, 1);
        const got = sample(h, mod, h.raw(logits), p, B, P, ws);
        assert.deepEqual(Array.from(got.tokens), Array.from(want.tokens), `seed ${seed}: tokens`);
        assertWithin(
          got.logProbs,
          want.logProbs,
          (i) => TOLERANCES.logSoftmax.bound("fp32", { want: want.logProbs[i], scale: 30 }),
          `seed ${seed}: logProbs`,
        );
        assert.deepEqual(
          Array.from(h.downloadI32(ws.counters, B)),
          new Array(B).fill(0),
          "counters back at 0",
        );
      }
    });

    it(`log_softmax and argmax_logprob V ${V}`, () => {
      const mod = h.module("sampling.cu", { VOCAB: V });
      const B = 12;
      const logits = makeLogits(B, V, V + 2);
      logits[5 * V + Math.min(3, V - 1)] = Number.NaN; // row 5: torch.argmax picks the first NaN
      const p = makeParams(B);
      const want = new Float32Array(B * V);
      cpuDecodingOps.logSoftmax(logits, B, V, p.temperature, p.greedy, want);
      const out = h.raw(new Float32Array(B * V));
      const ld = h.raw(logits);
      h.run(
        mod,
        "log_softmax",
        [B],
        [1024],
        [ptr(ld), ptr(h.raw(p.temperature)), ptr(h.raw(p.greedy)), ptr(out)],
      );
      assertWithin(
        h.download(out, B * V, "fp32"),
        want,
        (i) => TOLERANCES.logSoftmax.bound("fp32", { want: want[i], scale: 30 }),
        "log_softmax",
      );

      const tokens = h.raw(new Int32Array(B));
      const lps = h.raw(new Float32Array(B));
      h.run(mod, "argmax_logprob", [B], [256], [ptr(ld), ptr(tokens), ptr(lps)]);
      const gotTokens = h.downloadI32(tokens, B);
      const gotLps = h.download(lps, B, "fp32");
      const lp = new Float32Array(V);
      for (let r = 0; r < B; r++) {
        const row = logits.subarray(r * V, (r + 1) * V);
        const tok = argmax(row, V);
        assert.equal(gotTokens[r], tok, `argmax of row ${r}`);
        logSoftmax(row, V, lp);
        assertWithin(
          [gotLps[r]],
          [lp[tok]],
          () => TOLERANCES.logSoftmax.bound("fp32", { want: lp[tok], scale: 30 }),
          `logprob row ${r}`,
        );
      }
    });

    it(`add_logit_bias, apply_penalties and ban_tokens V ${V}: bit-exact`, () => {
      const mod = h.module("sampling.cu", { VOCAB: V });
      const B = 5;
      const logits = makeLogits(B, V, V + 3).map((x) => (Number.isFinite(x) ? x : -3));
      const bias = randn(V, V + 4);
      const L = 40;
      const lens = Int32Array.from([40, 10, 0, 25, 33]);
      const promptLens = Int32Array.from([12, 10, 0, 5, 33]);
      const ids = Int32Array.from(
        { length: B * L },
        (_, i) => Math.floor(Math.abs(randn(1, i)[0]) * 9) % Math.min(V, 50),
      );
      const rep = Float32Array.from([1.3, 1, 0.7, 1, 1.1]);
      const pres = Float32Array.from([0.5, 0, 0.2, -0.7, 0]);
      const freq = Float32Array.from([0.25, 0, 1, 0.3, 0]);
      const banned = [[3], [], [0, 1, V - 1], [2], [V - 1, V - 1]];
      const maxBanned = 3;
      const bannedFlat = new Int32Array(B * maxBanned).fill(-1);
      banned.forEach((list, r) => bannedFlat.set(list, r * maxBanned));

      // Rows 0 and 3 end with a fed token (the previous step's sampled[fed[r]]): the device's lists
      // hold a placeholder (0) there, the reference's the token itself.
      const sampled = Int32Array.from([9, 5 % V, 4 % V, 8]);
      const fed = Int32Array.from([1, -1, -1, 2, -1]);
      const want = logits.slice();
      cpuDecodingOps.addBias(want, B, V, bias);
      cpuDecodingOps.applyPenalties(want, B, V, {
        repetition: rep,
        presence: pres,
        frequency: freq,
        tokens: Array.from({ length: B }, (_, r) => {
          const list = ids.slice(r * L, r * L + lens[r]);
          if (fed[r] >= 0) list[lens[r] - 1] = sampled[fed[r]];
          return list;
        }),
        promptLens,
      });
      fed.forEach((f, r) => {
        if (f >= 0) ids[r * L + lens[r] - 1] = 0;
      });
      cpuDecodingOps.banTokens(want, B, V, banned);

      const ld = h.raw(logits);
      const counts = h.raw(new Int32Array(B * V));
      h.run(mod, "add_logit_bias", [Math.ceil((B * V) / 256)], [256], [ptr(ld), ptr(h.raw(bias)), i32(B)]);
      h.run(
        mod,
        "apply_penalties",
        [B],
        [1024],
        [
          ptr(ld),
          ptr(h.raw(ids)),
          ptr(h.raw(lens)),
          ptr(h.raw(promptLens)),
          ptr(h.raw(rep)),
          ptr(h.raw(pres)),
          ptr(h.raw(freq)),
          ptr(counts),
          i32(L),
          ptr(h.raw(sampled)),
          ptr(h.raw(fed)),
        ],
      );
      h.run(mod, "ban_tokens", [B], [128], [ptr(ld), ptr(h.raw(bannedFlat)), i32(maxBanned)]);
      assertWithin(h.download(ld, B * V, "fp32"), want, () => TOLERANCES.penalties.bound(), "logits");
      assert.ok(
        h.downloadI32(counts, B * V).every((c) => c === 0),
        "the counts workspace is left zero",
      );
    });
  }
});
