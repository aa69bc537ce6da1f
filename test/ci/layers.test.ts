// The import layering of src/ (docs/LAYERS.md): every import between top-level folders is an allowed
// edge, the two backends are reached only through their doors, and no folders import each other in a
// cycle. The rules are read from docs/LAYERS.md so the written list is the one checked.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const SRC = join(ROOT, "src");

interface Rules {
  /** folder → the folders it may import. */
  edges: Map<string, Set<string>>;
  /** restricted sub-folder (e.g. "backends/cuda") → path prefixes of the files that may import it. */
  doors: Map<string, string[]>;
}

interface Import {
  from: string; // importing file, relative to src/
  to: string; // imported file, relative to src/
}

/** The ```layers and ```doors blocks of docs/LAYERS.md. */
function readRules(markdown: string): Rules {
  const block = (name: string) => {
    const m = markdown.match(new RegExp(`\`\`\`${name}\\n([\\s\\S]*?)\`\`\``));
    assert.ok(m, `docs/LAYERS.md has no \`\`\`${name} block`);
    return m[1].split("\n").filter((l) => l.trim() !== "");
  };
  const edges = new Map<string, Set<string>>();
  for (const line of block("layers")) {
    const [folder, targets = ""] = line.split("->").map((s) => s.trim());
    edges.set(folder, new Set(targets.split(/\s+/).filter(Boolean)));
  }
  const doors = new Map<string, string[]>();
  for (const line of block("doors")) {
    const [target, importers = ""] = line.split("<-").map((s) => s.trim());
    doors.set(target, importers.split(/\s+/).filter(Boolean));
  }
  return { edges, doors };
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|mjs)$/.test(name) ? [path] : [];
  });
}

// `from "./x.ts"` (import and export), `import("./x.ts")`, `import "./x.ts"`, and worker entries
// `new URL("./x.ts", import.meta.url)`; only relative specifiers name files of src/.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|new URL\(\s*)"(\.{1,2}\/[^"]+\.(?:ts|mjs))"/g;

/** Every relative import of a file of src/ that lands in src/. */
function importsOf(file: string, text: string): Import[] {
  const out: Import[] = [];
  for (const m of text.matchAll(SPECIFIER)) {
    const to = relative(SRC, normalize(join(dirname(file), m[1])));
    if (!to.startsWith("..")) out.push({ from: relative(SRC, file), to });
  }
  return out;
}

/** The top-level folder of a path under src/; "index" for the package's public entry (src/index.ts),
 * which sits above every folder; null for the other, shared files directly in src/. */
function folderOf(path: string): string | null {
  if (path === "index.ts") return "index";
  const parts = path.split("/");
  return parts.length > 1 ? parts[0] : null;
}

/** One line per import the rules do not allow. */
function violations(imports: readonly Import[], rules: Rules): string[] {
  const out: string[] = [];
  for (const { from, to } of imports) {
    const a = folderOf(from);
    const b = folderOf(to);
    if (a === null && b !== null) out.push(`${from} → ${to}: the shared files in src/ import no folder`);
    if (a !== null && b !== null && a !== b) {
      const allowed = rules.edges.get(a);
      if (!allowed) out.push(`${from} → ${to}: folder ${a} is not in docs/LAYERS.md`);
      else if (!allowed.has(b)) out.push(`${from} → ${to}: ${a} may not import ${b}`);
    }
    for (const [door, importers] of rules.doors) {
      const inside = (p: string) => p.startsWith(`${door}/`);
      if (inside(to) && !inside(from) && !importers.some((p) => from === p || from.startsWith(p))) {
        out.push(`${from} → ${to}: ${door} is imported only from ${importers.join(", ")}`);
      }
    }
  }
  return out;
}

/** A cycle in a folder graph as "a → b → a", or null. */
function findCycle(graph: ReadonlyMap<string, ReadonlySet<string>>): string | null {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string): string | null => {
    if (state.get(node) === "done") return null;
    if (state.get(node) === "open") return [...path.slice(path.indexOf(node)), node].join(" → ");
    state.set(node, "open");
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, "done");
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

function folderGraph(imports: readonly Import[]): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const { from, to } of imports) {
    const a = folderOf(from);
    const b = folderOf(to);
    if (a === null || b === null || a === b) continue;
    if (!graph.has(a)) graph.set(a, new Set());
    graph.get(a)?.add(b);
  }
  return graph;
}

const rules = readRules(readFileSync(join(ROOT, "docs/LAYERS.md"), "utf8"));
const imports = sourceFiles(SRC).flatMap((f) => importsOf(f, readFileSync(f, "utf8")));

describe("import layering (docs/LAYERS.md)", () => {
  it("every import of src/ runs along an allowed edge and through the backends' doors", () => {
    assert.ok(imports.length > 100, `found only ${imports.length} imports in src/: is the pattern broken?`);
    assert.deepEqual(violations(imports, rules), []);
  });

  it("neither the allowed edges nor the imports form a cycle between folders", () => {
    assert.equal(findCycle(rules.edges), null);
    assert.equal(findCycle(folderGraph(imports)), null);
  });

  it("names every top-level folder of src/", () => {
    const folders = readdirSync(SRC).filter((n) => statSync(join(SRC, n)).isDirectory());
    assert.deepEqual(folders.filter((f) => !rules.edges.has(f)).sort(), []);
  });

  it("reports a backwards import, a closed door and a cycle", () => {
    const backwards = importsOf(
      join(SRC, "engine/format.ts"),
      'import type { X } from "../builder/builder.ts";',
    );
    assert.deepEqual(violations(backwards, rules), [
      "engine/format.ts → builder/builder.ts: engine may not import builder",
    ]);
    const door = importsOf(
      join(SRC, "runtime/session.ts"),
      'const m = await import("../backends/cuda/cuda_backend.ts");',
    );
    assert.match(
      violations(door, rules).join("\n"),
      /runtime\/session\.ts → backends\/cuda\/cuda_backend\.ts: backends\/cuda is imported only from/,
    );
    const cycle = new Map([
      ["engine", new Set(["builder"])],
      ["builder", new Set(["engine"])],
    ]);
    assert.equal(findCycle(cycle), "engine → builder → engine");
  });
});
