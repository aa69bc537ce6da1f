// --quantize int4-awq on the bundled model: an ordinary int4-wo engine whose norms carry the folded
// scales and whose weights are clipped, closer to fp32 on held-out text than round to nearest; its
// build config records the calibration, whose content (not path) keys the cache; calibration
// settings are checked at once.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { calibrationIds } from "../../src/builder/calibration_run.ts";
import { BUNDLED_MODEL_DIR, DEFAULT_CALIBRATION_FILE } from "../../src/bundled_model.ts";
import { toF32 } from "../../src/dtype.ts";
import { resolveBuildConfig } from "../../src/engine/build_config.ts";
import { engineCacheKey } from "../../src/engine/cache_dirs.ts";
import {
  CalibrationFileError,
  CalibrationNotUsedError,
  DEFAULT_CALIBRATION_TOKENS,
} from "../../src/engine/calibration.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const HELD_OUT = readFileSync(new URL("../fixtures/quantization/held_out.txt", import.meta.url), "utf8");
const KINDS = ["none", "int4-wo", "int4-awq"] as const;
/** Enough calibration for a stable choice of scales, few enough for CI (docs/QUANTIZATION.md). */
const TOKENS = 512;

/** log-softmax of one logit row, in fp64. */
function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let z = 0;
  for (const v of row) z += Math.exp(v - max);
  const log = Math.log(z) + max;
  return Float64Array.from(row, (v) => v - log);
}

describe("--quantize int4-awq engine of the bundled model (CPU backend)", () => {
  const out = tempCache();
  const runners = new Map<string, ModelRunner>();
  const awqGroups: { alpha?: number; skip?: string; clipped?: number }[] = [];
  before(() => {
    for (const q of KINDS) {
      const dir = join(out.dir, q);
      const r = buildEngine(BUNDLED_MODEL_DIR, dir, {
        dtype: "fp32",
        quantize: q,
        ...(q === "int4-awq" ? { calibrationTokens: TOKENS } : {}),
      });
      if (r.awq) awqGroups.push(...r.awq.groups);
      runners.set(q, ModelRunner.fromDir(dir));
    }
  });
  after(() => {
    for (const r of runners.values()) r.dispose();
    out.cleanup();
  });

  test("records int4-awq and its calibration; stores int4-wo linears and scaled norms", () => {
    const build = runners.get("int4-awq")!.session.config.build;
    assert.equal(build.quantize, "int4-awq");
    assert.equal(build.calibrationFile, DEFAULT_CALIBRATION_FILE);
    assert.equal(build.calibrationTokens, TOKENS);
    const sha = createHash("sha256").update(readFileSync(DEFAULT_CALIBRATION_FILE, "utf8")).digest("hex");
    assert.equal(build.calibrationSha256, sha);
    // 6 layers × (QKV, gate/up, down) searched; o_proj skipped (GQA); some scale chosen.
    assert.equal(awqGroups.filter((g) => g.alpha !== undefined).length, 18);
    assert.equal(awqGroups.filter((g) => g.skip).length, 6);
    assert.ok(awqGroups.some((g) => (g.alpha ?? 0) > 0));
    assert.ok(
      awqGroups.every((g) => (g.clipped ?? 0) > 0),
      "every group's linears are clip-searched",
    );
    const read = (q: string) => {
      const e = openEngine(join(out.dir, q));
      const w = new Map(e.header.weights.map((x) => [x.name, x]));
      const norm = w.get("model.layers.0.input_layernorm.weight")!;
      const r = {
        formats: [...w.values()].map((x) => x.format ?? "plain"),
        norm: toF32(e.readWeight(norm), norm.dtype),
      };
      e.close();
      return r;
    };
    const awq = read("int4-awq");
    assert.deepEqual(awq.formats, read("int4-wo").formats);
    assert.notDeepEqual(awq.norm, read("none").norm, "the first QKV group's scales are folded into its norm");
  });

  test("held-out text: within +5% of fp32 perplexity, and closer to fp32 than int4-wo (KL)", async () => {
    const base = runners.get("none")!;
    const V = base.session.config.model.vocabSize;
    const ids = base.encode(HELD_OUT);
    const logits = new Map<string, Float32Array>();
    for (const q of KINDS) {
      const [o] = await runners
        .get(q)!
        .generate({ ids }, { greedy: true, maxNewTokens: 1, returnContextLogits: true });
      assert.ok(o.contextLogits);
      logits.set(q, o.contextLogits);
    }
    const ppl = (q: string) => {
      let nll = 0;
      for (let t = 0; t + 1 < ids.length; t++)
        nll -= logSoftmax(logits.get(q)!.subarray(t * V, (t + 1) * V))[ids[t + 1]];
      return Math.exp(nll / (ids.length - 1));
    };
    /** Mean KL(fp32 ‖ q) per position: how far q's next-token distributions are from fp32's. */
    const kl = (q: string) => {
      let sum = 0;
      for (let t = 0; t < ids.length; t++) {
        const p = logSoftmax(logits.get("none")!.subarray(t * V, (t + 1) * V));
        const r = logSoftmax(logits.get(q)!.subarray(t * V, (t + 1) * V));
        for (let i = 0; i < V; i++) sum += Math.exp(p[i]) * (p[i] - r[i]);
      }
      return sum / ids.length;
    };
    const [fp32, rtn, awq] = KINDS.map(ppl);
    const [klRtn, klAwq] = [kl("int4-wo"), kl("int4-awq")];
    console.log(
      `perplexity fp32 ${fp32.toFixed(3)}, int4-wo ${rtn.toFixed(3)}, int4-awq ${awq.toFixed(3)}; ` +
        `KL to fp32 int4-wo ${klRtn.toFixed(5)}, int4-awq ${klAwq.toFixed(5)}`,
    );
    assert.ok(awq / fp32 <= 1.05, `int4-awq perplexity ratio ${awq / fp32}`);
    // AWQ better than round to nearest, as this model can show it: perplexity cannot (a 456-token text
    // resolves it to about 1%, and int4-wo costs this model less than that; on 4096 held-out Tiny
    // Shakespeare tokens int4-awq's perplexity is no better than int4-wo's, docs/QUANTIZATION.md),
    // but the KL divergence from fp32, which does not depend on the sampled next token, can:
    // measured 0.0107 vs 0.0133 here (and 17% lower on the larger text).
    assert.ok(klAwq < 0.9 * klRtn, `KL int4-awq ${klAwq} vs int4-wo ${klRtn}`);
  });
});

describe("int4-awq calibration settings", () => {
  const tmp = tempCache();
  after(() => tmp.cleanup());
  const file = (name: string, text: string) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, text);
    return p;
  };

  test("defaults: the bundled text and DEFAULT_CALIBRATION_TOKENS; other builds carry none", () => {
    const c = resolveBuildConfig({ quantize: "int4-awq" });
    assert.equal(c.calibrationFile, DEFAULT_CALIBRATION_FILE);
    assert.equal(c.calibrationTokens, DEFAULT_CALIBRATION_TOKENS);
    assert.match(c.calibrationSha256 ?? "", /^[0-9a-f]{64}$/);
    // Other builds carry no calibration fields: their configs and cache keys are what they were.
    const plain = resolveBuildConfig({ quantize: "int4-wo" });
    assert.ok(!Object.keys(plain).some((k) => k.startsWith("calibration")), Object.keys(plain).join());
    // Resolving a resolved config changes nothing (the builder resolves what the cache resolved).
    assert.deepEqual(resolveBuildConfig(c), c);
  });

  test("the cache key follows the calibration's content and token count, not its path", () => {
    const a = file("a.txt", "To be, or not to be, that is the question.\n");
    mkdirSync(join(tmp.dir, "elsewhere"));
    const sameText = join(tmp.dir, "elsewhere", "a.txt");
    copyFileSync(a, sameText);
    const other = file("b.txt", "Now is the winter of our discontent.\n");
    const key = (o: object) => engineCacheKey("h", resolveBuildConfig({ quantize: "int4-awq", ...o }));
    assert.equal(key({ calibrationFile: a }), key({ calibrationFile: sameText }));
    assert.notEqual(key({ calibrationFile: a }), key({ calibrationFile: other }));
    assert.notEqual(key({ calibrationFile: a }), key({ calibrationFile: a, calibrationTokens: 64 }));
    assert.notEqual(
      key({ calibrationFile: a }),
      engineCacheKey("h", resolveBuildConfig({ quantize: "int4-wo" })),
    );
  });

  test("a missing, empty or directory file, or a token count below 2, is a CalibrationFileError", () => {
    const cases: [object, RegExp][] = [
      [{ calibrationFile: join(tmp.dir, "missing.txt") }, /missing\.txt: no such file/],
      [{ calibrationFile: file("empty.txt", " \n\n") }, /empty\.txt is empty/],
      [{ calibrationFile: tmp.dir }, /is a directory/],
      [{ calibrationTokens: 1 }, /--calibration-tokens must be an integer ≥ 2, got 1/],
    ];
    for (const [o, message] of cases) {
      assert.throws(
        () => resolveBuildConfig({ quantize: "int4-awq", ...o }),
        (e: unknown) => e instanceof CalibrationFileError && message.test(e.message),
      );
    }
  });

  test("calibration settings without --quantize int4-awq are a CalibrationNotUsedError", () => {
    const a = file("c.txt", "text\n");
    for (const [o, message] of [
      [
        { calibrationFile: a },
        /--calibration .*c\.txt applies only to --quantize int4-awq or fp8-static \(got --quantize none\)/,
      ],
      [
        { quantize: "int4-wo", calibrationTokens: 64 },
        /--calibration-tokens 64 applies only .*got --quantize int4-wo/,
      ],
    ] as const) {
      assert.throws(
        () => resolveBuildConfig(o),
        (e: unknown) => e instanceof CalibrationNotUsedError && message.test(e.message),
      );
    }
  });

  test("a calibration file changed after the key was made is refused, not built under a stale key", () => {
    const p = file("d.txt", "Once more unto the breach, dear friends, once more.\n");
    const c = resolveBuildConfig({ quantize: "int4-awq", calibrationFile: p, calibrationTokens: 8 });
    const ids = calibrationIds(c, BUNDLED_MODEL_DIR);
    assert.equal(ids.length, 8);
    assert.equal(ids[0], 0); // the tokenizer's BOS
    writeFileSync(p, "Or close the wall up with our English dead.\n");
    assert.throws(
      () => calibrationIds(c, BUNDLED_MODEL_DIR),
      (e: unknown) => e instanceof CalibrationFileError && /changed while the build ran/.test(e.message),
    );
  });
});
