// --kv-cache-free-gpu-mem-fraction and --max-kv-tokens on run, chat and bench: bad values are
// InvalidArgumentError naming the flag (exit 2, no stack trace); a request the whole pool cannot hold
// is the executor's RequestTooLargeError naming the flags that would fix it. --kv-cache-dtype on run,
// chat, bench, serve and eval: an unknown value is InvalidArgumentError (fp8 runs on both backends; an
// engine without the CUDA FP8 kernels is refused when it opens: test/backends/cuda/kv_cache_kernels.test.ts).
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

describe("kiln KV cache flags", () => {
  const model = writeTinyModel("llama"); // KV blocks of 16 tokens
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  after(() => {
    model.cleanup();
    cache.cleanup();
  });
  const userError = (args: string[], errorClass: string, message: RegExp) => {
    const r = kiln(args, env);
    assertUserError(r, errorClass, message);
    assert.equal(r.code, 2, r.stderr);
  };

  test("bad values are rejected before anything is built, on run, chat and bench", () => {
    const fraction = "--kv-cache-free-gpu-mem-fraction";
    const cases: [string[], RegExp][] = [
      [
        ["run", fraction, "0"],
        /--kv-cache-free-gpu-mem-fraction expects a number in \(0, 1\] such as 0\.9, got "0"/,
      ],
      [["run", fraction, "1.5"], /--kv-cache-free-gpu-mem-fraction .*got "1\.5"/],
      [["run", fraction, "most"], /--kv-cache-free-gpu-mem-fraction .*got "most"/],
      [["run", "--max-kv-tokens", "0"], /--max-kv-tokens expects an integer ≥ 1, got "0"/],
      [["run", "--max-kv-tokens", "1e3"], /--max-kv-tokens expects an integer ≥ 1, got "1e3"/],
      [["chat", fraction, "-0.5"], /--kv-cache-free-gpu-mem-fraction .*got "-0\.5"/],
      [["chat", "--max-kv-tokens", "many"], /--max-kv-tokens .*got "many"/],
      [["bench", fraction, "2"], /--kv-cache-free-gpu-mem-fraction .*got "2"/],
      [["bench", "--max-kv-tokens", "2.5"], /--max-kv-tokens .*got "2\.5"/],
    ];
    for (const [args, message] of cases)
      userError([...args, "--model", model.dir], "InvalidArgumentError", message);
  });

  test("run: --max-kv-tokens below one block, and a pool too small for the request", () => {
    const run = ["run", "--model", model.dir, "--input-ids", "1,2,3", "--greedy", "--ignore-eos", "--json"];
    userError(
      [...run, "--max-kv-tokens", "8"],
      "InvalidKvCacheConfigError",
      /maxTokens 8 is less than one KV block of 16 tokens; give at least 16 \(--max-kv-tokens\)/,
    );
    // 3 + 20 tokens need ⌈23/16⌉ = 2 blocks; 16 tokens are one.
    userError(
      [...run, "--max-kv-tokens", "16", "--max-new-tokens", "20"],
      "RequestTooLargeError",
      /needs 2 KV blocks .* the KV cache holds 1 blocks \(16 tokens\); lower maxNewTokens to at most 13.*--max-kv-tokens/,
    );
    const r = kiln(
      [...run, "--max-kv-tokens", "48", "--kv-cache-free-gpu-mem-fraction", "0.5", "--max-new-tokens", "20"],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).outputIds.length, 20);
  });

  test("--kv-cache-dtype: an unknown value is a named error", () => {
    for (const cmd of ["run", "chat", "bench", "serve", "eval"]) {
      // chat reads its template before the build: the bundled model has one
      const m = cmd === "chat" ? [] : ["--model", model.dir];
      const extra = cmd === "eval" ? ["--perplexity", "README.md"] : [];
      userError(
        [cmd, ...m, ...extra, "--kv-cache-dtype", "fp9"],
        "InvalidArgumentError",
        /--kv-cache-dtype must be one of auto, fp8, got "fp9"/,
      );
    }
  });

  test("run --kv-cache-dtype fp8 generates on the CPU; auto is the default", () => {
    const run = ["run", "--model", model.dir, "--input-ids", "1,2,3", "--greedy", "--ignore-eos", "--json"];
    for (const dtype of ["fp8", "auto"]) {
      const r = kiln([...run, "--max-new-tokens", "5", "--kv-cache-dtype", dtype], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).outputIds.length, 5);
    }
  });
});
