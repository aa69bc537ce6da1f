// The README is the first thing a new user runs. These checks keep it rendering as written (every
// fence closed, no section swallowed by a code block, each table one table), its command reference
// equal to what each command's parser takes (both ways), its links pointing at files, its install
// and test commands the ones CI runs, and its library example running.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Command } from "commander";
import { registerBench } from "../../src/cli/bench.ts";
import { registerBuild } from "../../src/cli/build.ts";
import { registerChat } from "../../src/cli/chat.ts";
import { registerEval } from "../../src/cli/eval.ts";
import { registerRun } from "../../src/cli/run.ts";
import { registerServe } from "../../src/cli/serve.ts";
import { registerTokenize } from "../../src/cli/tokenize.ts";
import { registerVerify } from "../../src/cli/verify.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");
const lines = README.split("\n");

/** Markdown problems a renderer would show: unclosed fences, headings inside code, split tables. */
export function markdownProblems(text: string): string[] {
  const problems: string[] = [];
  let fence: { line: number; marker: string } | null = null;
  const rows = text.split("\n");
  rows.forEach((l, i) => {
    const m = /^(```+|~~~+)/.exec(l);
    if (m) {
      if (!fence) fence = { line: i + 1, marker: m[1] };
      else if (l.trim() === fence.marker) fence = null;
    } else if (fence && /^#{1,6} /.test(l)) {
      problems.push(`line ${i + 1}: heading "${l}" inside the code block opened at line ${fence.line}`);
    }
    if (!fence && l.startsWith("|") && rows[i - 1] === "" && rows[i - 2]?.startsWith("|")) {
      problems.push(`line ${i + 1}: a blank line splits this table row off the table above`);
    }
  });
  if (fence)
    problems.push(`the code block opened at line ${(fence as { line: number }).line} is never closed`);
  return problems;
}

/** The fenced block right after a heading. */
function blockAfter(heading: string): string[] {
  const h = lines.indexOf(heading);
  assert.ok(h >= 0, `README has no "${heading}"`);
  const open = lines.findIndex((l, i) => i > h && l.startsWith("```"));
  const close = lines.findIndex((l, i) => i > open && l.startsWith("```"));
  return lines.slice(open + 1, close);
}

const flagsIn = (text: string) => new Set(text.match(/--[a-z][a-z0-9-]*/g) ?? []);

describe("README.md", () => {
  test("renders as written: fences closed, no heading inside code, each table one table", () => {
    assert.deepEqual(markdownProblems(README), []);
    assert.deepEqual(markdownProblems(readFileSync(join(ROOT, "docs/TUNING.md"), "utf8")), []);
  });

  test("the checks catch a stray fence and a split table", () => {
    assert.equal(markdownProblems("```\n\n## Supported models\n").length, 2);
    assert.equal(markdownProblems("| a | b |\n|---|---|\n| x | y |\n\n| z | w |\n").length, 1);
  });

  test("Commands lists exactly the options each command's parser takes", () => {
    const program = new Command("kiln");
    for (const register of [
      registerRun,
      registerChat,
      registerBuild,
      registerBench,
      registerServe,
      registerTokenize,
      registerVerify,
      registerEval,
    ])
      register(program);
    // Documented flags per command: its usage lines, the shared lines, and for run and chat the decoding paragraph.
    const documented = new Map<string, Set<string>>(program.commands.map((c) => [c.name(), new Set()]));
    const add = (cmds: string[], text: string) => {
      for (const c of cmds) for (const f of flagsIn(text)) documented.get(c)?.add(f);
    };
    let current: string[] = [];
    for (const l of blockAfter("## Commands")) {
      const usage = /^kiln (\w+)/.exec(l);
      const shared = /^([a-z, ]+): /.exec(l);
      if (usage) current = [usage[1]];
      else if (shared)
        current = shared[1] === "every command" ? [...documented.keys()] : shared[1].split(", ");
      assert.ok(usage || shared || /^\s/.test(l), `unexpected line in the Commands block: ${l}`);
      add(current, l);
    }
    // The decoding paragraph: flags of run and chat, then ("`run` also takes") run's own.
    const from = README.indexOf("`kiln run` and `kiln chat` have a flag for every");
    assert.ok(from >= 0, "the README's decoding-flags paragraph is missing");
    const para = README.slice(from, README.indexOf("\n\n", from));
    const split = para.indexOf("`run` also takes");
    add(["run", "chat"], para.slice(0, split));
    add(["run"], para.slice(split));
    for (const c of program.commands) {
      const parsed = new Set(c.options.map((o) => o.long as string));
      parsed.add("--verbose"); // added to every command by src/cli/main.ts
      const doc = documented.get(c.name()) as Set<string>;
      const undocumented = [...parsed].filter((f) => !doc.has(f));
      const unknown = [...doc].filter((f) => !parsed.has(f));
      assert.deepEqual(undocumented, [], `kiln ${c.name()}: options missing from the README`);
      assert.deepEqual(unknown, [], `kiln ${c.name()}: the README lists options it does not take`);
    }
  });

  test("relative links point at files", () => {
    for (const m of README.matchAll(/\]\(([^)#]+)\)/g)) {
      if (/^[a-z]+:/.test(m[1])) continue;
      assert.ok(existsSync(join(ROOT, m[1])), `README links to ${m[1]}, which does not exist`);
    }
  });

  test("CI runs the Quick start's install and test commands, in order", () => {
    const ci = readFileSync(join(ROOT, ".ci/run"), "utf8").split("\n");
    const quick = blockAfter("## Quick start")
      .map((l) => l.replace(/#.*/, "").trim())
      .filter((l) => l.startsWith("npm "));
    assert.deepEqual(quick, ["npm ci", "npm test"]);
    const at = quick.map((cmd) => ci.indexOf(cmd));
    assert.ok(at.every((i) => i >= 0) && at[0] < at[1], `.ci/run must run ${quick.join(", then ")}`);
    // The kernels compile inside npm test (kernels_compile.test.ts), which must fail, not skip, without nvcc.
    const nvcc = ci.indexOf("export KILN_REQUIRE_NVCC=1");
    assert.ok(nvcc >= 0 && nvcc < at[1], ".ci/run must require nvcc (KILN_REQUIRE_NVCC=1) before npm test");
    assert.ok(
      ci.includes("git diff --exit-code -- package-lock.json"),
      ".ci/run must check the lock is in sync",
    );
    assert.ok(
      !ci.some((l) => /^npm install(?!.*--package-lock-only)/.test(l)),
      ".ci/run must install with npm ci",
    );
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    assert.ok(pkg.scripts["compile:kernels"], "package.json has no compile:kernels script");
  });

  test("the library example imports the package, runs, and gathers streamed text per prompt", () => {
    const js = blockAfter("## Library use").join("\n");
    if (/stream\(\[/.test(js))
      assert.match(js, /ev\.promptIndex\]/, "stream events of several prompts interleave");
    // What a user writes: the package's name, never a path into the checkout. The test runs it
    // against the source (src/index.ts, the package entry); scripts/pack_smoke.mjs runs it as written
    // against the packed and installed package.
    const imports = [...js.matchAll(/from "([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(imports)], ["kiln"], "the example imports from the package, by name");
    const dir = mkdtempSync(join(tmpdir(), "kiln-readme-"));
    try {
      const entry = pathToFileURL(join(ROOT, "src/index.ts")).href;
      const file = join(dir, "example.mts");
      writeFileSync(file, js.replaceAll('from "kiln"', `from "${entry}"`));
      const { NODE_TEST_CONTEXT: _, ...env } = process.env;
      const r = spawnSync(process.execPath, ["--import", "tsx", file], {
        cwd: ROOT,
        encoding: "utf8",
        env: { ...env, KILN_CACHE_DIR: join(dir, "cache") },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(r.stdout.trim().length > 0, "the example printed nothing");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
