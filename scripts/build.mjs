#!/usr/bin/env node
// Builds the package: src/ compiled by tsc (tsconfig.build.json) into dist/, JavaScript and .d.ts,
// with the source's relative `.ts` imports rewritten to `.js`; the worker boot files (src/**/*.mjs,
// plain JavaScript) copied beside them. dist/ mirrors src/, one level below the package root, so
// paths that modules resolve from import.meta.url (kernels/, models/default) hold from either.
// Runs on `prepare`: npm ci, npm pack and installs from git.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const src = join(root, "src");
const dist = join(root, "dist");

let tsc;
try {
  tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc");
} catch {
  console.error("kiln build: typescript is not installed; run `npm ci` (with dev dependencies) first");
  process.exit(1);
}
rmSync(dist, { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
if (r.status !== 0) process.exit(r.status ?? 1);

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
}
for (const f of files(src).filter((f) => f.endsWith(".mjs"))) {
  const to = join(dist, relative(src, f));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(f, to);
}
