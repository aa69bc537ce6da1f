// kernels/embedding.cu against the CPU backend's embedding op (a row gather), every dtype, odd widths.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { DTYPES, i32, KernelHarness, noGpu, ptr, randn, roundTo } from "./harness.ts";
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
        for (const vocabStart of [0, 3]) {
          const ids = Int32Array.from([0, 6, 3, 3, -1, 7, 1 << 30, 5, 2, 9]).map((id) => id + vocabStart);
          const T = ids.length;
          const out = h.filled(T * hidden, dtype, 0xff);
          h.run(
            mod,
            "embedding",
            [T],
            [128],
            [ptr(h.raw(ids)), ptr(h.upload(table, dtype)), ptr(out), i32(T), i32(vocabStart)],
          );
          const got = h.download(out, T * hidden, dtype);
          const want = new Float32Array(T * hidden);
          ids.forEach((id, t) => {
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
