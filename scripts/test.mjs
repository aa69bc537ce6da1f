#!/usr/bin/env node
// Runs the test suite: node:test through tsx, with an explicit file list (Node 20's --test does not
// expand globs and would silently run nothing).
//   node scripts/test.mjs                      every test/**/*.test.ts except test/gpu/ (CPU only)
//   node scripts/test.mjs gpu [--allow-no-gpu] test/gpu/ only; fails when no GPU test ran (each GPU
//                                              suite skips itself without a device), unless
//                                              --allow-no-gpu or KILN_ALLOW_NO_GPU=1 allows that
// Test files given after the options replace the collected list (the runner's own tests use this).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const argv = process.argv.slice(2);
const suite = argv[0] === "gpu" ? "gpu" : "unit";
const rest = suite === "gpu" ? argv.slice(1) : argv;
const allowNoGpu = rest.includes("--allow-no-gpu") || process.env.KILN_ALLOW_NO_GPU === "1";
const bad = rest.find((a) => a.startsWith("-") && (a !== "--allow-no-gpu" || suite !== "gpu"));
if (bad) {
  console.error(`unknown option ${bad} (usage: node scripts/test.mjs [gpu [--allow-no-gpu]] [test files])`);
  process.exit(2);
}
const given = rest.filter((a) => !a.startsWith("-"));

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if ((name === "gpu") !== (suite === "gpu") && dir === "test") continue;
      if (name === "fixtures") continue;
      out.push(...collect(path));
    } else if (name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}
const files = given.length > 0 ? given : collect("test");
if (files.length === 0) {
  console.error(`no test files found for suite ${suite}`);
  process.exit(1);
}

// GPU tests share one device: run their files one at a time so memory checks see only their own work.
// A TAP copy of the results goes to a file so that the GPU run can count the tests that really ran.
const tapDir = mkdtempSync(join(tmpdir(), "kiln-test-"));
const tapFile = join(tapDir, "results.tap");
const args = [
  "--import",
  "tsx",
  "--test",
  "--test-reporter=spec",
  "--test-reporter-destination=stdout",
  ...(suite === "gpu"
    ? ["--test-concurrency=1", "--test-reporter=tap", `--test-reporter-destination=${tapFile}`]
    : []),
  ...files,
];
// NODE_TEST_CONTEXT (set when this script runs inside a test) would make the child skip its files.
const { NODE_TEST_CONTEXT: _, ...env } = process.env;
const r = spawnSync(process.execPath, args, { stdio: "inherit", env });
const status = r.status ?? 1;
if (suite === "gpu" && status === 0) {
  const tap = existsSync(tapFile) ? readFileSync(tapFile, "utf8") : "";
  const count = (key) => Number(tap.match(new RegExp(`^# ${key} (\\d+)$`, "m"))?.[1] ?? 0);
  const ran = count("pass") + count("fail");
  if (ran === 0 && !allowNoGpu) {
    const reasons = [...new Set([...tap.matchAll(/# SKIP (.+)$/gm)].map((m) => m[1].trim()))];
    const why = reasons.length > 0 ? reasons.slice(0, 3).join("; ") : "every test was skipped";
    console.error(
      `test:gpu ran no GPU test (skipped: ${why}); run it on a machine with an NVIDIA GPU and driver, or allow this with --allow-no-gpu or KILN_ALLOW_NO_GPU=1`,
    );
    rmSync(tapDir, { recursive: true, force: true });
    process.exit(1);
  }
}
rmSync(tapDir, { recursive: true, force: true });
process.exit(status);
