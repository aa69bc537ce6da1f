// --quantize int4-awq | fp8-static with --calibration / --calibration-tokens on the CLI: a build records
// them (and prints what AWQ chose); a missing or empty file, the flags without a calibrated method, and
// --calibration on a built engine are one-line named errors exiting 2, before any build work.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

describe("--calibration on the CLI", () => {
  const tmp = tempCache();
  after(() => tmp.cleanup());
  const build = (...extra: string[]) =>
    kiln(["build", "--model", BUNDLED_MODEL_DIR, "--output", join(tmp.dir, "out"), ...extra]);

  test("kiln build --quantize int4-awq --calibration FILE: int4-wo weights, calibration recorded", () => {
    const text = join(tmp.dir, "calib.txt");
    writeFileSync(text, "KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer.\n");
    const out = join(tmp.dir, "awq");
    const r = kiln([
      "build",
      "--model",
      BUNDLED_MODEL_DIR,
      "--output",
      out,
      "--quantize",
      "int4-awq",
      "--calibration",
      text,
      "--calibration-tokens",
      "16",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.config.build.quantize, "int4-awq");
    assert.equal(j.config.build.calibrationFile, text);
    assert.equal(j.awq.tokens, 16);
    assert.equal(j.awq.groups.length, 24);
    const e = openEngine(out);
    assert.deepEqual([...new Set(e.header.weights.map((w) => w.format ?? "plain"))].sort(), [
      "int4-wo",
      "plain",
    ]);
    e.close();
    assertUserError(
      kiln(["run", "--model", out, "--calibration", text]),
      "ConflictingFlagsError",
      /--calibration .*calib\.txt: .* is a built engine/,
    );
  });

  test("kiln build --quantize fp8-static --calibration FILE: static fp8 scales from that text", () => {
    const text = join(tmp.dir, "calib-fp8.txt");
    writeFileSync(text, "KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer.\n");
    const out = join(tmp.dir, "fp8-static");
    const r = kiln([
      ...["build", "--model", BUNDLED_MODEL_DIR, "--output", out],
      ...["--quantize", "fp8-static", "--calibration", text, "--calibration-tokens", "16", "--json"],
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.config.build.quantize, "fp8-static");
    assert.equal(j.config.build.calibrationTokens, 16);
    const e = openEngine(out);
    const fp8 = e.header.weights.filter((w) => w.format === "fp8");
    e.close();
    assert.ok(fp8.length > 0);
    for (const w of fp8) assert.deepEqual(w.params, { activation: "static" }, w.name);
  });

  test("kiln eval --quantize int4-awq: one cache entry per calibration text, wherever it lies", () => {
    const cache = join(tmp.dir, "eval-cache");
    const text = join(tmp.dir, "eval-calib.txt");
    writeFileSync(text, "ROMEO:\nBut, soft! what light through yonder window breaks?\n");
    mkdirSync(join(tmp.dir, "copy"));
    const copy = join(tmp.dir, "copy", "eval-calib.txt");
    copyFileSync(text, copy);
    const other = join(tmp.dir, "other.txt");
    writeFileSync(other, "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n");
    const held = new URL("../fixtures/quantization/held_out.txt", import.meta.url).pathname;
    const evalWith = (calibration: string) => {
      const r = kiln([
        "eval",
        "--perplexity",
        held,
        "--max-tokens",
        "64",
        "--quantize",
        "int4-awq",
        "--calibration",
        calibration,
        "--calibration-tokens",
        "16",
        "--cache-dir",
        cache,
        "--json",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const ppl = JSON.parse(r.stdout).perplexity;
      assert.ok(Number.isFinite(ppl) && ppl > 1, `perplexity ${ppl}`);
      return readdirSync(join(cache, "engines")).filter((n) => !n.startsWith(".")).length;
    };
    assert.equal(evalWith(text), 1);
    assert.equal(evalWith(copy), 1, "the same text at another path is a hit");
    assert.equal(evalWith(other), 2, "another text is another engine");
  });

  test("a missing or empty --calibration file is a CalibrationFileError", () => {
    assertUserError(
      build("--quantize", "int4-awq", "--calibration", join(tmp.dir, "nope.txt")),
      "CalibrationFileError",
      /--calibration .*nope\.txt: no such file; pass a readable text file/,
    );
    const empty = join(tmp.dir, "empty.txt");
    writeFileSync(empty, "\n");
    assertUserError(
      build("--quantize", "int4-awq", "--calibration", empty),
      "CalibrationFileError",
      /--calibration .*empty\.txt is empty/,
    );
  });

  test("--calibration or --calibration-tokens without a calibrated --quantize is a CalibrationNotUsedError", () => {
    const text = join(tmp.dir, "t.txt");
    writeFileSync(text, "words\n");
    assertUserError(
      build("--calibration", text),
      "CalibrationNotUsedError",
      /--calibration .*t\.txt applies only to --quantize int4-awq or fp8-static \(got --quantize none\)/,
    );
    assertUserError(
      kiln(["run", "--quantize", "int4-wo", "--calibration-tokens", "64", "--cache-dir", tmp.dir]),
      "CalibrationNotUsedError",
      /--calibration-tokens 64 applies only to --quantize int4-awq or fp8-static \(got --quantize int4-wo\)/,
    );
  });
});
