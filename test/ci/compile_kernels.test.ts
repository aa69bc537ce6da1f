// The unit test that compiles the kernels (test/backends/cuda/kernels_compile.test.ts) skips itself without
// nvcc, so that `npm test` passes on a machine without CUDA. CI runs it with KILN_REQUIRE_NVCC=1, under which
// a missing nvcc fails it; `npm run compile:kernels` (scripts/compile_kernels.mjs), the developers' command
// for the same compilation, fails too, in one line.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

test("compile:kernels fails with one line when nvcc is missing", () => {
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const r = spawnSync(process.execPath, ["scripts/compile_kernels.mjs"], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...env, PATH: "/nonexistent", CUDA_HOME: "/nonexistent/cuda" },
  });
  assert.equal(r.status, 1);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^compile:kernels: nvcc not found in PATH or \/nonexistent\/cuda\/bin /);
});

test("the kernels' compile test fails without nvcc under KILN_REQUIRE_NVCC=1, and skips without it", () => {
  // Not the variable from this run's own environment: CI sets it for the whole of npm test.
  const { NODE_TEST_CONTEXT: _, KILN_REQUIRE_NVCC: __, ...env } = process.env;
  const run = (extra: Record<string, string>) =>
    spawnSync(process.execPath, ["--import", "tsx", "--test", "test/backends/cuda/kernels_compile.test.ts"], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...env, PATH: "/nonexistent", CUDA_HOME: "/nonexistent/cuda", ...extra },
    });
  const required = run({ KILN_REQUIRE_NVCC: "1" });
  assert.equal(required.status, 1, required.stdout);
  assert.match(required.stdout, /^# fail 4$/m, "each of the four compiling suites fails");
  assert.match(
    required.stdout,
    /nvcc not found \(KILN_REQUIRE_NVCC=1\): looked in PATH and \$CUDA_HOME\/bin \(\/nonexistent\/cuda\/bin\)/,
  );
  const optional = run({});
  assert.equal(optional.status, 0, optional.stdout);
  assert.match(optional.stdout, /# SKIP nvcc not found/);
});
