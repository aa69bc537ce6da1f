#!/usr/bin/env node
// Runs the test suite: node:test through tsx, with an explicit file list (Node 20's --test does not
// expand globs and would silently run nothing). `node scripts/test.mjs gpu` runs test/gpu/ instead.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const suite = process.argv[2] === "gpu" ? "gpu" : "unit";
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
const files = collect("test");
if (files.length === 0) {
  console.error(`no test files found for suite ${suite}`);
  process.exit(1);
}
// GPU tests share one device: run their files one at a time so memory checks see only their own work.
const args = [
  "--import",
  "tsx",
  "--test",
  "--test-reporter=spec",
  ...(suite === "gpu" ? ["--test-concurrency=1"] : []),
  ...files,
];
const r = spawnSync(process.execPath, args, { stdio: "inherit" });
process.exit(r.status ?? 1);
