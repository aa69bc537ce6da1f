// Every bad input is a named error with a message that says what and where, a non-zero exit code,
// and no stack trace unless --verbose.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildEngine } from "../../src/builder/builder.ts";
import { reportError, userFileSystemError } from "../../src/cli/report_error.ts";
import { EngineError } from "../../src/engine/errors.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { writeEngineSteps } from "../../src/engine/writer.ts";
import { KilnError } from "../../src/errors.ts";
import { FileSystemError } from "../../src/fs_errors.ts";
import { makeDirectory } from "../../src/make_directory.ts";
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

/** A Node errno error as fs throws it. */
function errno(code: string, syscall: string, path?: string): Error {
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), {
    errno: -1,
    code,
    syscall,
    ...(path !== undefined ? { path } : {}),
  });
}

describe("error reports: one line, exit 2 for user errors, exit 1 only for bugs", () => {
  test("a user error is one line; its details and stack only with --verbose", () => {
    const e = new KilnError("engine X is invalid: 2 problems (first: a); rebuild it", {
      details: ["a", "b"],
    });
    const quiet = reportError(e, false);
    assert.equal(quiet.exitCode, 2);
    assert.equal(quiet.text, "kiln: KilnError: engine X is invalid: 2 problems (first: a); rebuild it\n");
    const loud = reportError(e, true).text.split("\n");
    assert.deepEqual(loud.slice(1, 3), ["  a", "  b"]);
    assert.match(loud[3], /^KilnError: engine X/);
  });

  test("a stray newline in a message still prints one line, losing nothing", () => {
    const r = reportError(new KilnError("first\n  second\n\nthird"), false);
    assert.equal(r.text, "kiln: KilnError: first; second; third\n");
  });

  test("errno errors of user-caused kinds are FileSystemErrors naming path, cause and fix", () => {
    for (const [code, reason] of [
      ["EACCES", /permission denied/],
      ["EROFS", /read-only file system/],
      ["ENOSPC", /no space left/],
      ["EDQUOT", /quota/],
      ["ENOTDIR", /is a file, not a directory/],
      ["ELOOP", /symlink loop/],
      ["EISDIR", /is a directory/],
      ["EMFILE", /too many open files/],
    ] as const) {
      const r = reportError(errno(code, "open", "/data/user/file"), false);
      assert.equal(r.exitCode, 2, code);
      assert.match(r.text, /^kiln: FileSystemError: cannot open \/data\/user\/file: /, code);
      assert.match(r.text, reason, code);
      assert.equal(r.text.split("\n").length, 2, `one line: ${r.text}`);
    }
    // A write on a descriptor has no path: the message still says what failed.
    const w = userFileSystemError(errno("ENOSPC", "write"));
    assert.ok(w instanceof FileSystemError);
    assert.match(
      w.message,
      /cannot write to a file kiln was writing: no space left on device \(ENOSPC, write\)/,
    );
  });

  test("bugs stay exit 1: a TypeError, an unknown errno, a missing file of kiln's own", () => {
    assert.equal(reportError(new TypeError("x is undefined"), false).exitCode, 1);
    assert.equal(reportError(errno("EBADF", "read"), false).exitCode, 1);
    const own = fileURLToPath(new URL("../../src/nothing.ts", import.meta.url));
    assert.equal(userFileSystemError(errno("ENOENT", "open", own)), null);
    const built = fileURLToPath(new URL("../../dist/nothing.js", import.meta.url)); // an installed kiln
    assert.equal(userFileSystemError(errno("ENOENT", "open", built)), null);
    assert.ok(userFileSystemError(errno("ENOENT", "open", "/home/u/model/config.json")));
    assert.match(reportError(new TypeError("x"), false).text, /internal error \(a bug/);
  });

  test("an errno error thrown outside the command's promise is still one line and exit 2", () => {
    const preload = fileURLToPath(new URL("../helpers/throw_later.mjs", import.meta.url));
    const env = { NODE_OPTIONS: `--import ${preload}` };
    const user = kiln(["tokenize", "--text", "hi"], { ...env, KILN_TEST_THROW_LATER: "ENOSPC" });
    assert.equal(user.code, 2, user.stderr);
    assert.equal(
      user.stderr,
      "kiln: FileSystemError: cannot write to a file kiln was writing: no space left on device (ENOSPC, write); free some space, or choose another disk\n",
    );
    // An errno kind the user cannot cause stays a bug, reported as one.
    const bug = kiln(["tokenize", "--text", "hi"], { ...env, KILN_TEST_THROW_LATER: "EBADF" });
    assert.equal(bug.code, 1, bug.stderr);
    assert.match(bug.stderr, /^kiln: internal error \(a bug; please report it\):\nError: EBADF/);
  });

  test("makeDirectory makes missing levels and names what is in the way", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-mkdir-"));
    try {
      makeDirectory(join(dir, "a", "b", "c"));
      assert.ok(statSync(join(dir, "a", "b", "c")).isDirectory());
      makeDirectory(join(dir, "a", "b", "c")); // already there: fine
      writeFileSync(join(dir, "f"), "x");
      assert.throws(
        () => makeDirectory(join(dir, "f", "g", "h")),
        (e: unknown) => e instanceof FileSystemError && e.message.includes(`${join(dir, "f")} is a file`),
      );
      // /proc refuses at once (root: ENOENT, others: EACCES) instead of spinning.
      assert.throws(
        () => makeDirectory("/proc/kiln-test/x"),
        (e: unknown) =>
          e instanceof FileSystemError &&
          /\/proc\/kiln-test: (its file system does not allow|permission denied)/.test(e.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a checkpoint whose shapes do not match its config: one line naming the first, --verbose lists all", () => {
    const m = writeTinyModel("llama");
    const out = mkdtempSync(join(tmpdir(), "kiln-out-"));
    try {
      writeFileSync(
        join(m.dir, "config.json"),
        JSON.stringify({ ...TINY_CONFIGS.llama, intermediate_size: 40 }),
      );
      const r = kiln(["build", "--model", m.dir, "--output", join(out, "e")]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.match(
        r.stderr,
        /2 tensor\(s\) whose shapes do not match .*first: model\.layers\.0\.mlp\.down_proj/,
      );
      const v = kiln(["build", "--model", m.dir, "--output", join(out, "e"), "--verbose"]);
      assert.match(
        v.stderr,
        /\n {2}model\.layers\.1\.mlp\.down_proj\.weight: shape \[32,48\], expected \[\?, 40\]\n/,
      );
    } finally {
      m.cleanup();
      rmSync(out, { recursive: true, force: true });
    }
  });

  test("an invalid engine file: one line with the count and the first problem, details list all", () => {
    // An engine whose checksums match but whose header is inconsistent (what a writer bug would make):
    // one weight the plan needs is left out and another's shape does not match its bytes.
    const m = writeTinyModel("llama");
    const root = mkdtempSync(join(tmpdir(), "kiln-out-"));
    try {
      const built = join(root, "built");
      buildEngine(m.dir, built, {});
      const source = openEngine(built);
      const [dropped, misshapen, ...rest] = source.header.weights;
      const weights = [misshapen, ...rest].map((w) => ({
        name: w.name,
        dtype: w.dtype,
        shape: w === misshapen ? [...w.shape, 3] : w.shape,
        byteLength: w.byteLength,
        bytes: () => source.readWeight(w),
      }));
      const out = join(root, "engine");
      const steps = writeEngineSteps(out, source.config, source.header.plan, weights, [], [], "output");
      while (!steps.next().done);
      source.close();
      assert.throws(
        () => openEngine(out),
        (e: unknown) => {
          assert.ok(e instanceof EngineError, String(e));
          assert.doesNotMatch(e.message, /\n/);
          assert.match(e.message, /rank0\.engine is invalid: 2 problem\(s\) \(first: .*\); rebuild it/);
          assert.equal(e.details.length, 2, "every problem is a detail line");
          assert.ok(e.details.some((d) => d.includes(dropped.name)));
          assert.ok(e.details.some((d) => d.includes(misshapen.name)));
          return true;
        },
      );
    } finally {
      m.cleanup();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
