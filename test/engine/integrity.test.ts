// Engine integrity: every file and weight region is checksummed when written and checked when read;
// `kiln build --output` replaces only kiln engines; concurrent and interrupted builds leave no debris.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { resolveEngine } from "../../src/builder/engine_cache.ts";
import { EngineCorruptError, OutputNotEngineError } from "../../src/engine/errors.ts";
import { MANIFEST_FILE } from "../../src/engine/manifest.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { startRegionCheck } from "../../src/engine/region_check.ts";
import { engineDamage } from "../../src/engine/verify.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

/** Flips one bit at `at` bytes into the weight region named `name` of the engine at `dir`. */
function flipWeightBit(dir: string, name: string, at = 5): void {
  const e = openEngine(dir);
  const w = e.header.weights.find((x) => x.name === name);
  e.close();
  assert.ok(w, name);
  const path = join(dir, "rank0.engine");
  const bytes = readFileSync(path);
  bytes[w.offset + at] ^= 0x10;
  writeFileSync(path, bytes);
}

describe("engine integrity", () => {
  const model = writeTinyModel("llama");
  writeFileSync(join(model.dir, "tokenizer_config.json"), "{}\n");
  const out = tempCache();
  after(() => {
    model.cleanup();
    out.cleanup();
  });

  test("the manifest records every file and one checksum per weight region; a fresh engine verifies", () => {
    const dir = join(out.dir, "fresh");
    buildEngine(model.dir, dir);
    const m = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8"));
    assert.deepEqual(Object.keys(m.files).sort(), ["config.json", "tokenizer_config.json"]);
    const e = openEngine(dir);
    assert.equal(Object.keys(m.rank.regions).length, e.header.weights.length);
    for (const w of e.header.weights) assert.match(m.rank.regions[w.offset], /^[0-9a-f]{16}$/);
    e.close();
    assert.deepEqual(engineDamage(dir), []);
  });

  test("checkRegions on worker threads names every damaged region, on one thread or many", () => {
    const dir = join(out.dir, "two-flipped");
    buildEngine(model.dir, dir);
    const e = openEngine(dir);
    try {
      e.checkRegions(e.header.weights).wait(); // intact: no throw
    } finally {
      e.close();
    }
    const damaged = ["model.layers.0.self_attn.o_proj.weight", "model.norm.weight"];
    for (const name of damaged) flipWeightBit(dir, name);
    const engine = openEngine(dir);
    try {
      for (const threads of [1, 3, 8]) {
        const regions = engine.header.weights.map((w) => ({ ...w, xxh64: "" }));
        const byWorkers = startRegionCheck(join(dir, "rank0.engine"), regions, threads).wait();
        assert.equal(byWorkers.length, regions.length, "an empty expected checksum never matches");
      }
      assert.throws(
        () => engine.checkRegions(engine.header.weights).wait(),
        (err: unknown) =>
          err instanceof EngineCorruptError &&
          damaged.every((n) => err.damage.includes(`${n} at byte`)) &&
          (err.damage.match(/checksum mismatch/g) ?? []).length === 2,
      );
    } finally {
      engine.close();
    }
  });

  test("one flipped bit in a weight is an EngineCorruptError naming the weight, at load and in verify", () => {
    const dir = join(out.dir, "flipped");
    buildEngine(model.dir, dir);
    flipWeightBit(dir, "model.layers.1.mlp.down_proj.weight");
    const e = openEngine(dir); // small files and the header are intact
    const w = e.header.weights.find((x) => x.name === "model.layers.1.mlp.down_proj.weight");
    assert.ok(w);
    assert.throws(
      () => e.readWeight(w),
      (err: unknown) =>
        err instanceof EngineCorruptError &&
        err.message.includes(dir) &&
        /rank0\.engine \(model\.layers\.1\.mlp\.down_proj\.weight at byte \d+: checksum mismatch\)/.test(
          err.message,
        ) &&
        /kiln build/.test(err.message),
    );
    e.close();
    assert.throws(() => ModelRunner.fromEngine(dir), EngineCorruptError);
    // A user's engine is refused, never rebuilt over.
    assert.throws(() => ModelRunner.fromDir(dir), EngineCorruptError);
    const damage = engineDamage(dir);
    assert.equal(damage.length, 1);
    assert.match(damage[0], /down_proj/);
  });

  test("an edited config.json, a truncated tokenizer file and a deleted manifest are damage", () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      [
        "config",
        (d) =>
          writeFileSync(
            join(d, "config.json"),
            readFileSync(join(d, "config.json"), "utf8").replace("64", "65"),
          ),
        /config\.json \(checksum mismatch\)/,
      ],
      [
        "tokenizer",
        (d) => writeFileSync(join(d, "tokenizer_config.json"), "{"),
        /tokenizer_config\.json \(1 bytes/,
      ],
      ["tokmissing", (d) => rmSync(join(d, "tokenizer_config.json")), /tokenizer_config\.json \(missing\)/],
      ["manifest", (d) => rmSync(join(d, MANIFEST_FILE)), /kiln-engine\.json \(missing\)/],
      ["header", (d) => flipHeader(d), /rank0\.engine \(header: checksum mismatch\)/],
    ];
    for (const [name, damage, message] of cases) {
      const dir = join(out.dir, `dmg-${name}`);
      buildEngine(model.dir, dir);
      damage(dir);
      assert.throws(
        () => openEngine(dir),
        (e: unknown) => e instanceof EngineCorruptError && message.test(e.message),
        name,
      );
      assert.equal(engineDamage(dir).length, 1, name);
    }
  });
});

/** Changes one character of the header JSON (inside a weight name) without changing its length. */
function flipHeader(dir: string): void {
  const path = join(dir, "rank0.engine");
  const bytes = readFileSync(path);
  const at = bytes.indexOf("model.norm.weight", 24, "latin1");
  bytes[at] = "M".charCodeAt(0);
  writeFileSync(path, bytes);
}

describe("build --output replaces only kiln engines", () => {
  const model = writeTinyModel("llama");
  const out = tempCache();
  after(() => {
    model.cleanup();
    out.cleanup();
  });

  test("a directory of user files or a file at --output is refused and left as it was", () => {
    const userDir = join(out.dir, "photos");
    mkdirSync(userDir);
    writeFileSync(join(userDir, "a.jpg"), "precious");
    assert.throws(() => buildEngine(model.dir, userDir), OutputNotEngineError);
    assert.deepEqual(readdirSync(userDir), ["a.jpg"]);
    assert.equal(readFileSync(join(userDir, "a.jpg"), "utf8"), "precious");
    const userFile = join(out.dir, "notes.txt");
    writeFileSync(userFile, "keep me");
    assert.throws(() => buildEngine(model.dir, userFile), OutputNotEngineError);
    assert.equal(readFileSync(userFile, "utf8"), "keep me");
    // No temp directory is left beside them.
    assert.deepEqual(readdirSync(out.dir).sort(), ["notes.txt", "photos"]);
  });

  test("the checkpoint itself as --output is refused (it is not an engine)", () => {
    const before = readdirSync(model.dir).sort();
    assert.throws(() => buildEngine(model.dir, model.dir), OutputNotEngineError);
    assert.deepEqual(readdirSync(model.dir).sort(), before);
  });

  test("an existing engine (this format or format 1) is replaced; an empty directory is filled", () => {
    const dir = join(out.dir, "engine");
    buildEngine(model.dir, dir);
    buildEngine(model.dir, dir, { dtype: "bf16" });
    assert.equal(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).build.dtype, "bf16");
    rmSync(join(dir, MANIFEST_FILE)); // what a format-1 engine looks like
    buildEngine(model.dir, dir);
    assert.deepEqual(engineDamage(dir), []);
    const empty = join(out.dir, "empty");
    mkdirSync(empty);
    buildEngine(model.dir, empty);
    assert.deepEqual(engineDamage(empty), []);
  });
});

describe("temp dirs of dead builds are swept", () => {
  const model = writeTinyModel("llama");
  const cache = tempCache();
  after(() => {
    model.cleanup();
    cache.cleanup();
  });

  test("the next cache access removes a dead process's temp dir and keeps a live one's", () => {
    const first = resolveEngine(model.dir, {}, cache.dir);
    const engines = join(cache.dir, "engines");
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    assert.ok(deadPid);
    const dead = `${first.dir}.tmp-${deadPid}-123-4`;
    const live = `${first.dir}.tmp-${process.pid}-123-4`;
    const other = join(engines, "not-ours");
    for (const d of [dead, live, other]) mkdirSync(d);
    writeFileSync(join(dead, "rank0.engine"), "partial");
    assert.equal(resolveEngine(model.dir, {}, cache.dir).origin, "hit");
    const left = readdirSync(engines);
    assert.ok(!left.some((n) => n.includes(`.tmp-${deadPid}-`)), left.join(" "));
    assert.ok(
      left.some((n) => n.includes(`.tmp-${process.pid}-`)),
      left.join(" "),
    );
    assert.ok(left.includes("not-ours"));
  });

  test("a build into --output sweeps only that output's dead temp dirs, never other names", () => {
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    const parent = join(cache.dir, "user-folder");
    mkdirSync(parent);
    const output = join(parent, "engine");
    const ours = `${output}.tmp-${deadPid}-1-1`;
    const theirs = join(parent, `photos.tmp-${deadPid}-1-1`);
    for (const d of [ours, theirs]) mkdirSync(d);
    buildEngine(model.dir, output);
    assert.deepEqual(readdirSync(parent).sort(), ["engine", `photos.tmp-${deadPid}-1-1`]);
  });
});
