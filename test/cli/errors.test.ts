// Every bad input is a named error with a message that says what and where, a non-zero exit code,
// and no stack trace unless --verbose.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { TINY_CONFIGS, tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

describe("kiln CLI: bad input", () => {
  const model = writeTinyModel("llama");
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  after(() => {
    model.cleanup();
    cache.cleanup();
  });

  test("run --json on ids works (the baseline the errors are measured against)", () => {
    const r = kiln(
      ["run", "--model", model.dir, "--input-ids", "1,2,3", "--max-new-tokens", "5", "--greedy", "--json"],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.outputIds.length, 5);
    assert.equal(out.logProbs.length, 5);
    assert.ok(out.logProbs.every((x: number) => x <= 0));
    assert.equal(out.finishReason, "length");
    // The checkpoint is built into the content cache once; the same checkpoint again is a cache hit.
    const again = JSON.parse(
      kiln(["run", "--model", model.dir, "--input-ids", "1,2,3", "--max-new-tokens", "1", "--json"], env)
        .stdout,
    );
    assert.equal(again.engine.origin, "hit");
    assert.equal(again.engine.dir, out.engine.dir);
    assert.ok(["built", "hit"].includes(out.engine.origin), out.engine.origin);
  });

  test("unsupported architecture", () => {
    const m = writeTinyModel("llama");
    try {
      writeFileSync(
        join(m.dir, "config.json"),
        JSON.stringify({ ...TINY_CONFIGS.llama, architectures: ["FalconForCausalLM"] }),
      );
      const r = kiln(["run", "--model", m.dir, "--input-ids", "1,2"], env);
      assertUserError(r, "UnsupportedArchitectureError", /FalconForCausalLM.*LlamaForCausalLM/s);
      const v = kiln(["run", "--model", m.dir, "--input-ids", "1,2", "--verbose"], env);
      assert.match(v.stderr, /\n\s+at /, "--verbose prints the stack");
    } finally {
      m.cleanup();
    }
  });

  test("missing config field", () => {
    const m = writeTinyModel("llama");
    try {
      const { hidden_size: _, ...rest } = TINY_CONFIGS.llama;
      writeFileSync(join(m.dir, "config.json"), JSON.stringify(rest));
      assertUserError(kiln(["run", "--model", m.dir, "--input-ids", "1"], env), "ConfigError", /hidden_size/);
    } finally {
      m.cleanup();
    }
  });

  test("corrupt safetensors header length", () => {
    const m = writeTinyModel("llama");
    try {
      const st = join(m.dir, "model.safetensors");
      const bytes = readFileSync(st);
      bytes.writeBigUInt64LE(BigInt(bytes.length * 2), 0);
      writeFileSync(st, bytes);
      assertUserError(
        kiln(["run", "--model", m.dir, "--input-ids", "1"], env),
        "SafetensorsError",
        /model\.safetensors/,
      );
    } finally {
      m.cleanup();
    }
  });

  test("prompt longer than the context window", () => {
    const ids = Array.from({ length: 64 }, (_, i) => i % 50).join(",");
    assertUserError(
      kiln(["run", "--model", model.dir, "--input-ids", ids], env),
      "ContextWindowExceededError",
      /64 tokens.*context window is 64/,
    );
  });

  test("token id out of range, malformed ids, bad flag values, missing dir", () => {
    assertUserError(
      kiln(["run", "--model", model.dir, "--input-ids", "1,99"], env),
      "InvalidTokenIdError",
      /99.*61/,
    );
    assertUserError(
      kiln(["run", "--model", model.dir, "--input-ids", "1,x"], env),
      "InvalidArgumentError",
      /"x"/,
    );
    assertUserError(
      kiln(["run", "--model", model.dir, "--max-new-tokens", "0"], env),
      "InvalidArgumentError",
      /--max-new-tokens/,
    );
    assertUserError(
      kiln(["run", "--model", model.dir, "--dtype", "fp8"], env),
      "InvalidArgumentError",
      /fp8/,
    );
    assertUserError(
      kiln(["run", "--model", join(model.dir, "nope")], env),
      "InvalidArgumentError",
      /no such directory/,
    );
    const r = kiln(["run", "--bogus-flag"], env);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown option/);
  });

  test("text prompt without a tokenizer says to pass ids", () => {
    assertUserError(
      kiln(["run", "--model", model.dir, "--prompt", "hi"], env),
      "InvalidArgumentError",
      /tokenizer\.json.*token ids/,
    );
  });

  test("unreadable tokenizer", () => {
    const dir = join(cache.dir, "badtok");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "tokenizer.json"), "{ not json");
    assertUserError(
      kiln(["tokenize", "--model", dir, "--text", "hi"], env),
      "TokenizerError",
      /tokenizer\.json/,
    );
  });
});
