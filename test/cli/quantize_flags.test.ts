// `--quantize` reaches the build from every command that builds: kiln build writes the format into the
// engine, run / bench build a quantized cache entry, a built engine refuses it, a bad value is named.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

/** The formats the weights of the only engine in cache `dir` carry. */
function cachedFormats(dir: string): string[] {
  const entries = readdirSync(join(dir, "engines")).filter((n) => !n.startsWith("."));
  assert.equal(entries.length, 1, entries.join(", "));
  const e = openEngine(join(dir, "engines", entries[0]));
  const formats = [...new Set(e.header.weights.map((w) => w.format ?? "plain"))].sort();
  e.close();
  return formats;
}

describe("--quantize on the CLI", () => {
  const tmp = tempCache();
  after(() => tmp.cleanup());

  test("kiln build --quantize records the format in the engine config and its weights", () => {
    const out = join(tmp.dir, "built");
    const r = kiln([
      "build",
      "--model",
      BUNDLED_MODEL_DIR,
      "--output",
      out,
      "--quantize",
      "int8-wo",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).config.build.quantize, "int8-wo");
    const e = openEngine(out);
    assert.ok(e.header.weights.some((w) => w.format === "int8-wo"));
    e.close();
    // On the built engine, --quantize is a contradiction, like --dtype.
    assertUserError(
      kiln(["run", "--model", out, "--quantize", "int8-wo"]),
      "ConflictingFlagsError",
      /--quantize int8-wo: .* is a built engine/,
    );
  });

  test("kiln run, bench and chat --quantize build a quantized cache entry", () => {
    const runCache = join(tmp.dir, "run-cache");
    const r = kiln([
      "run",
      "--quantize",
      "int4-wo",
      "--max-new-tokens",
      "2",
      "--json",
      "--cache-dir",
      runCache,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(cachedFormats(runCache), ["int4-wo", "plain"]);
    const benchCache = join(tmp.dir, "bench-cache");
    const b = kiln([
      ...["bench", "--quantize", "int8-wo", "--input-len", "4", "--output-len", "2", "--runs", "1"],
      ...["--json", "--cache-dir", benchCache],
    ]);
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(cachedFormats(benchCache), ["int8-wo", "plain"]);
    const chatCache = join(tmp.dir, "chat-cache");
    const c = kiln(
      ["chat", "--quantize", "int4-wo", "--max-new-tokens", "2", "--cache-dir", chatCache],
      {},
      {
        input: "hello\n",
      },
    );
    assert.equal(c.code, 0, c.stderr);
    assert.deepEqual(cachedFormats(chatCache), ["int4-wo", "plain"]);
  });

  test("kiln run --quantize fp8 builds an fp8 cache entry", () => {
    const fp8Cache = join(tmp.dir, "fp8-cache");
    const r = kiln(["run", "--quantize", "fp8", "--max-new-tokens", "2", "--json", "--cache-dir", fp8Cache]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(cachedFormats(fp8Cache), ["fp8", "plain"]);
  });

  test("an unknown format is a named error", () => {
    assertUserError(
      kiln(["build", "--model", BUNDLED_MODEL_DIR, "--output", join(tmp.dir, "x"), "--quantize", "int9"]),
      "InvalidArgumentError",
      /--quantize must be one of int8-wo, int4-wo, fp8, int4-awq, fp8-static, got "int9"/,
    );
  });
});
