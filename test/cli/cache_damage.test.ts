// Fault injection over the engine cache: every kind of damage to a cached entry (a flipped bit, a
// truncated or deleted file of each kind, an edited config, a missing manifest), a dead build's
// temp dir and concurrent writers. Each run exits 0 with the same tokens, reports damage in one line
// and rebuilds; the user's checkpoint is never touched.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { openEngine } from "../../src/engine/reader.ts";
import { engineDamage } from "../../src/engine/verify.ts";
import { kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const KILN = fileURLToPath(new URL("../../bin/kiln", import.meta.url));
const FIXTURE = fileURLToPath(new URL("../fixtures/models/llama3-bpe-trained", import.meta.url));
const RUN = ["run", "--prompt", "Hello", "--max-new-tokens", "4", "--greedy", "--json"];

function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((n) => [n, readFileSync(join(dir, n)).toString("base64")]));
}

function truncate(path: string): void {
  writeFileSync(path, readFileSync(path).subarray(0, 10));
}

function flipAt(path: string, at: (size: number) => number): void {
  const bytes = readFileSync(path);
  bytes[at(bytes.length)] ^= 0x01;
  writeFileSync(path, bytes);
}

describe("cache damage", () => {
  const work = tempCache();
  const model = join(work.dir, "model");
  const env = { KILN_CACHE_DIR: join(work.dir, "cache") };
  let baseline: { outputIds: number[]; text: string };
  let entry: string;
  let checkpoint: Record<string, string>;
  before(() => {
    cpSync(FIXTURE, model, { recursive: true });
    checkpoint = snapshot(model);
    const r = kiln([...RUN, "--model", model], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    baseline = { outputIds: out.outputIds, text: out.text };
    entry = out.engine.dir;
  });
  after(work.cleanup);

  const weightOffset = () => {
    const e = openEngine(entry);
    const w = e.header.weights.find((x) => x.name.includes("layers.0")) ?? e.header.weights[0];
    e.close();
    return w.offset + 3;
  };

  const damages: [string, () => void, RegExp][] = [
    ["bit flip in a weight", () => flipAt(join(entry, "rank0.engine"), weightOffset), /checksum mismatch/],
    ["bit flip in the header", () => flipAt(join(entry, "rank0.engine"), () => 30), /rank0\.engine/],
    ["truncated rank0.engine", () => truncate(join(entry, "rank0.engine")), /rank0\.engine \(10 bytes/],
    ["deleted rank0.engine", () => rmSync(join(entry, "rank0.engine")), /rank0\.engine \(missing\)/],
    ["truncated tokenizer.json", () => truncate(join(entry, "tokenizer.json")), /tokenizer\.json \(10 bytes/],
    ["deleted tokenizer.json", () => rmSync(join(entry, "tokenizer.json")), /tokenizer\.json \(missing\)/],
    [
      "deleted tokenizer_config.json",
      () => rmSync(join(entry, "tokenizer_config.json")),
      /tokenizer_config\.json \(missing\)/,
    ],
    [
      "truncated generation_config.json",
      () => truncate(join(entry, "generation_config.json")),
      /generation_config\.json/,
    ],
    [
      "edited config.json",
      () => {
        const p = join(entry, "config.json");
        const edited = readFileSync(p, "utf8").replace(/"maxSeqLen": \d+/, '"maxSeqLen": 3');
        assert.notEqual(edited, readFileSync(p, "utf8"));
        writeFileSync(p, edited);
      },
      /config\.json \(checksum mismatch\)/,
    ],
    ["deleted config.json", () => rmSync(join(entry, "config.json")), /config\.json \(missing\)/],
    ["deleted manifest", () => rmSync(join(entry, "kiln-engine.json")), /kiln-engine\.json \(missing\)/],
    ["garbage manifest", () => writeFileSync(join(entry, "kiln-engine.json"), "{"), /kiln-engine\.json/],
  ];

  for (const [name, damage, what] of damages) {
    test(`${name}: reported in one line, rebuilt, same tokens`, () => {
      damage();
      const r = kiln([...RUN, "--model", model], env);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^kiln: cached engine [0-9a-f]{32} is damaged \(.+\); rebuilding$/);
      assert.match(lines[0], what);
      const out = JSON.parse(r.stdout);
      assert.equal(out.engine.origin, "built");
      assert.deepEqual({ outputIds: out.outputIds, text: out.text }, baseline);
      assert.deepEqual(engineDamage(entry), []);
      assert.deepEqual(snapshot(model), checkpoint);
      // The next run is a quiet hit.
      const again = kiln([...RUN, "--model", model], env);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(JSON.parse(again.stdout).engine.origin, "hit");
      assert.equal(again.stderr, "");
    });
  }

  test("interrupted build: a dead process's temp dir is swept at the next run", () => {
    const stale = `${entry}.tmp-999999999-1-1`;
    mkdirSync(stale);
    writeFileSync(join(stale, "rank0.engine"), "partial");
    const r = kiln([...RUN, "--model", model], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      readdirSync(join(env.KILN_CACHE_DIR, "engines")).filter((n) => n.includes(".tmp-")),
      [],
    );
  });

  test("concurrent writers: 4 runs on an empty cache all succeed with the same tokens", async () => {
    const cache = join(work.dir, "cache-concurrent");
    const runs = Array.from({ length: 4 }, () => {
      const child = spawn(KILN, [...RUN, "--model", model], {
        env: { ...process.env, KILN_CACHE_DIR: cache },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => {
        stdout += d;
      });
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
        child.on("exit", (code) => resolve({ code, stdout, stderr })),
      );
    });
    for (const r of await Promise.all(runs)) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      const out = JSON.parse(r.stdout);
      assert.deepEqual({ outputIds: out.outputIds, text: out.text }, baseline);
    }
    assert.equal(readdirSync(join(cache, "engines")).length, 1);
    assert.deepEqual(snapshot(model), checkpoint);
  });

  test("a user's engine directory that fails verification is refused with exit 2, never rebuilt", () => {
    const engine = join(work.dir, "my-engine");
    assert.equal(kiln(["build", "--model", model, "--output", engine]).code, 0);
    flipAt(join(engine, "rank0.engine"), (n) => n - 100);
    const before = snapshot(engine);
    const r = kiln([...RUN, "--model", engine], env);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(
      r.stderr,
      /EngineCorruptError: engine \S+my-engine is damaged: rank0\.engine \(.+ checksum mismatch\); rebuild it/,
    );
    assert.equal(r.stdout, "");
    assert.deepEqual(snapshot(engine), before);
  });
});
