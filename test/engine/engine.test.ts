// Engine format: self-describing, versioned, validated on load; the content-addressed cache hits on
// a second run and misses when anything that shapes the engine changes.
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { resolveEngine } from "../../src/builder/engine_cache.ts";
import { MissingTensorError } from "../../src/checkpoint/errors.ts";
import { resolveBuildConfig } from "../../src/engine/build_config.ts";
import { cacheRoot, engineCacheKey } from "../../src/engine/cache_dirs.ts";
import { EngineCorruptError, EngineError } from "../../src/engine/errors.ts";
import { ENGINE_FORMAT_VERSION } from "../../src/engine/format.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { KILN_VERSION } from "../../src/version.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

describe("engine format", () => {
  const model = writeTinyModel("llama");
  after(model.cleanup);

  test("config.json describes the engine; weights round-trip in the requested dtype", () => {
    const dir = join(model.dir, "e-bf16");
    buildEngine(model.dir, dir, { dtype: "bf16" });
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    assert.equal(cfg.format, "kiln-engine");
    assert.equal(cfg.formatVersion, ENGINE_FORMAT_VERSION);
    assert.equal(cfg.kilnVersion, KILN_VERSION);
    assert.equal(cfg.model.architecture, "LlamaForCausalLM");
    assert.equal(cfg.build.dtype, "bf16");
    assert.equal(cfg.target.backend, "cpu");
    assert.equal(cfg.maxSeqLen, 64);
    assert.match(cfg.source.checkpointHash, /^[0-9a-f]{64}$/);
    const e = openEngine(dir);
    for (const w of e.header.weights) {
      assert.equal(w.dtype, "BF16");
      assert.equal(w.offset % 256, 0);
    }
    e.close();
  });

  test("kiln version matches package.json", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    assert.equal(KILN_VERSION, pkg.version);
  });

  test("a different format version is rejected with a rebuild hint", () => {
    const dir = join(model.dir, "e-old");
    buildEngine(model.dir, dir);
    const manifestPath = join(dir, "kiln-engine.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    writeFileSync(manifestPath, JSON.stringify({ ...manifest, formatVersion: 999 }));
    assert.throws(
      () => openEngine(dir),
      (e: unknown) => e instanceof EngineError && /version 999.*rebuild/s.test(e.message),
    );
  });

  test("a format-1 engine (no manifest) gets the format-version message, not damage", () => {
    const dir = join(model.dir, "e-v1");
    buildEngine(model.dir, dir);
    unlinkSync(join(dir, "kiln-engine.json"));
    const cfgPath = join(dir, "config.json");
    writeFileSync(
      cfgPath,
      JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, "utf8")), formatVersion: 1 }),
    );
    assert.throws(
      () => openEngine(dir),
      (e: unknown) =>
        e instanceof EngineError &&
        !(e instanceof EngineCorruptError) &&
        /version 1\b.*rebuild/s.test(e.message),
    );
  });

  test("bad magic and truncation are detected", () => {
    const dir = join(model.dir, "e-bad");
    buildEngine(model.dir, dir);
    const path = join(dir, "rank0.engine");
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 300));
    assert.throws(
      () => openEngine(dir),
      (e: unknown) =>
        e instanceof EngineCorruptError && /rank0\.engine \(\d+ bytes, expected \d+\)/.test(e.message),
    );
    const bad = Buffer.from(bytes);
    bad.write("NOTKILN!", 0, "latin1");
    writeFileSync(path, bad);
    assert.throws(
      () => openEngine(dir),
      (e: unknown) => e instanceof EngineError && /bad magic/.test(e.message),
    );
  });

  test("a checkpoint missing tensors lists every missing name", () => {
    const m = writeTinyModel("qwen2");
    try {
      // Rewrite the checkpoint without two tensors.
      const st = join(m.dir, "model.safetensors");
      const full = readFileSync(st);
      const n = Number(full.readBigUInt64LE(0));
      const header = JSON.parse(full.subarray(8, 8 + n).toString());
      delete header["model.layers.1.self_attn.k_proj.bias"];
      delete header["model.norm.weight"];
      const h = Buffer.from(JSON.stringify(header));
      const pre = Buffer.alloc(8);
      pre.writeBigUInt64LE(BigInt(h.length));
      unlinkSync(st);
      writeFileSync(st, Buffer.concat([pre, h, full.subarray(8 + n)]));
      assert.throws(
        () => buildEngine(m.dir, join(m.dir, "e")),
        (e: unknown) =>
          e instanceof MissingTensorError &&
          e.message.includes("model.layers.1.self_attn.k_proj.bias") &&
          e.message.includes("model.norm.weight"),
      );
    } finally {
      m.cleanup();
    }
  });
});

describe("engine cache", () => {
  const model = writeTinyModel("mistral");
  const cache = tempCache();
  after(() => {
    model.cleanup();
    cache.cleanup();
  });

  test("second resolve is a hit; other build options miss", () => {
    const first = resolveEngine(model.dir, {}, cache.dir);
    assert.equal(first.origin, "built");
    const second = resolveEngine(model.dir, {}, cache.dir);
    assert.equal(second.origin, "hit");
    assert.equal(second.dir, first.dir);
    const other = resolveEngine(model.dir, { dtype: "bf16" }, cache.dir);
    assert.equal(other.origin, "built");
    assert.notEqual(other.dir, first.dir);
    assert.equal(resolveEngine(first.dir).origin, "engine");
  });

  test("changing one weight byte changes the key", () => {
    const a = resolveEngine(model.dir, {}, cache.dir).dir;
    const st = join(model.dir, "model.safetensors");
    const bytes = readFileSync(st);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(st, bytes);
    const b = resolveEngine(model.dir, {}, cache.dir);
    assert.equal(b.origin, "built");
    assert.notEqual(b.dir, a);
  });

  test("cache root honours KILN_CACHE_DIR, then XDG_CACHE_HOME", () => {
    assert.equal(cacheRoot({ KILN_CACHE_DIR: "/x/k", XDG_CACHE_HOME: "/y" }), "/x/k");
    assert.equal(cacheRoot({ XDG_CACHE_HOME: "/y" }), "/y/kiln");
    assert.match(cacheRoot({}), /\.cache\/kiln$/);
    const b = resolveBuildConfig();
    assert.notEqual(engineCacheKey("h1", b), engineCacheKey("h2", b));
  });
});

describe("random-weight engines of shipped configs", () => {
  test("configs/llama-3.2-1b shape builds with random weights (structure only, tiny check)", () => {
    const cache = tempCache();
    try {
      // Shrink the shipped config's depth and vocab so the test stays fast; the shape logic is the same.
      const cfg = JSON.parse(
        readFileSync(new URL("../../configs/llama-3.2-1b/config.json", import.meta.url), "utf8"),
      );
      const dir = join(cache.dir, "cfg");
      mkdirSync(dir);
      writeFileSync(
        join(dir, "config.json"),
        JSON.stringify({ ...cfg, num_hidden_layers: 1, vocab_size: 512 }),
      );
      const r = resolveEngine(dir, { randomWeights: true, maxSeqLen: 64 }, cache.dir);
      assert.equal(r.origin, "built");
      const e = openEngine(r.dir);
      const qkv = e.header.weights.find((w) => w.name === "model.layers.0.self_attn.qkv_proj.weight");
      assert.deepEqual(qkv?.shape, [(32 + 2 * 8) * 64, 2048]);
      assert.equal(qkv?.dtype, "BF16");
      e.close();
      assert.equal(resolveEngine(dir, { randomWeights: true, maxSeqLen: 64 }, cache.dir).origin, "hit");
    } finally {
      cache.cleanup();
    }
  });
});

describe("content-hash memo", () => {
  test("a cache hit does not re-read unchanged weight files; a rewritten file is re-hashed", () => {
    const model = writeTinyModel("qwen3");
    const cache = tempCache();
    try {
      const first = resolveEngine(model.dir, {}, cache.dir);
      const memo = join(cache.dir, "file-hashes");
      const entries = readdirSync(memo);
      assert.ok(entries.length >= 1, "hashes remembered");
      // Corrupt the memo's hash value: a hit must now trust it (proving no re-read) and miss the engine.
      for (const e of entries) {
        const m = JSON.parse(readFileSync(join(memo, e), "utf8"));
        writeFileSync(join(memo, e), JSON.stringify({ ...m, sha256: "0".repeat(64) }));
      }
      const trusted = resolveEngine(model.dir, {}, cache.dir);
      assert.notEqual(trusted.dir, first.dir);
      // Touching the file (new ctime) invalidates the memo: the real hash comes back.
      const st = join(model.dir, "model.safetensors");
      writeFileSync(st, readFileSync(st));
      const again = resolveEngine(model.dir, {}, cache.dir);
      assert.equal(again.dir, first.dir);
      assert.equal(again.origin, "hit");
    } finally {
      model.cleanup();
      cache.cleanup();
    }
  });
});
