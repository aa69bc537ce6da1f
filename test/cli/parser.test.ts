// Every command's options through the real parser (./bin/kiln): each value arrives where the command
// uses it, bad values are user errors (exit 2), and no option named --no-X loses its value to
// commander's negation rule.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Command } from "commander";
import { registerBench } from "../../src/cli/bench.ts";
import { registerBuild } from "../../src/cli/build.ts";
import { registerChat } from "../../src/cli/chat.ts";
import { registerRun } from "../../src/cli/run.ts";
import { registerTokenize } from "../../src/cli/tokenize.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

describe("options named --no-X (every command)", () => {
  const program = new Command("kiln");
  for (const register of [registerRun, registerChat, registerBuild, registerBench, registerTokenize])
    register(program);
  const noOptions = program.commands.flatMap((c) =>
    c.options.filter((o) => o.long?.startsWith("--no-")).map((o) => ({ command: c.name(), option: o })),
  );

  test("a --no-X option that takes a value is stored under its own name, not negated", () => {
    const valued = noOptions.filter(({ option }) => option.required || option.optional);
    assert.ok(valued.some(({ option }) => option.long === "--no-repeat-ngram-size"));
    for (const { command, option } of valued) {
      assert.equal(option.negate, false, `${command} ${option.long} is read as a negation`);
      const camel = option.long?.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      assert.equal(option.attributeName(), camel, `${command} ${option.long}`);
    }
  });

  test("a --no-X flag without a value is the negation of X (default true)", () => {
    const flags = noOptions.filter(({ option }) => !option.required && !option.optional);
    assert.deepEqual(flags.map(({ command, option }) => `${command} ${option.long}`).sort(), [
      "build --no-fuse",
      "run --no-special-tokens",
      "tokenize --no-special-tokens",
    ]);
    for (const { option } of flags) assert.equal(option.negate, true);
  });
});

describe("kiln build through the CLI", () => {
  const model = writeTinyModel("llama");
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  after(() => {
    model.cleanup();
    cache.cleanup();
  });

  test("every option reaches the engine's build config", () => {
    const out = join(cache.dir, "all-flags");
    const r = kiln(
      [
        "build",
        ...["--model", model.dir, "--output", out, "--json", "--no-fuse", "--random-weights"],
        ...["--dtype", "fp16", "--backend", "cpu", "--max-seq-len", "32", "--max-batch-size", "3"],
        ...["--max-num-tokens", "128", "--kv-block-size", "8", "--quantize", "int8-wo"],
      ],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    const printed = JSON.parse(r.stdout);
    assert.equal(printed.dir, out);
    const expected = {
      backend: "cpu",
      dtype: "fp16",
      kvBlockSize: 8,
      maxSeqLen: 32,
      maxBatchSize: 3,
      maxNumTokens: 128,
      fuse: false,
      randomWeights: true,
      quantize: "int8-wo",
    };
    assert.deepEqual(printed.config.build, expected);
    assert.deepEqual(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).build, expected);
  });

  test("defaults, and the one-line report without --json", () => {
    const out = join(cache.dir, "defaults");
    const r = kiln(["build", "--model", model.dir, "--output", out], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^built .*defaults \(LlamaForCausalLM, fp32\) in [\d.]+ s\n$/);
    const build = JSON.parse(readFileSync(join(out, "config.json"), "utf8")).build;
    assert.equal(build.fuse, true);
    assert.equal(build.randomWeights, false);
    assert.equal(build.quantize, "none");
  });

  test("bad or missing options are user errors (exit 2)", () => {
    const out = join(cache.dir, "never-written");
    const build = (...args: string[]) => kiln(["build", "--model", model.dir, ...args], env);
    assertUserError(build("--output", out, "--dtype", "fp8"), "InvalidArgumentError", /--dtype.*"fp8"/);
    assertUserError(build("--output", out, "--max-seq-len", "0"), "InvalidArgumentError", /--max-seq-len/);
    assertUserError(build("--output", out, "--backend", "tpu"), "InvalidArgumentError", /--backend.*"tpu"/);
    const missing = build();
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /required option '--output <dir>' not specified/);
    const unknown = build("--output", out, "--fuse-everything");
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /unknown option '--fuse-everything'/);
  });
});

describe("kiln tokenize through the CLI (bundled model)", () => {
  test("--text, --json and --no-special-tokens", () => {
    const withBos = kiln(["tokenize", "--text", "ROMEO:", "--json"]);
    assert.equal(withBos.code, 0, withBos.stderr);
    const a = JSON.parse(withBos.stdout);
    const without = kiln(["tokenize", "--text", "ROMEO:", "--json", "--no-special-tokens"]);
    const b = JSON.parse(without.stdout);
    assert.equal(a.ids[0], 0, "BOS first");
    assert.deepEqual(a.ids.slice(1), b.ids);
    assert.deepEqual(a.tokens.slice(1), b.tokens);
    const table = kiln(["tokenize", "--text", "ROMEO:", "--no-special-tokens"]);
    assert.equal(
      table.stdout,
      b.ids
        .map((id: number, i: number) => `${String(id).padStart(8)}  ${JSON.stringify(b.tokens[i])}\n`)
        .join(""),
    );
  });

  test("missing --text and a model without a tokenizer are user errors (exit 2)", () => {
    const missing = kiln(["tokenize"]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /required option '--text <text>' not specified/);
    const model = writeTinyModel("llama");
    try {
      assertUserError(
        kiln(["tokenize", "--model", model.dir, "--text", "hi"]),
        "TokenizerError",
        /tokenizer\.json/,
      );
    } finally {
      model.cleanup();
    }
  });
});
