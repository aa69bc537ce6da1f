// The bundled model with an FP8 KV cache (--kv-cache-dtype fp8, backends/kv_cache_dtype.ts) against the
// same model with the fp32 cache, on the CPU: held-out perplexity through `kiln eval`, logits, greedy
// tokens, chunked prefill, capacity in the same bytes, and the serve ready line.
//
// Every measurement here reads the quantized cache: the CPU backend writes each step's K and V into the
// cache first and attention reads every key and value back from it, the step's own tokens included. The
// eval's one 456-token window is fed in chunks of 256 (BackendScorer), so its second chunk also reads the
// first chunk's cached K/V; with --max-length 128 --stride 64 each of 7 windows is one chunk.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { StepInput } from "../../src/backends/backend.ts";
import { runSteps } from "../../src/builder/steps.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { kvCacheBlocks } from "../../src/executor/kv_cache_size.ts";
import { GenerationSession } from "../../src/runtime/generation_session.ts";
import { InvalidKvCacheConfigError, type KvCacheDtype } from "../../src/runtime/kv_cache_config.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { openExecutor } from "../../src/runtime/open_executor.ts";
import { openSessionSteps } from "../../src/runtime/open_session.ts";
import { openServer } from "../../src/server/open_server.ts";
import { kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const HELD_OUT = fileURLToPath(new URL("../fixtures/quantization/held_out.txt", import.meta.url));

describe("the bundled model with an FP8 KV cache", () => {
  const cache = tempCache();
  const open = (dtype: KvCacheDtype) =>
    runSteps(openSessionSteps(BUNDLED_MODEL_DIR, {}, cache.dir, undefined, dtype)).session;
  const fp32 = open("auto");
  const fp8 = open("fp8");
  after(() => {
    fp32.dispose();
    fp8.dispose();
    cache.cleanup();
  });
  const ids = Int32Array.from(
    (fp32.tokenizer as NonNullable<typeof fp32.tokenizer>).encode("ROMEO:\nBut soft, what light").ids,
  );

  /** Logits of every position of `tokens`, fed in chunks of these lengths (blocks 0… in order). */
  function logits(s: typeof fp32, tokens: Int32Array, chunks: number[]): Float32Array {
    const b = s.backend;
    const n = tokens.length;
    const blocks = Math.ceil(n / b.kvBlockSize);
    b.allocateKvCache(blocks);
    const blockTable = Int32Array.from({ length: blocks }, (_, i) => i);
    const out = new Float32Array(n * b.vocabSize);
    let start = 0;
    for (const len of chunks) {
      const positions = Int32Array.from({ length: len }, (_, i) => start + i);
      const step: StepInput = {
        tokenIds: tokens.slice(start, start + len),
        positions,
        slotMapping: positions.slice(),
        seqs: [{ queryStart: 0, queryLen: len, contextLen: start + len, blockTable }],
        logitRows: Int32Array.from({ length: len }, (_, i) => i),
      };
      out.set(b.forward(step), start * b.vocabSize);
      start += len;
    }
    assert.equal(start, n);
    return out;
  }

  test("held-out perplexity (kiln eval): fp8 within +0.5% of fp32, and not equal to it", () => {
    const env = { KILN_CACHE_DIR: cache.dir };
    const evalJson = (dtype: KvCacheDtype, window: string[]) => {
      const r = kiln(["eval", "--perplexity", HELD_OUT, "--json", "--kv-cache-dtype", dtype, ...window], env);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { perplexity: number; kvCacheDtype: string; windows: number };
    };
    for (const window of [[], ["--max-length", "128", "--stride", "64"]]) {
      const a = evalJson("auto", window);
      const q = evalJson("fp8", window);
      assert.equal(q.kvCacheDtype, "fp8");
      const rise = q.perplexity / a.perplexity - 1;
      // The quantized values are read: the perplexity moves, by less than half a percent.
      assert.ok(rise !== 0, "fp8 gave the fp32 perplexity: the cache was not quantized");
      assert.ok(
        rise < 0.005,
        `${window.join(" ")}: ${q.perplexity} vs ${a.perplexity} (+${(100 * rise).toFixed(3)}%)`,
      );
    }
  });

  test("logits: close to the fp32 cache's, the same argmax at ≥ 95% of positions", () => {
    const text = (fp32.tokenizer as NonNullable<typeof fp32.tokenizer>).encode(
      "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" +
        "Arise, fair sun, and kill the envious moon,\nWho is already sick and pale with grief,\n" +
        "That thou her maid art far more fair than she.\n",
    ).ids;
    const tokens = Int32Array.from(text);
    const n = tokens.length;
    const a = logits(fp32, tokens, [n]);
    const q = logits(fp8, tokens, [n]);
    const V = fp32.backend.vocabSize;
    let sq = 0;
    let worst = 0;
    let same = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - q[i]);
      sq += d * d;
      worst = Math.max(worst, d);
    }
    const argmax = (x: Float32Array, r: number) => {
      let best = 0;
      for (let v = 1; v < V; v++) if (x[r * V + v] > x[r * V + best]) best = v;
      return best;
    };
    for (let r = 0; r < n; r++) if (argmax(a, r) === argmax(q, r)) same++;
    const rms = Math.sqrt(sq / a.length);
    // Each K/V value is off by at most 2^-4 relative (E4M3's half ulp), ~2^-6 on average; through 6
    // layers the logits (|logit| up to ~17 here) move by a few hundredths RMS. The bounds are about
    // twice what this model shows (docs/QUANTIZATION.md has the figures).
    assert.ok(rms > 0, "identical logits: the cache was not quantized");
    assert.ok(rms < 0.1, `RMS logit difference ${rms}`);
    assert.ok(worst < 1, `largest logit difference ${worst}`);
    assert.ok(same >= 0.95 * n, `same argmax at ${same} of ${n} positions`);
  });

  test("a token's logits do not depend on chunking: chunked prefill and decode equal one prefill", () => {
    const tokens = Int32Array.from({ length: 70 }, (_, i) => ids[i % ids.length] + (i % 7));
    const one = logits(fp8, tokens, [70]);
    // Chunks that cut blocks of 16 in the middle, and three single-token (decode) steps.
    assert.deepEqual(logits(fp8, tokens, [21, 1, 1, 30, 1, 16]), one);
  });

  test("greedy: the first 9 of 32 tokens equal the fp32 cache's", async () => {
    const gen = async (dtype: KvCacheDtype) => {
      await using r = ModelRunner.fromDir(BUNDLED_MODEL_DIR, { cacheDir: cache.dir, kvCache: { dtype } });
      const [out] = await r.generate("ROMEO:", { greedy: true, maxNewTokens: 32, ignoreEos: true });
      return out.outputIds;
    };
    const a = await gen("auto");
    const q = await gen("fp8");
    // The bundled model is a weak one with near-ties among its top tokens: the 10th token flips,
    // and the continuations differ from there.
    assert.deepEqual(q.slice(0, 9), a.slice(0, 9));
    assert.deepEqual(await gen("fp8"), q, "fp8 greedy is deterministic");
  });

  test("capacity: the same bytes hold ≥ 3.5× the blocks; KvPoolInfo says fp8", () => {
    assert.equal(fp8.backend.kvCacheDtype, "fp8");
    assert.equal(fp32.backend.kvBytesPerBlock, 2 * 6 * 16 * 4 * 32 * 4);
    assert.equal(fp8.backend.kvBytesPerBlock, 2 * 6 * 16 * 4 * (32 + 4));
    // An engine for 1024 sequences of 512 wants more than the CPU's default byte cap holds.
    const config = { ...fp32.config, build: { ...fp32.config.build, maxBatchSize: 1024 } };
    const a = kvCacheBlocks(fp32.backend, config, {});
    const q = kvCacheBlocks(fp8.backend, config, {});
    assert.equal(a.limitedBy, "default");
    assert.equal(q.limitedBy, "default");
    assert.ok(q.numBlocks >= 3.5 * a.numBlocks, `${q.numBlocks} vs ${a.numBlocks} blocks`);
    const gs = new GenerationSession(fp8, { dtype: "fp8", maxTokens: 160 });
    const info = gs.allocatePool();
    void gs.shutdown();
    assert.equal(info.dtype, "fp8");
    assert.equal(info.bytes, 10 * fp8.backend.kvBytesPerBlock);
    assert.throws(
      () => new GenerationSession(fp32, { dtype: "fp8" }),
      (e) =>
        e instanceof InvalidKvCacheConfigError &&
        /dtype is fp8 but the session's backend was opened with KV cache dtype auto/.test(e.message),
    );
  });

  test("kiln serve's ready line names the fp8 cache", async () => {
    const server = await openServer({
      port: 0,
      logLevel: "silent",
      executor: { cacheDir: cache.dir, kvCacheDtype: "fp8", maxTokens: 1024 },
    });
    try {
      assert.match(server.readyLine, /KV capacity 1024 tokens \(fp8\)$/);
    } finally {
      await server.close();
    }
  });

  test("the library refuses an unknown KV cache dtype before building anything", () => {
    const empty = tempCache();
    try {
      assert.throws(
        () => openExecutor(BUNDLED_MODEL_DIR, { kvCacheDtype: "fp4" as never, cacheDir: empty.dir }),
        InvalidKvCacheConfigError,
      );
      assert.deepEqual(readdirSync(empty.dir), [], "an engine was built");
    } finally {
      empty.cleanup();
    }
  });
});
