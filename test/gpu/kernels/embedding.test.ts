// kernels/embedding.cu against the CPU backend's embedding op (a row gather), every dtype, odd widths.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { DTYPES, i32, KernelHarness, NULL, noGpu, ptr, randn, roundTo } from "./harness.ts";
import { TOLERANCES } from "./tolerances.ts";

describe("embedding.cu", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  const VOCAB = 7;
  for (const dtype of DTYPES) {
    for (const hidden of [7, 769, 5125, 4096]) {
      it(`${dtype} hidden ${hidden}: rows of the table, zeros outside [vocab_start, vocab_start + VOCAB)`, () => {
        const mod = h.module("embedding.cu", { HIDDEN: hidden, VOCAB }, dtype);
        const table = roundTo(randn(VOCAB * hidden, hidden), dtype);
        for (const [vocabStart, fedFrom] of [
          [0, false],
          [3, false],
          [3, true],
        ] as const) {
          const wantIds = Int32Array.from([0, 6, 3, 3, -1, 7, 1 << 30, 5, 2, 9]).map((id) => id + vocabStart);
          const T = wantIds.length;
          // Fed: odd tokens take their ids from a "sampled" buffer (feed[t] = its element), the uploaded
          // ids there are a decoy that must not be read; even tokens (feed −1) keep theirs.
          const fedTokens = new Int32Array(2 * T).fill(-7);
          const feed = new Int32Array(T).fill(-1);
          const ids = wantIds.slice();
          if (fedFrom) {
            for (let t = 1; t < T; t += 2) {
              feed[t] = 2 * T - 1 - t;
              fedTokens[feed[t]] = wantIds[t];
              ids[t] = vocabStart + 1;
            }
          }
          const out = h.filled(T * hidden, dtype, 0xff);
          h.run(
            mod,
            "embedding",
            [T],
            [128],
            [
              ptr(h.raw(ids)),
              fedFrom ? ptr(h.raw(feed)) : NULL,
              fedFrom ? ptr(h.raw(fedTokens)) : NULL,
              ptr(h.upload(table, dtype)),
              ptr(out),
              i32(T),
              i32(vocabStart),
            ],
          );
          const got = h.download(out, T * hidden, dtype);
          const want = new Float32Array(T * hidden);
          wantIds.forEach((id, t) => {
            const local = id - vocabStart;
            if (local >= 0 && local < VOCAB)
              want.set(table.subarray(local * hidden, (local + 1) * hidden), t * hidden);
          });
          // TOLERANCES.embedding: a copy is exact, so compare bit patterns (also −0 vs +0).
          assert.equal(TOLERANCES.embedding.bound(), 0);
          for (let i = 0; i < want.length; i++) {
            if (!Object.is(got[i], want[i])) {
              assert.fail(
                `vocab_start ${vocabStart}: element ${i} (token ${Math.floor(i / hidden)}) is ${got[i]}, expected ${want[i]}`,
              );
            }
          }
        }
      });
    }
  }
});
