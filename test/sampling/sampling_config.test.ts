// SamplingConfig validation: each invalid or conflicting setting is a named error naming the field
// and the value; valid settings expand to per-sequence arrays.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { UnknownOptionError } from "../../src/runtime/errors.ts";
import {
  GREEDY_TEMPERATURE,
  InvalidSamplingConfigError,
  resolveSamplingConfig,
  type SamplingConfig,
  TokenIdOutOfRangeError,
} from "../../src/sampling/sampling_config.ts";

const model = { defaults: {}, endIds: [2], padId: null, vocabSize: 100 };
const resolve = (c: Partial<SamplingConfig>, batch = 2) => resolveSamplingConfig(c, batch, model);

describe("SamplingConfig", () => {
  test("scalars expand per sequence; arrays stay per sequence", () => {
    const r = resolve({ temperature: 0.5, topK: [3, 0] });
    assert.deepEqual(r.temperature, [0.5, 0.5]);
    assert.deepEqual(r.topK, [3, 0]);
    assert.deepEqual(r.endIds, [2]);
    assert.equal(r.padId, 2);
    assert.deepEqual(r.greedy, [false, false]);
  });

  test("temperature 0 and topK 1 mean greedy", () => {
    assert.deepEqual(resolve({ temperature: [0, 1], topK: [0, 1] }).greedy, [true, true]);
  });

  test("model defaults apply under user settings", () => {
    const r = resolveSamplingConfig({ topK: 5 }, 1, { ...model, defaults: { temperature: 0.8, topK: 40 } });
    assert.deepEqual(r.temperature, [0.8]);
    assert.deepEqual(r.topK, [5]);
  });

  test("embedding bias from {id: value} pairs", () => {
    const r = resolve({ embeddingBias: { 5: -100, 7: 2.5 } });
    assert.equal(r.embeddingBias?.[5], -100);
    assert.equal(r.embeddingBias?.[7], 2.5);
    assert.equal(r.embeddingBias?.[6], 0);
  });

  const invalid: [string, Partial<SamplingConfig>, RegExp][] = [
    ["maxNewTokens 0", { maxNewTokens: 0 }, /maxNewTokens.*≥ 1.*0/],
    ["negative temperature", { temperature: -1 }, /temperature.*-1/],
    ["NaN temperature", { temperature: Number.NaN }, /temperature .*got NaN$/],
    [
      "infinite temperature in a list",
      { temperature: [1, Number.POSITIVE_INFINITY] },
      /temperature\[1\] .*got Infinity$/,
    ],
    ["NaN topP list shown as written", { topP: [0.5, Number.NaN] }, /topP\[1\] .*got NaN$/],
    ["topK fraction", { topK: 2.5 }, /topK.*2\.5/],
    ["topP 0", { topP: 0 }, /topP.*\(0, 1\]/],
    ["topP > 1", { topP: 1.5 }, /topP.*1\.5/],
    ["minP 1", { minP: 1 }, /minP/],
    ["topPMin above topP", { topP: 0.5, topPMin: 0.9 }, /topPMin.*topP \(0\.5\)/],
    ["repetition penalty 0", { repetitionPenalty: 0 }, /repetitionPenalty.*> 0/],
    ["per-sequence array of the wrong length", { topK: [1, 2, 3] }, /topK has 3 values but the batch has 2/],
    ["negative seed", { randomSeed: -3 }, /randomSeed/],
    ["beamWidth 0", { beamWidth: 0 }, /beamWidth/],
    [
      "numReturnSequences above beamWidth",
      { beamWidth: 2, numReturnSequences: 3 },
      /numReturnSequences.*beamWidth \(2\)/,
    ],
    ["sampling with beams", { beamWidth: 2, temperature: 0.7 }, /temperature.*conflicts with beamWidth/],
    ["diversity without beams", { beamSearchDiversityRate: 0.5 }, /needs beamWidth > 1/],
    [
      "several greedy sequences",
      { temperature: 0, numReturnSequences: 2 },
      /numReturnSequences.*needs sampling/,
    ],
    ["minLength above maxNewTokens", { maxNewTokens: 4, minLength: 5 }, /minLength.*maxNewTokens \(4\)/],
    ["empty stop word", { stopWords: [""] }, /stopWords/],
    ["bad word with a negative id", { badWords: [[1, -1]] }, /badWords/],
    ["dense bias of the wrong size", { embeddingBias: new Float32Array(5) }, /embeddingBias.*100/],
    ["earlyStopping nonsense", { earlyStopping: "sometimes" as unknown as boolean }, /earlyStopping/],
  ];
  // Ids past the vocabulary: a named error with the field, the id and the vocabulary size.
  const outOfRange: [string, Partial<SamplingConfig>, string, number][] = [
    ["endId", { endId: 100 }, "endId", 100],
    ["an end id in a list", { endId: [2, 99999] }, "endId", 99999],
    ["padId", { padId: 250 }, "padId", 250],
    ["a bad word", { badWords: [[1, 99999]] }, "badWords[0]", 99999],
    ["a per-prompt bad word", { badWords: [[[3]], [[4, 100]]] }, "badWords[1][0]", 100],
    ["a stop word", { stopWords: [[7, 12345]] }, "stopWords[0]", 12345],
    ["a bias key", { embeddingBias: { 500: 1 } }, "embeddingBias", 500],
    ["a topP reset id", { topPResetIds: 100 }, "topPResetIds", 100],
  ];
  for (const [name, cfg, field, id] of outOfRange) {
    test(`out of the vocabulary: ${name}`, () => {
      assert.throws(
        () => resolve(cfg),
        (e: unknown) =>
          e instanceof TokenIdOutOfRangeError &&
          e instanceof InvalidSamplingConfigError &&
          e.id === id &&
          e.vocabSize === 100 &&
          e.message.startsWith(`SamplingConfig.${field}: token id ${id} is out of range`) &&
          /vocabulary of 100 ids; use ids in 0\.\.99/.test(e.message),
      );
    });
  }

  test("temperatures below GREEDY_TEMPERATURE decode greedily (float32 would underflow)", () => {
    const r = resolve({ temperature: [1e-300, GREEDY_TEMPERATURE / 2] });
    assert.deepEqual(r.greedy, [true, true]);
    assert.deepEqual(r.temperature, [0, 0], "both backends see temperature 0, the greedy setting");
    const at = resolve({ temperature: GREEDY_TEMPERATURE });
    assert.deepEqual(at.greedy, [false, false]);
    assert.deepEqual(at.temperature, [GREEDY_TEMPERATURE, GREEDY_TEMPERATURE]);
  });

  test("an unknown key is a named error suggesting the nearest known key", () => {
    assert.throws(
      () => resolve({ maxNewTokns: 5 } as Partial<SamplingConfig>),
      (e: unknown) =>
        e instanceof UnknownOptionError &&
        e.key === "maxNewTokns" &&
        /SamplingConfig has no option "maxNewTokns"; did you mean "maxNewTokens"\?/.test(e.message),
    );
    assert.throws(() => resolve({ topk: 3 } as Partial<SamplingConfig>), /did you mean "topK"/);
  });

  for (const [name, cfg, msg] of invalid) {
    test(`invalid: ${name}`, () => {
      assert.throws(
        () => resolve(cfg),
        (e: unknown) => e instanceof InvalidSamplingConfigError && msg.test(e.message),
      );
    });
  }
});
