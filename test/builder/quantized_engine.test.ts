// Engines built with --quantize: which weights are quantized, that they load on the CPU backend and
// stay close to the unquantized engine (logits, greedy tokens, held-out perplexity), that the cache
// keeps them apart, and that damage to a quantized region or an unknown format is refused.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { resolveEngine } from "../../src/builder/engine_cache.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { resolveBuildConfig } from "../../src/engine/build_config.ts";
import { engineCacheKey } from "../../src/engine/cache_dirs.ts";
import { createHasher } from "../../src/engine/checksum.ts";
import { UnknownWeightFormatError } from "../../src/engine/errors.ts";
import { PREAMBLE_BYTES } from "../../src/engine/format.ts";
import { MANIFEST_FILE } from "../../src/engine/manifest.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { engineDamage } from "../../src/engine/verify.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const HELD_OUT = readFileSync(new URL("../fixtures/quantization/held_out.txt", import.meta.url), "utf8");
const FORMATS = ["int8-wo", "int4-wo"] as const;
const ALL = ["none", ...FORMATS] as const;

/** Logits of every position of `ids` (one prefill), [ids.length, V]. */
async function contextLogits(runner: ModelRunner, ids: number[]): Promise<Float32Array> {
  const [o] = await runner.generate({ ids }, { greedy: true, maxNewTokens: 1, returnContextLogits: true });
  assert.ok(o.contextLogits);
  return o.contextLogits;
}

/** Mean NLL (nats) of ids[t+1] under the logits of position t, in fp64. */
function meanNll(logits: Float32Array, ids: number[], V: number): number {
  let sum = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let z = 0;
    for (const v of row) z += Math.exp(v - max);
    sum -= row[ids[t + 1]] - max - Math.log(z);
  }
  return sum / (ids.length - 1);
}

describe("--quantize engines of the bundled model (CPU backend)", () => {
  const out = tempCache();
  const runners = new Map<string, ModelRunner>();
  before(() => {
    for (const q of ALL) {
      const dir = join(out.dir, q);
      buildEngine(BUNDLED_MODEL_DIR, dir, { dtype: "fp32", quantize: q });
      runners.set(q, ModelRunner.fromDir(dir));
    }
  });
  after(() => {
    for (const r of runners.values()) r.dispose();
    out.cleanup();
  });

  test("the blocks' linear weights carry the format; embeddings (tied LM head) and norms do not", () => {
    for (const q of FORMATS) {
      const e = openEngine(join(out.dir, q));
      const formats = Object.fromEntries(e.header.weights.map((w) => [w.name, w.format ?? "plain"]));
      const stored = e.header.weights.reduce((a, w) => a + w.byteLength, 0);
      e.close();
      // The CUDA floors' bytes: the regions as stored (q and scales), fewer than the fp32 arrays'.
      assert.equal(runners.get(q)?.session.storedWeightBytes, stored);
      assert.ok(stored < (runners.get("none")?.session.weightBytes ?? 0), `${q}: ${stored} bytes stored`);
      assert.equal(runners.get(q)?.session.config.build.quantize, q);
      // The benches' parameter count: a quantized weight counts as the fp32 array it stands for.
      assert.equal(runners.get(q)?.session.weightBytes, runners.get("none")?.session.weightBytes);
      assert.equal(formats["model.embed_tokens.weight"], "plain");
      assert.equal(formats["model.norm.weight"], "plain");
      const linears = Object.keys(formats).filter((n) => /\.(self_attn|mlp)\..*weight$/.test(n));
      assert.ok(linears.length >= 6 * 3, `linears: ${linears.join(", ")}`);
      for (const n of linears) assert.equal(formats[n], q, n);
    }
  });

  test("logits within tolerance of the unquantized engine; greedy tokens of a short prompt", async () => {
    const base = runners.get("none")!;
    const ids = base.encode("ROMEO:\nWhat light is this");
    const want = await contextLogits(base, ids);
    // Bounds about 1.6-2x the worst |Δlogit| measured on this prompt (docs/QUANTIZATION.md).
    const bound = { "int8-wo": 0.1, "int4-wo": 1.5 };
    const [ref] = await base.generate(
      { ids: base.encode("ROMEO:") },
      { greedy: true, maxNewTokens: 32, ignoreEos: true },
    );
    for (const q of FORMATS) {
      const runner = runners.get(q)!;
      const got = await contextLogits(runner, ids);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      console.log(`${q}: worst |Δlogit| ${worst.toFixed(4)}`);
      assert.ok(worst > 0, `${q} changed the logits at all`);
      assert.ok(worst <= bound[q], `${q}: worst |Δlogit| ${worst} > ${bound[q]}`);
      const [o] = await runner.generate(
        { ids: base.encode("ROMEO:") },
        { greedy: true, maxNewTokens: 32, ignoreEos: true },
      );
      let same = 0;
      while (same < 32 && o.outputIds[same] === ref.outputIds[same]) same++;
      console.log(`${q}: ${same}/32 greedy tokens match the unquantized engine`);
      // int8-wo follows the unquantized engine's greedy path on this prompt; int4-wo is only reported.
      if (q === "int8-wo") assert.equal(same, 32, "int8-wo greedy tokens");
    }
  });

  test("held-out perplexity: int8-wo within +1% of fp32, int4-wo within its documented bound", async () => {
    const base = runners.get("none")!;
    const V = base.session.config.model.vocabSize;
    const ids = base.encode(HELD_OUT);
    assert.ok(ids.length > 300 && ids.length <= base.maxSeqLen, `${ids.length} tokens`);
    const ppl = Math.exp(meanNll(await contextLogits(base, ids), ids, V));
    for (const q of FORMATS) {
      const runner = runners.get(q)!;
      const ratio = Math.exp(meanNll(await contextLogits(runner, ids), ids, V)) / ppl;
      console.log(
        `${q}: perplexity ratio ${ratio.toFixed(5)} (fp32 ${ppl.toFixed(3)}, ${ids.length} tokens)`,
      );
      // The issue's +1% for int8-wo; +5% for int4-wo (the bound for int4 on a larger model).
      assert.ok(ratio <= (q === "int8-wo" ? 1.01 : 1.05), `${q}: ratio ${ratio}`);
    }
  });
});

/** Rewrites the first occurrence of `from` in the engine's header as `to` (same length) and re-seals
 * the header checksum, as a newer kiln's header would read: only the reader's own checks can refuse it. */
function rewriteHeader(dir: string, from: string, to: string): void {
  assert.equal(from.length, to.length);
  const path = join(dir, "rank0.engine");
  const bytes = readFileSync(path);
  const headerLen = Number(bytes.readBigUInt64LE(16));
  const header = bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLen);
  const at = header.indexOf(from);
  assert.ok(at >= 0, from);
  header.write(to, at, "latin1");
  writeFileSync(path, bytes);
  const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8"));
  manifest.rank.header = createHasher().update(bytes.subarray(0, PREAMBLE_BYTES)).update(header).digest();
  writeFileSync(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
}

describe("--quantize: cache, integrity, formats", () => {
  const model = writeTinyModel("llama"); // hidden 32, intermediate 48: every group is a padded one
  const out = tempCache();
  after(() => {
    model.cleanup();
    out.cleanup();
  });

  test("the cache key and entry differ by format; each entry records its own", () => {
    const keys = ALL.map((q) => engineCacheKey("h", resolveBuildConfig({ quantize: q })));
    assert.equal(new Set(keys).size, 3);
    const dirs = ALL.map((q) => resolveEngine(model.dir, { quantize: q }, out.dir).dir);
    assert.equal(new Set(dirs).size, 3);
    for (const [i, q] of ALL.entries()) {
      const e = openEngine(dirs[i]);
      assert.equal(e.config.build.quantize, q);
      assert.equal(
        e.header.weights.some((w) => w.format === q),
        q !== "none",
      );
      e.close();
    }
  });

  test("an untied LM head stays plain; an engine with padded groups loads and generates", async () => {
    const dir = join(out.dir, "int4");
    buildEngine(model.dir, dir, { quantize: "int4-wo" });
    const e = openEngine(dir);
    const byName = new Map(e.header.weights.map((w) => [w.name, w]));
    e.close();
    assert.equal(byName.get("lm_head.weight")?.format, undefined);
    assert.equal(byName.get("model.embed_tokens.weight")?.format, undefined);
    assert.equal(byName.get("model.layers.0.mlp.down_proj.weight")?.format, "int4-wo");
    const runner = ModelRunner.fromDir(dir);
    try {
      const [o] = await runner.generate(
        { ids: [1, 5, 9] },
        { greedy: true, maxNewTokens: 4, ignoreEos: true },
      );
      assert.equal(o.outputIds.length, 4);
    } finally {
      runner.dispose();
    }
  });

  test("a flipped bit in a quantized weight's scales is caught by verify", () => {
    const dir = join(out.dir, "damaged");
    buildEngine(model.dir, dir, { quantize: "int8-wo" });
    assert.deepEqual(engineDamage(dir), []);
    const e = openEngine(dir);
    const w = e.header.weights.find((x) => x.format === "int8-wo")!;
    e.close();
    const path = join(dir, "rank0.engine");
    const bytes = readFileSync(path);
    bytes[w.offset + w.byteLength - 2] ^= 0x10; // inside the fp32 scales at the region's end
    writeFileSync(path, bytes);
    const damage = engineDamage(dir);
    assert.equal(damage.length, 1);
    assert.ok(damage[0].includes(`${w.name} at byte`), damage[0]);
  });

  test("a weight format this kiln does not know is a named error at open", () => {
    const dir = join(out.dir, "unknown");
    buildEngine(model.dir, dir, { quantize: "int8-wo" });
    rewriteHeader(dir, '"format":"int8-wo"', '"format":"int9-wo"');
    assert.throws(
      () => openEngine(dir),
      (err: unknown) => err instanceof UnknownWeightFormatError && /"int9-wo"/.test(err.message),
    );
  });
});
