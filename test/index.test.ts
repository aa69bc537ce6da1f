// The public entry (src/index.ts, what `import ... from "kiln"` gives): every named error a library
// call can raise is exported, so a user can catch it by class, and nothing internal is.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as kiln from "../src/index.ts";

const SRC = fileURLToPath(new URL("../src", import.meta.url));

/** KilnError subclasses that only a command raises (no exported API reaches them), with why. */
const CLI_ONLY_ERRORS: Record<string, string> = {
  ConflictingFlagsError: "two command-line flags that exclude each other (src/cli/)",
  OutputOverlapsModelError: "kiln build --output inside --model (src/cli/build_paths.ts)",
  BuildInterruptedError: "Ctrl-C during kiln build (src/cli/interruptible.ts)",
  BenchShapeError: "kiln bench's shapes (runtime/bench.ts is not exported)",
  BenchOptionError: "kiln bench's options (runtime/bench.ts is not exported)",
  ChatTemplateError: "chat templates, used by kiln chat and run --chat only",
  NoChatTemplateError: "chat templates, used by kiln chat and run --chat only",
  HttpError: "kiln serve's HTTP answers (src/server/), never raised by a library call",
  ServeBenchError: "kiln bench --serve's options and endpoint (src/server/serve_bench.ts is not exported)",
  ListenError: "kiln serve's --host and --port (src/server/open_server.ts is not exported)",
  EvalTextError: "kiln eval's --perplexity file (src/runtime/perplexity.ts is not exported)",
  TextTooShortError: "kiln eval's text (src/runtime/perplexity.ts is not exported)",
  PerplexityOptionsError: "kiln eval's --max-length and --stride (src/runtime/perplexity.ts is not exported)",
};

/** Exported second names of error classes (alias → the class), kept so users' catch clauses work. */
const ERROR_ALIASES: Record<string, string> = { KvCacheExhaustedError: "KvCacheNoRoomError" };

/** The exported values that are not errors: the runners and the constants. */
const API_VALUES = [
  "BUNDLED_MODEL_DIR",
  "Executor",
  "ExecutorThread",
  "GenerationSession",
  "KILN_VERSION",
  "ModelRunner",
  "Session",
  "openExecutor",
  "openExecutorThread",
];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Every class in src/ that extends KilnError, directly or through another such class: name → file. */
function kilnErrorClasses(): Map<string, string> {
  const parent = new Map<string, { base: string; file: string }>();
  for (const file of sources(SRC)) {
    for (const m of readFileSync(file, "utf8").matchAll(/export class (\w+)(?:<[^>]*>)? extends (\w+)/g))
      parent.set(m[1], { base: m[2], file: relative(SRC, file) });
  }
  const isKiln = (name: string): boolean =>
    name === "KilnError" || (parent.has(name) && isKiln((parent.get(name) as { base: string }).base));
  return new Map(
    [...parent].filter(([name]) => name === "KilnError" || isKiln(name)).map(([n, p]) => [n, p.file]),
  );
}

describe("src/index.ts, the package entry", () => {
  const exported = kiln as unknown as Record<string, unknown>;
  const errors = kilnErrorClasses();

  test("exports every KilnError subclass a library call can raise, as the class itself", () => {
    assert.ok(errors.size > 30, `found only ${errors.size} error classes: the scan is broken`);
    const missing = [...errors.keys()].filter((n) => !(n in CLI_ONLY_ERRORS) && !(n in exported));
    assert.deepEqual(missing, [], "add these errors to src/index.ts (or to CLI_ONLY_ERRORS, with why)");
    for (const [name] of errors) {
      if (name in CLI_ONLY_ERRORS) continue;
      const cls = exported[name] as { prototype: unknown; name: string };
      assert.ok(
        cls.prototype instanceof kiln.KilnError || name === "KilnError",
        `${name} is not a KilnError`,
      );
      assert.equal(cls.name, name);
    }
  });

  test("the CLI-only list names real errors, and none of them is exported", () => {
    for (const name of Object.keys(CLI_ONLY_ERRORS)) {
      assert.ok(errors.has(name), `${name} is in CLI_ONLY_ERRORS but is no KilnError subclass in src/`);
      assert.ok(!(name in exported), `${name} is exported but listed as CLI-only`);
    }
  });

  test("exports nothing internal: only the API values and named errors", () => {
    const others = Object.keys(exported).filter((n) => !errors.has(n) && !(n in ERROR_ALIASES));
    assert.deepEqual(others.sort(), API_VALUES);
  });

  test("each error alias is exported as the very class it names, which is itself exported", () => {
    for (const [alias, name] of Object.entries(ERROR_ALIASES)) {
      assert.ok(errors.has(name), `${alias} aliases ${name}, which is no KilnError subclass in src/`);
      assert.ok(!errors.has(alias), `${alias} is a class of its own in src/, not an alias`);
      assert.equal(exported[alias], exported[name], `${alias} is not ${name}`);
    }
  });

  test("the bundled model directory is the repository's models/default", () => {
    assert.equal(kiln.BUNDLED_MODEL_DIR, fileURLToPath(new URL("../models/default", import.meta.url)));
    assert.ok(readdirSync(kiln.BUNDLED_MODEL_DIR).includes("config.json"));
  });
});
