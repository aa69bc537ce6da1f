// Engines built with --quantize: which weights are quantized, that they load on the CPU backend and
// stay close to the unquantized engine (logits, greedy tokens, held-out perplexity), that a static fp8
// engine computes with its input scale, that the cache keeps them apart, and that damage to a
// quantized region or an unknown format is refused.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { resolveEngine } from "../../src/builder/engine_cache.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { toF32 } from "../../src/dtype.ts";
import { isCalibrated, resolveBuildConfig, storedFormat } from "../../src/engine/build_config.ts";
import { engineCacheKey } from "../../src/engine/cache_dirs.ts";
import { CalibrationFileError } from "../../src/engine/calibration.ts";
import { createHasher } from "../../src/engine/checksum.ts";
import { UnknownWeightFormatError } from "../../src/engine/errors.ts";
import { PREAMBLE_BYTES } from "../../src/engine/format.ts";
import { fp8InputScale } from "../../src/engine/fp8_format.ts";
import { MANIFEST_FILE } from "../../src/engine/manifest.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { engineDamage } from "../../src/engine/verify.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { writeStaticFp8Engine } from "../helpers/static_fp8_engine.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const HELD_OUT = readFileSync(new URL("../fixtures/quantization/held_out.txt", import.meta.url), "utf8");
const FORMATS = ["int8-wo", "int4-wo", "fp8", "fp8-static"] as const;
const ALL = ["none", ...FORMATS] as const;

/** Logits of every position of `ids` (one prefill), [ids.length, V]. */
async function contextLogits(runner: ModelRunner, ids: number[]): Promise<Float32Array> {
  const [o] = await runner.generate({ ids }, { greedy: true, maxNewTokens: 1, returnContextLogits: true });
  assert.ok(o.contextLogits);
  return o.contextLogits;
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
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
      for (const n of linears) assert.equal(formats[n], storedFormat(q), n);
    }
    // --quantize fp8 builds dynamic (per-token) activation scales: no input scale in the regions.
    const e = openEngine(join(out.dir, "fp8"));
    const fp8 = e.header.weights.filter((w) => w.format === "fp8");
    e.close();
    for (const w of fp8) assert.deepEqual(w.params, { activation: "dynamic" }, w.name);
    // --quantize fp8-static calibrates one input scale per linear (the bundled calibration text).
    const s = openEngine(join(out.dir, "fp8-static"));
    try {
      const statics = s.header.weights.filter((w) => w.format === "fp8");
      assert.equal(statics.length, fp8.length);
      for (const w of statics) {
        assert.deepEqual(w.params, { activation: "static" }, w.name);
        const scale = fp8InputScale(s.readWeight(w), w.shape);
        assert.ok(Number.isFinite(scale) && scale > 0, `${w.name}: input scale ${scale}`);
      }
    } finally {
      s.close();
    }
  });

  test("logits within tolerance of the unquantized engine; greedy tokens of a short prompt", async () => {
    const base = runners.get("none")!;
    const ids = base.encode("ROMEO:\nWhat light is this");
    const want = await contextLogits(base, ids);
    // Bounds about 1.6-2x the worst |Δlogit| measured on this prompt (docs/QUANTIZATION.md). fp8's is
    // above int8-wo's: 3 mantissa bits (relative steps of 1/8) on the weights and on every linear's input.
    const bound = { "int8-wo": 0.1, "int4-wo": 1.5, fp8: 0.6, "fp8-static": 0.6 };
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
      // int8-wo follows the unquantized engine's greedy path on this prompt; fp8 for 9 tokens: the
      // unquantized engine's 10th is a near-tie (its top two logits 0.019 apart, well inside fp8's
      // |Δlogit|), after which the paths differ. int4-wo is only reported.
      if (q === "int8-wo") assert.equal(same, 32, "int8-wo greedy tokens");
      if (q === "fp8") assert.ok(same >= 9, `fp8 greedy tokens: ${same}`);
    }
  });

  test("held-out perplexity: int8-wo and fp8 within +1% of fp32, int4-wo within its bound", async () => {
    const base = runners.get("none")!;
    const V = base.session.config.model.vocabSize;
    const ids = base.encode(HELD_OUT);
    assert.ok(ids.length > 300 && ids.length <= base.maxSeqLen, `${ids.length} tokens`);
    const want = await contextLogits(base, ids);
    const ppl = Math.exp(meanNll(want, ids, V));
    for (const q of FORMATS) {
      const runner = runners.get(q)!;
      const got = await contextLogits(runner, ids);
      const ratio = Math.exp(meanNll(got, ids, V)) / ppl;
      let top1 = 0;
      for (let t = 0; t < ids.length; t++)
        if (argmax(got.subarray(t * V, (t + 1) * V)) === argmax(want.subarray(t * V, (t + 1) * V))) top1++;
      console.log(
        `${q}: perplexity ratio ${ratio.toFixed(5)} (fp32 ${ppl.toFixed(3)}, ${ids.length} tokens); next-token argmax as fp32's at ${top1}/${ids.length} positions`,
      );
      // The issue's +1% for int8-wo and fp8; +5% for int4-wo (the issue's bound for int4 on a larger model).
      assert.ok(ratio <= (q === "int4-wo" ? 1.05 : 1.01), `${q}: ratio ${ratio}`);
      // Teacher-forced, one flip does not derail the rest: fp8 keeps fp32's choice almost everywhere.
      if (q === "fp8") assert.ok(top1 >= 0.95 * ids.length, `fp8 top-1 ${top1}/${ids.length}`);
    }
  });

  test("a static fp8 engine quantizes each linear's input with its stored scale", async () => {
    // Input scale 2^20: every activation of this model is below 2^20 × 2^-10 (half the smallest E4M3
    // step), so every block linear sees x̂ = 0 and outputs 0 (no biases). The residual stream is then the
    // embedding alone: logits = RMSNorm(embed(id)) · embedᵀ (tied head), computed here from the engine.
    // A backend that ignored the static scale would compute the dynamic engine's logits instead.
    const dir = join(out.dir, "fp8-static");
    writeStaticFp8Engine(join(out.dir, "fp8"), dir, () => 2 ** 20);
    const e = openEngine(dir);
    const weight = (name: string) => {
      const w = e.header.weights.find((x) => x.name === name)!;
      return toF32(e.readWeight(w), w.dtype);
    };
    const statics = e.header.weights.filter((w) => w.format === "fp8");
    const emb = weight("model.embed_tokens.weight");
    const norm = weight("model.norm.weight");
    const { vocabSize: V, hiddenSize: H, normEps: eps } = e.config.model;
    e.close();
    assert.ok(statics.length >= 6 * 3 && statics.every((w) => w.params?.activation === "static"));
    const runner = ModelRunner.fromDir(dir);
    try {
      const ids = runner.encode("ROMEO:\nWhat light");
      const got = await contextLogits(runner, ids);
      let worst = 0;
      for (const [t, id] of ids.entries()) {
        const x = emb.subarray(id * H, (id + 1) * H);
        const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / H + eps);
        for (let v = 0; v < V; v++) {
          let dot = 0;
          for (let c = 0; c < H; c++) dot += (x[c] / rms) * norm[c] * emb[v * H + c];
          worst = Math.max(worst, Math.abs(got[t * V + v] - dot));
        }
      }
      // fp32 norm and head against this double computation: rounding only.
      assert.ok(worst <= 1e-3, `worst |Δlogit| ${worst}`);
      const dynamic = await contextLogits(runners.get("fp8")!, ids);
      assert.ok(Math.abs(dynamic[0] - got[0]) > 0.1, "the dynamic engine's logits are another thing");
    } finally {
      runner.dispose();
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
    assert.equal(new Set(keys).size, ALL.length);
    // This tiny checkpoint has no tokenizer, so no calibration text can run through it.
    const uncalibrated = ALL.filter((q) => !isCalibrated(q));
    const dirs = uncalibrated.map((q) => resolveEngine(model.dir, { quantize: q }, out.dir).dir);
    assert.equal(new Set(dirs).size, uncalibrated.length);
    for (const [i, q] of uncalibrated.entries()) {
      const e = openEngine(dirs[i]);
      assert.equal(e.config.build.quantize, q);
      assert.equal(
        e.header.weights.some((w) => q !== "none" && w.format === storedFormat(q)),
        q !== "none",
      );
      e.close();
    }
  });

  test("a calibrated build of a checkpoint without a tokenizer is a named error", () => {
    assert.throws(
      () => buildEngine(model.dir, join(out.dir, "no-tokenizer"), { quantize: "fp8-static" }),
      (e: unknown) =>
        e instanceof CalibrationFileError &&
        /fp8-static runs calibration text through the model, which needs the checkpoint's tokenizer\.json/.test(
          e.message,
        ),
    );
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
