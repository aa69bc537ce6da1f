// kiln as a package: package.json's entry points lead to the build of src/index.ts, the build runs
// on `prepare` (npm ci, npm pack, git installs), CI installs the packed tarball and uses it
// (scripts/pack_smoke.mjs, which does the real install), and bin/kiln runs the source in a checkout
// and the build in an installed package.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
// tsconfig.build.json is JSON without comments.
const build = JSON.parse(readFileSync(join(ROOT, "tsconfig.build.json"), "utf8"));

/** The source file tsconfig.build.json compiles into `distPath` (dist/a/b.js or .d.ts → src/a/b.ts). */
function sourceOf(distPath: string): string {
  const { rootDir, outDir } = build.compilerOptions;
  const rel = distPath.replace(/^\.\//, "");
  assert.ok(rel.startsWith(`${outDir}/`), `${distPath} is not in the build's output (${outDir}/)`);
  return join(rootDir, rel.slice(outDir.length + 1).replace(/(\.d\.ts|\.js)$/, ".ts"));
}

describe("package.json", () => {
  test("exports, main and types lead to the build of src/index.ts", () => {
    const entry = pkg.exports["."];
    assert.deepEqual(Object.keys(entry), ["types", "default"], "types must come first to be seen");
    for (const p of [entry.types, entry.default, pkg.main, pkg.types])
      assert.equal(sourceOf(p), join("src", "index.ts"));
    assert.ok(entry.types.endsWith(".d.ts") && entry.default.endsWith(".js"));
    assert.equal(pkg.types, entry.types);
    assert.equal(pkg.main, entry.default);
  });

  test("the build runs on prepare, emits declarations, and ships with the launcher", () => {
    assert.equal(pkg.scripts.prepare, "node scripts/build.mjs");
    assert.equal(build.compilerOptions.declaration, true);
    assert.equal(build.compilerOptions.rewriteRelativeImportExtensions, true);
    for (const f of ["bin/", `${build.compilerOptions.outDir}/`, "models/default/"])
      assert.ok(pkg.files.includes(f), `files must ship ${f}`);
    assert.equal(pkg.bin.kiln, "./bin/kiln");
    for (const dev of ["tsx", "typescript"])
      assert.ok(!(dev in pkg.dependencies), `${dev} is for development, not a runtime dependency`);
  });

  test("CI installs the packed package and uses it", () => {
    const ci = readFileSync(join(ROOT, ".ci/run"), "utf8").split("\n");
    const smoke = ci.indexOf("node scripts/pack_smoke.mjs");
    assert.ok(smoke > ci.indexOf("npm ci"), ".ci/run must run scripts/pack_smoke.mjs after npm ci");
  });
});

describe("bin/kiln", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A package root holding bin/kiln and the given files (each prints its name and arguments). */
  function layout(files: string[], withTsx: boolean): string {
    const dir = mkdtempSync(join(tmpdir(), "kiln-bin-"));
    dirs.push(dir);
    mkdirSync(join(dir, "bin"));
    copyFileSync(join(ROOT, "bin/kiln"), join(dir, "bin/kiln"));
    for (const f of files) {
      mkdirSync(dirname(join(dir, f)), { recursive: true });
      writeFileSync(join(dir, f), `console.log(${JSON.stringify(f)}, process.argv.slice(2).join(" "));\n`);
    }
    if (withTsx) symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    return dir;
  }
  const runIn = (dir: string) =>
    spawnSync("sh", [join(dir, "bin/kiln"), "run", "--greedy"], { encoding: "utf8" });

  test("installed (dist only, no tsx): runs the build on plain Node", () => {
    const r = runIn(layout(["dist/cli/main.js"], false));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "dist/cli/main.js run --greedy\n");
  });

  test("in a checkout (src and tsx), runs the source even when a build exists", () => {
    const r = runIn(layout(["src/cli/main.ts", "dist/cli/main.js"], true));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "src/cli/main.ts run --greedy\n");
  });

  test("neither: says what to run, exit 1", () => {
    const dir = layout([], false);
    const r = runIn(dir);
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /found neither src\/cli\/main\.ts with tsx \(run npm ci\) nor dist\/cli\/main\.js/,
    );
    assert.ok(!existsSync(join(dir, "dist")));
  });
});
