// `kiln run` exposes every SamplingConfig field as a kebab-case flag, and --json adds "sequences".
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

describe("kiln run sampling flags (bundled model)", () => {
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  after(cache.cleanup);
  const run = (...args: string[]) => kiln(["run", "--prompt", "ROMEO:", "--json", ...args], env);

  test("beam search returns scored sequences, best first", () => {
    const r = run(
      "--beam-width",
      "4",
      "--num-return-sequences",
      "3",
      "--max-new-tokens",
      "10",
      "--length-penalty",
      "0.8",
      "--early-stopping",
      "never",
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

  test("sampling with several returned sequences, penalties, min-p, decay and a seed is reproducible", () => {
    const args = [
      "--temperature",
      "0.9",
      "--top-k",
      "50",
      "--top-p",
      "0.95",
      "--min-p",
      "0.02",
      "--top-p-decay",
      "0.9",
      "--top-p-min",
      "0.5",
      "--repetition-penalty",
      "1.2",
      "--presence-penalty",
      "0.3",
      "--frequency-penalty",
      "0.2",
      "--no-repeat-ngram-size",
      "3",
      "--min-length",
      "4",
      "--num-return-sequences",
      "2",
      "--seed",
      "11",
      "--max-new-tokens",
      "12",
    ];
    const a = run(...args);
    const b = run(...args);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
    const out = JSON.parse(a.stdout);
    assert.equal(out.sequences.length, 2);
    for (const s of out.sequences) assert.ok(s.outputIds.length >= 4, "min length");
  });

  test("--embedding-bias ID:VALUE pairs steer the output", () => {
    const r = run("--greedy", "--max-new-tokens", "3", "--embedding-bias", "500:100,7:-1");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).outputIds, [500, 500, 500]);
  });

  test("--bad-words and --stop-words", () => {
    const plain = JSON.parse(run("--greedy", "--max-new-tokens", "8", "--ignore-eos").stdout);
    const banned = plain.outputIds[1];
    const r = JSON.parse(
      run("--greedy", "--max-new-tokens", "8", "--ignore-eos", "--bad-words", `ids:${banned}`).stdout,
    );
    assert.ok(!r.outputIds.includes(banned));
    const s = JSON.parse(
      run("--greedy", "--max-new-tokens", "8", "--ignore-eos", "--stop-words", `ids:${plain.outputIds[2]}`)
        .stdout,
    );
    assert.equal(s.finishReason, "stop");
    assert.deepEqual(s.outputIds, plain.outputIds.slice(0, 3));
  });

  test("--chat wraps the prompt in the chat template", () => {
    const r = run("--chat", "--greedy", "--max-new-tokens", "5");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).outputIds.length > 0);
  });

  test("invalid sampling flags are named errors", () => {
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
  });
});
