// `kiln bench --json` reports the contract's fields with sane values (CPU, bundled model), and the
// KV pool's size in its table and JSON; sampled decoding (--temperature, --top-p, …) is reported as such,
// and sampling flags without a temperature are refused.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseHfConfig } from "../../src/checkpoint/hf_config.ts";
import { defineModel } from "../../src/models/registry.ts";
import { prefillFlops } from "../../src/runtime/bench.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { TINY_CONFIGS, tempCache } from "../helpers/tiny_model.ts";

const DEFAULT_MODEL = fileURLToPath(new URL("../../models/default", import.meta.url));

test("kiln bench --json", () => {
  const cache = tempCache();
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    const r = kiln(["bench", "--input-len", "8", "--output-len", "4", "--runs", "1", "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    for (const k of [
      "device",
      "dtype",
      "batchSize",
      "inputLen",
      "outputLen",
      "ttftMs",
      "tpotMs",
      "outputTokensPerSec",
      "floorMs",
      "tpotOverFloor",
      "prefillFloorMs",
      "prefillFloorBytes",
      "prefillFloorFlops",
    ]) {
      assert.ok(k in o, `missing ${k}`);
    }
    assert.equal(o.inputLen, 8);
    assert.equal(o.outputLen, 4);
    assert.ok(o.tpotMs > 0 && o.floorMs > 0 && o.tpotOverFloor > 0);
    assert.ok(Math.abs(o.tpotOverFloor - o.tpotMs / o.floorMs) < 1e-9);
    // The decode floor is the slower of its bytes and its FLOPs; the prefill floor counts attention.
    const bytesMs = o.decodeFloorBytes / (o.copyBandwidthGBs * 1e9);
    const flopsMs = o.decodeFloorFlops / (o.gemmTflops * 1e12);
    assert.ok(Math.abs(o.floorMs - 1000 * Math.max(bytesMs, flopsMs)) < 1e-9 * o.floorMs);
    const prefillBytesMs = o.prefillFloorBytes / (o.copyBandwidthGBs * 1e9);
    const prefillFlopsMs = o.prefillFloorFlops / (o.gemmTflops * 1e12);
    assert.ok(o.prefillFloorBytes > 0);
    assert.ok(
      Math.abs(o.prefillFloorMs - 1000 * Math.max(prefillBytesMs, prefillFlopsMs)) < 1e-9 * o.prefillFloorMs,
    );
    // The executor's KV cache (CPU: the engine's maxSeqLen 512 × maxBatchSize 64 tokens) in blocks of
    // 16 tokens, each 2 (K, V) × 6 layers × 16 tokens × 4 KV heads × 32 dims × 4 bytes.
    assert.equal(o.kvCacheBlocks, 2048);
    assert.equal(o.kvCacheTokens, 2048 * 16);
    assert.equal(o.kvCacheGiB * 2 ** 30, 2048 * (2 * 6 * 16 * 4 * 32 * 4));
    assert.equal(o.kvCacheLimitedBy, "engine");
    const flags = ["bench", "--input-len", "8", "--output-len", "4", "--runs", "1", "--max-kv-tokens", "32"];
    const table = kiln(flags, env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /KV cache pool\s+2 blocks, 32 tokens, 0\.00018 GiB \(limited by max-tokens\)/);
    const capped = kiln(["bench", "--input-len", "20", "--output-len", "4", "--max-kv-tokens", "16"], env);
    assert.equal(capped.code, 2, capped.stderr);
    assert.match(
      capped.stderr,
      /RequestTooLargeError: .*the KV cache holds 1 blocks \(16 tokens\).*--max-kv-tokens/,
    );
  } finally {
    cache.cleanup();
  }
});

test("kiln bench: sampled decoding", () => {
  const cache = tempCache();
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    const base = ["bench", "--input-len", "8", "--output-len", "4", "--runs", "1"];
    const greedy = kiln([...base, "--json"], env);
    assert.equal(greedy.code, 0, greedy.stderr);
    assert.equal(JSON.parse(greedy.stdout).sampling, null);
    const r = kiln([...base, "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).sampling, { temperature: 0.8, topK: 40, topP: 0.9 });
    const table = kiln([...base, "--temperature", "1", "--min-p", "0.05"], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /decoding\s+sampled \(temperature 1, min-p 0\.05\)/);
    const lonely = kiln([...base, "--top-p", "0.9"], env);
    assert.equal(lonely.code, 2, lonely.stderr);
    assert.match(lonely.stderr, /InvalidArgumentError: .*give --temperature above 0/);
    const negative = kiln([...base, "--temperature", "-1"], env);
    assert.equal(negative.code, 2, negative.stderr);
    assert.match(negative.stderr, /--temperature must be ≥ 0 .*got -1/);
  } finally {
    cache.cleanup();
  }
});

// The floors are lower bounds: no run may beat them. The vocabulary-heavy config is where a floor that
// ran the LM head (or the embedding) over every prompt token would exceed the measured TTFT.
test("kiln bench: the floors never exceed the measured times", () => {
  const cache = tempCache();
  const dir = mkdtempSync(join(tmpdir(), "kiln-bench-vocab-"));
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        ...TINY_CONFIGS.qwen2,
        vocab_size: 16384,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 1,
        max_position_embeddings: 512,
      }),
    );
    const cases = [
      [],
      ["--batch-size", "2", "--input-len", "64", "--output-len", "6"],
      ["--model", dir, "--random-weights", "--input-len", "128", "--output-len", "4"],
    ];
    for (const args of cases) {
      const r = kiln(
        ["bench", "--input-len", "16", "--output-len", "4", "--runs", "2", ...args, "--json"],
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      const o = JSON.parse(r.stdout);
      const shape = args.join(" ");
      assert.ok(o.prefillFloorMs > 0 && o.floorMs > 0, shape);
      assert.ok(
        o.prefillFloorMs <= o.ttftMs,
        `${shape}: prefill floor ${o.prefillFloorMs} > TTFT ${o.ttftMs}`,
      );
      assert.ok(o.floorMs <= o.tpotMs, `${shape}: decode floor ${o.floorMs} > TPOT ${o.tpotMs}`);
      assert.equal(o.outputTokens, o.batchSize * o.outputLen, shape);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    cache.cleanup();
  }
});

test("kiln bench refuses shapes past the context window and --profile on the CPU", () => {
  const cache = tempCache();
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    // The bundled model's window is 512 tokens: 505 + 7 fits, 505 + 50 would stop after 7 tokens.
    const tooLong = kiln(["bench", "--input-len", "505", "--output-len", "50", "--runs", "1"], env);
    assert.equal(tooLong.code, 2, tooLong.stderr);
    assertUserError(
      tooLong,
      "BenchShapeError",
      /--input-len 505 \+ --output-len 50 = 555 tokens .*context window of 512 tokens; lower --output-len to 7 or --input-len to 462/,
    );
    assert.equal(tooLong.stdout, "");
    const fits = kiln(["bench", "--input-len", "505", "--output-len", "7", "--runs", "1", "--json"], env);
    assert.equal(fits.code, 0, fits.stderr);
    const o = JSON.parse(fits.stdout);
    assert.equal(o.outputTokens, 7);
    const profile = kiln(
      ["bench", "--backend", "cpu", "--input-len", "8", "--output-len", "4", "--profile"],
      env,
    );
    assert.equal(profile.code, 2, profile.stderr);
    assertUserError(
      profile,
      "BenchOptionError",
      /--profile .*CUDA kernel.*drop --profile or use --backend cuda/,
    );
    // An engine's dtype was fixed when it was built: --dtype on one is refused, as run refuses it.
    const engine = join(cache.dir, "engine");
    assert.equal(kiln(["build", "--model", DEFAULT_MODEL, "--output", engine], env).code, 0);
    const dtype = kiln(["bench", "--model", engine, "--dtype", "fp16", "--output-len", "2"], env);
    assertUserError(dtype, "ConflictingFlagsError", /--dtype fp16: .* is a built engine/);
  } finally {
    cache.cleanup();
  }
});

// The prefill floor's FLOPs are a lower bound on what the plan computes, and close to it: walk each
// architecture's ops, rows = prompt tokens until gather_rows keeps one row per prompt.
test("prefillFlops counts the plan's linear work low, within 5%", () => {
  const vocabHeavy = { ...TINY_CONFIGS.qwen2, vocab_size: 4096 };
  for (const raw of [...Object.values(TINY_CONFIGS), vocabHeavy]) {
    const config = parseHfConfig(raw, "tiny config");
    const net = defineModel(config, "tiny config");
    const params = Object.values(net.weights).reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
    const [batch, inputLen] = [3, 40];
    const gathered = new Set<string>();
    let planFlops = 0;
    for (const op of net.ops) {
      const inputs = Object.values(op).filter((v): v is string => typeof v === "string");
      const perPrompt = op.kind === "gather_rows" || inputs.some((v) => gathered.has(v));
      if (perPrompt) for (const v of "outs" in op ? op.outs : [op.out]) gathered.add(v);
      if (op.kind === "linear")
        planFlops += 2 * op.inFeatures * op.outFeatures * (perPrompt ? batch : batch * inputLen);
    }
    const counted = prefillFlops(config, params, batch, inputLen);
    assert.ok(counted <= planFlops, `${config.architecture}: ${counted} > the plan's ${planFlops}`);
    assert.ok(counted >= 0.95 * planFlops, `${config.architecture}: ${counted} ≪ the plan's ${planFlops}`);
  }
});
