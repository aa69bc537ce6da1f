#!/usr/bin/env node
// kiln as a user installs it: packs the tarball (`npm pack`, which builds dist/ on `prepare`), checks
// what it holds, installs it into an empty project with production dependencies only, and there runs
//   npx kiln run                       the CLI, on plain Node (no tsx, no TypeScript installed)
//   scripts/pack_smoke/use_kiln.mjs    `import { ModelRunner } from "kiln"` in plain JavaScript
//   the README's library example       as written
//   dist/worker_boot.mjs               starting a worker entry without tsx
//   npx kiln serve                     the server, its executor on a worker thread, one completion
//   scripts/pack_smoke/use_kiln.ts     typechecked against the shipped .d.ts (the repo's tsc)
// Needs only the npm registry, and not even that once `npm ci` has filled the cache (--prefer-offline).
// Usage: node scripts/pack_smoke.mjs [--keep]   (--keep leaves the temporary project for a look)
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const here = join(root, "scripts", "pack_smoke");
const keep = process.argv.includes("--keep");
const work = mkdtempSync(join(tmpdir(), "kiln-pack-"));
const project = join(work, "project");
// A private engine cache, and no NODE_TEST_CONTEXT (set when a test runs this) leaking into children.
const { NODE_TEST_CONTEXT: _, ...baseEnv } = process.env;
const env = { ...baseEnv, KILN_CACHE_DIR: join(work, "cache") };

function fail(what) {
  console.error(`pack smoke: ${what}`);
  console.error(`(the temporary project is kept at ${work})`);
  process.exit(1);
}

/** Runs a command; its output on failure, or its stdout. */
function run(cmd, args, cwd, { expectCode = 0 } = {}) {
  console.log(`$ ${[cmd, ...args].join(" ")}   (in ${cwd})`);
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) fail(`${cmd} did not start: ${r.error.message}`);
  if (r.status !== expectCode)
    fail(`exit ${r.status} (expected ${expectCode})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

try {
  // 1. The tarball, and what it must hold: each source file's compiled twin, the kernels NVRTC reads,
  // the bundled model, the launcher; no sources, tests or tools.
  const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work], root).stdout);
  const tarball = join(work, packed.filename);
  const shipped = new Set(packed.files.map((f) => f.path));
  const need = [
    "bin/kiln",
    "package.json",
    "models/default/model.safetensors",
    "models/default/tokenizer.json",
  ];
  for (const f of walk(join(root, "src"))) {
    const rel = relative(join(root, "src"), f);
    if (rel.endsWith(".ts")) need.push(`dist/${rel.slice(0, -3)}.js`, `dist/${rel.slice(0, -3)}.d.ts`);
    else if (rel.endsWith(".mjs")) need.push(`dist/${rel}`); // worker boot files
  }
  for (const f of readdirSync(join(root, "kernels")))
    if (f.endsWith(".cu") || f.endsWith(".cuh")) need.push(`kernels/${f}`);
  const missing = need.filter((f) => !shipped.has(f));
  if (missing.length > 0) fail(`the tarball lacks ${missing.join(", ")}`);
  const stray = [...shipped].filter((f) => /^(src|test|tools|scripts|node_modules|docs)\//.test(f));
  if (stray.length > 0) fail(`the tarball ships files users do not need: ${stray.slice(0, 10).join(", ")}`);
  console.log(`${packed.filename}: ${shipped.size} files, ${(packed.size / 2 ** 20).toFixed(1)} MiB`);

  // 2. An empty project with kiln and its production dependencies only.
  mkdirSync(project);
  writeFileSync(
    join(project, "package.json"),
    `${JSON.stringify({ name: "kiln-pack-smoke", private: true, type: "module" }, null, 2)}\n`,
  );
  run("npm", ["install", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", tarball], project);
  for (const dev of ["tsx", "typescript", "@biomejs/biome"])
    if (existsSync(join(project, "node_modules", dev))) fail(`${dev} was installed: it is a dev dependency`);

  // 3. The CLI, on plain Node. --no: never fetch some other package named kiln from the registry.
  const text = run("npx", ["--no", "kiln", "run", "--max-new-tokens", "8"], project).stdout;
  if (!text.startsWith("ROMEO:"))
    fail(`kiln run printed ${JSON.stringify(text)}, not a continuation of ROMEO:`);
  const cliJson = JSON.parse(
    run(
      "npx",
      ["--no", "kiln", "run", "--greedy", "--ignore-eos", "--max-new-tokens", "8", "--json"],
      project,
    ).stdout,
  );
  const bad = run("npx", ["--no", "kiln", "run", "--max-new-tokens", "x"], project, { expectCode: 2 }).stderr;
  if (!/^kiln: \w+Error: /.test(bad) || bad.trim().includes("\n"))
    fail(`a user error must print one line naming its class, got: ${bad}`);

  // 4. The library from plain JavaScript: the same greedy tokens as the CLI.
  copyFileSync(join(here, "use_kiln.mjs"), join(project, "use_kiln.mjs"));
  const lib = JSON.parse(run("node", ["use_kiln.mjs"], project).stdout);
  if (JSON.stringify(lib.outputIds) !== JSON.stringify(cliJson.outputIds))
    fail(`the library gave ${lib.outputIds}, kiln run --json ${cliJson.outputIds}`);

  // 5. The README's library example, as written.
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const example = /## Library use\n+```js\n([\s\S]*?)\n```/.exec(readme);
  if (!example) fail("README.md has no ```js block after ## Library use");
  writeFileSync(join(project, "example.mjs"), `${example[1]}\n`);
  if (run("node", ["example.mjs"], project).stdout.trim() === "") fail("the README example printed nothing");

  // 6. The worker boot (dist/worker_boot.mjs: compile and region-check workers) loads a compiled entry
  // on plain Node. A worker that fails to start is only slower (its jobs fall back to the main thread),
  // so nothing above would notice; the entry here marks the slot as the real workers do.
  writeFileSync(
    join(project, "probe_worker.mjs"),
    'import { workerData } from "node:worker_threads";\nAtomics.store(workerData.shared, workerData.slot, 1);\n',
  );
  writeFileSync(
    join(project, "probe.mjs"),
    [
      'import { Worker } from "node:worker_threads";',
      "const shared = new Int32Array(new SharedArrayBuffer(8));",
      'const boot = new URL("./node_modules/kiln/dist/worker_boot.mjs", import.meta.url);',
      'const entry = new URL("./probe_worker.mjs", import.meta.url).href;',
      "const w = new Worker(boot, { workerData: { entry, shared, slot: 1 } });",
      'w.on("exit", () => console.log(shared[1]));',
      "",
    ].join("\n"),
  );
  const slot = run("node", ["probe.mjs"], project).stdout.trim();
  if (slot !== "1") fail(`dist/worker_boot.mjs did not start its entry (slot ${slot}, want 1)`);

  // 7. `kiln serve` from the package: its executor runs on a worker thread whose entry is compiled
  // (dist/runtime/executor_thread_entry.js); one completion through it, then SIGTERM (exit 0).
  copyFileSync(join(here, "serve_probe.mjs"), join(project, "serve_probe.mjs"));
  const served = JSON.parse(run("node", ["serve_probe.mjs"], project).stdout);
  if (served.exit !== 0 || typeof served.text !== "string" || served.text === "")
    fail(`kiln serve from the package: ${JSON.stringify(served)}`);

  // 8. TypeScript against the shipped declarations, as a Node ESM project (NodeNext) sees them.
  copyFileSync(join(here, "use_kiln.ts"), join(project, "use_kiln.ts"));
  const tsconfig = {
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2023"],
      strict: true,
      noEmit: true,
      skipLibCheck: false, // check the shipped .d.ts files themselves, not only their use
      // A Node project has @types/node; the smoke borrows the repo's rather than install it.
      typeRoots: [join(root, "node_modules", "@types")],
      types: ["node"],
    },
    files: ["use_kiln.ts"],
  };
  writeFileSync(join(project, "tsconfig.json"), `${JSON.stringify(tsconfig, null, 2)}\n`);
  run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", project], project);

  console.log("pack smoke: the packed kiln installs, runs and typechecks");
} finally {
  if (!keep && process.exitCode === undefined) rmSync(work, { recursive: true, force: true });
}
