// kiln build / kiln run on pre-quantized checkpoints: a supported one runs through the engine cache
// and greedy-decodes as its dequantized reference does; an unsupported scheme is a one-line named error
// with exit 2 that names the scheme.
import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/quantized/", import.meta.url));

describe("kiln CLI: pre-quantized checkpoints", () => {
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: join(cache.dir, "cache") };
  after(() => cache.cleanup());

  test("kiln run --model on a GPTQ act-order checkpoint decodes as its dequantized reference", () => {
    const run = (dir: string) => {
      const args = [
        "run",
        "--model",
        join(FIXTURES, dir),
        "--input-ids",
        "0,17,5,99",
        "--max-new-tokens",
        "6",
      ];
      const r = kiln([...args, "--greedy", "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout).outputIds as number[];
    };
    assert.deepEqual(run("gptq-actorder"), run("gptq-actorder-ref"));
  });

  /** A copy of the AWQ fixture whose config.json declares `qc` instead. */
  const withScheme = (name: string, qc: unknown) => {
    const dir = join(cache.dir, name);
    cpSync(join(FIXTURES, "awq"), dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, quantization_config: qc }));
    return dir;
  };

  const refused: [string, unknown, RegExp][] = [
    ["gptq8", { quant_method: "gptq", bits: 8, group_size: 128 }, /gptq bits=8/],
    ["gemv", { quant_method: "awq", bits: 4, group_size: 32, version: "gemv" }, /awq version="gemv"/],
    ["block-fp8", { quant_method: "fp8", weight_block_size: [128, 128] }, /fp8 weight_block_size/],
    ["bnb", { quant_method: "bitsandbytes", load_in_4bit: true }, /quant_method "bitsandbytes"/],
  ];
  for (const [name, qc, re] of refused) {
    test(`kiln build refuses ${name} with UnsupportedQuantizationError, exit 2`, () => {
      const dir = withScheme(name, qc);
      const r = kiln(["build", "--model", dir, "--output", join(cache.dir, `${name}-out`)], env);
      assertUserError(r, "UnsupportedQuantizationError", re);
    });
  }
});
