// `npm run compile:kernels` (scripts/compile_kernels.mjs) is CI's kernel compilation step. The unit test
// that compiles the kernels skips itself without nvcc; the CI step must fail instead, in one line.
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
