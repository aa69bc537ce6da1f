// `kiln bench --profile`'s prefill: the batch's prompts go through the backend in steps the engine
// takes (prefillChunks: whole prompts while they fit, a longer prompt in chunks), each handed to
// profileStep, then one decode step to profileDecode. Checked on the CPU backend with the two profile
// hooks stood in: the steps cover every prompt token once, in order, within maxStepTokens, and the
// decode step after them gives the logits of the same sequences prefilled whole.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { DecodeProfile, StepInput, StepProfile } from "../../src/backends/backend.ts";
import { buildEngine } from "../../src/builder/builder.ts";
import { prefillChunks, runBench } from "../../src/runtime/bench.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

describe("prefillChunks", () => {
  test("whole prompts while they fit, longer ones cut; every token once, in order", () => {
    const rows = [
      Array.from({ length: 5 }, (_, i) => 100 + i),
      Array.from({ length: 12 }, (_, i) => 200 + i),
      [300],
      Array.from({ length: 3 }, (_, i) => 400 + i),
    ];
    const steps = prefillChunks(rows, 8);
    assert.deepEqual(
      steps.map((s) => s.map((c) => [c.seq, c.from, c.to])),
      [
        [
          [0, 0, 5],
          [1, 0, 3],
        ],
        [[1, 3, 11]],
        [
          [1, 11, 12],
          [2, 0, 1],
          [3, 0, 3],
        ],
      ],
    );
    const seen = rows.map(() => 0);
    for (const s of steps) {
      assert.ok(s.reduce((a, c) => a + c.to - c.from, 0) <= 8);
      for (const c of s) {
        assert.equal(c.from, seen[c.seq], `seq ${c.seq} continues where it stopped`);
        seen[c.seq] = c.to;
      }
    }
    assert.deepEqual(
      seen,
      rows.map((r) => r.length),
    );
    assert.equal(prefillChunks(rows, Number.POSITIVE_INFINITY).length, 1);
  });
});

describe("kiln bench --profile through the backend's profile hooks", () => {
  const model = writeTinyModel("llama", 3);
  const cache = tempCache();
  after(() => {
    model.cleanup();
    cache.cleanup();
  });

  test("prefill steps within maxStepTokens fill the KV the decode step reads", async () => {
    const dir = join(model.dir, "engine");
    buildEngine(model.dir, dir, { kvBlockSize: 4 });
    const runner = ModelRunner.fromEngine(dir);
    const backend = runner.session.backend;
    const prefillSteps: StepInput[] = [];
    let decodeLogits: Float32Array | undefined;
    let decodeStep: StepInput | undefined;
    const kinds = { gemm: { ms: 1, count: 2 }, attention: { ms: 0.5, count: 1 } };
    Object.defineProperty(backend, "maxStepTokens", { value: 13, configurable: true });
    Object.assign(backend, {
      profileStep(step: StepInput): StepProfile {
        prefillSteps.push(step);
        backend.forward(step);
        return { eagerMs: 1.5, byKind: structuredClone(kinds) };
      },
      profileDecode(step: StepInput): DecodeProfile {
        decodeStep = step;
        decodeLogits = Float32Array.from(backend.forward(step));
        return { graphMs: 1, eagerMs: 1.5, byKind: structuredClone(kinds) };
      },
    });
    try {
      const r = await runBench(runner, { batchSize: 3, inputLen: 9, outputLen: 2, runs: 1, profile: true });
      // 27 prompt tokens in steps of ≤ 13: [9, 4], [5, 8], [1].
      assert.deepEqual(
        prefillSteps.map((s) => s.seqs.map((q) => q.queryLen)),
        [[9, 4], [5, 8], [1]],
      );
      for (const s of prefillSteps) assert.ok(s.tokenIds.length <= 13);
      assert.deepEqual(r.profile?.prefill, {
        steps: 3,
        tokens: 27,
        eagerMs: 4.5,
        byKind: { gemm: { ms: 3, count: 6 }, attention: { ms: 1.5, count: 3 } },
      });
      assert.equal(r.profile?.graphMs, 1);
      // The decode step reads what the chunked prefill wrote: same logits as each sequence (prompt +
      // the decode token) prefilled whole in one step on fresh blocks.
      assert.ok(decodeStep && decodeLogits);
      assert.equal(decodeStep.seqs.length, 3);
      const vocab = backend.vocabSize;
      const promptOf = (firstBlock: number) =>
        prefillSteps.flatMap((s) =>
          s.seqs.flatMap((p) =>
            p.blockTable[0] === firstBlock
              ? [...s.tokenIds.subarray(p.queryStart, p.queryStart + p.queryLen)]
              : [],
          ),
        );
      const ids = decodeStep.seqs.map((q, i) => [
        ...promptOf(q.blockTable[0]),
        decodeStep?.tokenIds[i] ?? -1,
      ]);
      for (const [i, seq] of ids.entries()) {
        assert.equal(seq.length, 10);
        const whole: StepInput = {
          tokenIds: Int32Array.from(seq),
          positions: Int32Array.from(seq, (_, p) => p),
          slotMapping: Int32Array.from(seq, (_, p) => p),
          seqs: [{ queryStart: 0, queryLen: 10, contextLen: 10, blockTable: Int32Array.from([0, 1, 2]) }],
          logitRows: Int32Array.from([9]),
        };
        const ref = backend.forward(whole);
        const got = decodeLogits.subarray(i * vocab, (i + 1) * vocab);
        for (let v = 0; v < vocab; v++)
          assert.ok(Math.abs(ref[v] - got[v]) < 1e-5, `seq ${i} logit ${v}: ${got[v]} vs ${ref[v]}`);
      }
    } finally {
      runner.dispose();
    }
  });
});
