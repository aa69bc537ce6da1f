// AWQ's folding is exact: a network whose linears' columns are multiplied by s and whose input
// producers (norm weights, up rows, v rows under MHA) are divided by s computes the same logits as
// the original, in fp32, for every group awqGroups folds. Scales here are random and large (e^±1),
// far harsher than the searched ones, and run through the CPU backend on the unquantized engine.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { type LinearInputObserver, openCalibrationBackend } from "../../../src/backends/open_backend.ts";
import { buildEngine } from "../../../src/builder/builder.ts";
import { type AwqGroup, applyAwqScales, awqGroups } from "../../../src/builder/passes/awq/fold_rules.ts";
import { BUNDLED_MODEL_DIR } from "../../../src/bundled_model.ts";
import { toF32 } from "../../../src/dtype.ts";
import { openEngine } from "../../../src/engine/reader.ts";
import type { Network } from "../../../src/models/network.ts";
import { randn, TINY_CONFIGS, tempCache, writeTinyModel } from "../../helpers/tiny_model.ts";

interface Loaded {
  net: Network;
  weights: Map<string, Float32Array>;
}

/** The fp32 engine of `modelDir` as a network and its weights. */
function load(modelDir: string, outDir: string, fuse: boolean): Loaded {
  buildEngine(modelDir, outDir, { dtype: "fp32", fuse });
  const e = openEngine(outDir);
  try {
    const weights = new Map(e.header.weights.map((w) => [w.name, toF32(e.readWeight(w), w.dtype)]));
    const { ops, output } = e.header.plan;
    return { net: { config: e.config.model, ops, output, weights: {} }, weights };
  } finally {
    e.close();
  }
}

/** Logits of every position of one prefill of `ids`, [ids.length, V]. */
function logits(l: Loaded, weights: Map<string, Float32Array>, ids: number[], observe?: LinearInputObserver) {
  const b = openCalibrationBackend(l.net.config, l.net, new Map(weights), 16, observe ?? (() => {}));
  try {
    b.allocateKvCache(Math.ceil(ids.length / 16));
    const T = ids.length;
    const iota = Int32Array.from({ length: T }, (_, i) => i);
    return b.forward({
      tokenIds: Int32Array.from(ids),
      positions: iota,
      slotMapping: iota,
      seqs: [
        {
          queryStart: 0,
          queryLen: T,
          contextLen: T,
          blockTable: Int32Array.from({ length: Math.ceil(T / 16) }, (_, i) => i),
        },
      ],
      logitRows: iota,
    });
  } finally {
    b.dispose();
  }
}

function copy(weights: Map<string, Float32Array>): Map<string, Float32Array> {
  return new Map([...weights].map(([k, v]) => [k, v.slice()]));
}

/** Random scales e^u, u ~ N(0, 1)/2 clipped to ±1, for every folded group. */
function randomScales(groups: AwqGroup[], seed: number): Map<string, Float32Array> {
  const r = randn(seed);
  return new Map(
    groups
      .filter((g) => g.fold)
      .map((g) => [
        g.input,
        Float32Array.from({ length: g.inFeatures }, () => Math.exp(Math.max(-1, Math.min(1, r() / 2)))),
      ]),
  );
}

function worstDiff(a: Float32Array, b: Float32Array): { worst: number; scale: number } {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(a[i]));
  }
  return { worst, scale };
}

/** Folded logits equal the original within fp32 rounding; scaling without the fold does not. */
function assertExact(l: Loaded, ids: number[], seed: number): void {
  const groups = awqGroups(l.net);
  const scales = randomScales(groups, seed);
  const want = logits(l, l.weights, ids);
  const folded = copy(l.weights);
  applyAwqScales(groups, scales, folded);
  const got = worstDiff(want, logits(l, folded, ids));
  // fp32: each scaled weight and folded vector is rounded once; 1e-4 of the largest logit is ~30x
  // the differences seen, and 100x below what an unfolded scale does (asserted next).
  assert.ok(got.worst <= 1e-4 * got.scale, `folded: worst |Δlogit| ${got.worst} of ${got.scale}`);
  // The control: columns scaled, producers left alone: the logits move, so the test above can fail.
  const unfolded = copy(l.weights);
  applyAwqScales(
    groups.map((g) => ({ ...g, fold: g.fold && { kind: "vectors" as const, weights: [] } })),
    scales,
    unfolded,
  );
  const broken = worstDiff(want, logits(l, unfolded, ids));
  assert.ok(broken.worst > 1e-2 * broken.scale, `unfolded: worst |Δlogit| ${broken.worst}`);
}

describe("AWQ folding", () => {
  const tmp = tempCache();
  const mha = writeTinyModel({ ...TINY_CONFIGS.llama, num_key_value_heads: 4 }); // biases on
  const gqa = writeTinyModel("llama");
  after(() => {
    tmp.cleanup();
    mha.cleanup();
    gqa.cleanup();
  });
  const ids = [1, 5, 9, 13, 2, 40, 33, 7, 8, 60, 3, 12, 19, 25, 31, 44, 50, 17];

  test("bundled model (GQA, fused): QKV and gate/up fold into the norms, down into up's rows", () => {
    const l = load(BUNDLED_MODEL_DIR, join(tmp.dir, "bundled"), true);
    const groups = awqGroups(l.net);
    assert.equal(groups.length, 6 * 4);
    const byInput = (pattern: RegExp) => groups.filter((g) => pattern.test(g.input));
    for (const g of byInput(/input_layernorm|post_attention_layernorm/)) {
      assert.equal(g.fold?.kind, "vectors", g.input);
      assert.ok(g.fold?.kind === "vectors" && /layernorm\.weight$/.test(g.fold.weights[0]));
    }
    for (const g of byInput(/^attn/)) assert.match(g.skip ?? "", /GQA \(8 query heads, 4 KV heads\)/);
    for (const g of byInput(/^act/)) {
      assert.deepEqual(g.fold?.kind === "rows" && [g.fold.offset, g.fold.rowWidth], [640, 256]);
      assert.match(g.fold?.kind === "rows" ? g.fold.weight : "", /gate_up_proj\.weight$/);
    }
    assertExact(l, [0, ...ids.map((i) => i * 37)], 7);
  });

  test("MHA with biases, fused: o_proj folds into v's rows of qkv_proj (and its bias)", () => {
    const l = load(mha.dir, join(tmp.dir, "mha"), true);
    const o = awqGroups(l.net).filter((g) => /^attn/.test(g.input));
    assert.equal(o.length, 2);
    for (const g of o) {
      assert.ok(g.fold?.kind === "rows", g.skip);
      assert.equal(g.fold.offset, 64); // after q (32) and k (32)
      assert.match(g.fold.bias ?? "", /qkv_proj\.bias$/);
    }
    assertExact(l, ids, 11);
  });

  test("unfused: q/k/v share one scale, down folds into up_proj, o_proj into v_proj", () => {
    const l = load(mha.dir, join(tmp.dir, "mha-unfused"), false);
    const groups = awqGroups(l.net);
    const qkv = groups.find((g) => g.linears.length === 3);
    assert.ok(qkv, "a group of three linears (q, k, v)");
    const rowsInto = groups.flatMap((g) => (g.fold?.kind === "rows" ? [g.fold.weight] : []));
    assert.ok(
      rowsInto.some((w) => /mlp\.up_proj\.weight$/.test(w)),
      rowsInto.join(),
    );
    assert.ok(
      rowsInto.some((w) => /self_attn\.v_proj\.weight$/.test(w)),
      rowsInto.join(),
    );
    assertExact(l, ids, 13);
  });

  test("LayerNorm: weight and bias both divided by s; an act-produced input is left unscaled", () => {
    // embedding → layer_norm → linear → act → LM head: no registered architecture has a LayerNorm
    // before its linears yet, so the network is written out here.
    const V = 11;
    const r = randn(21);
    const vec = (n: number, base = 0) => Float32Array.from({ length: n }, () => base + 0.3 * r());
    const config = { ...load(BUNDLED_MODEL_DIR, join(tmp.dir, "ln-config"), true).net.config, vocabSize: V };
    const net: Network = {
      config,
      ops: [
        { kind: "embedding", out: "e", width: 8, weight: "emb" },
        { kind: "layer_norm", x: "e", out: "n", width: 8, eps: 1e-5, weight: "ln.w", bias: "ln.b" },
        {
          kind: "linear",
          x: "n",
          out: "h",
          inFeatures: 8,
          outFeatures: 12,
          weight: "fc.weight",
          bias: "fc.bias",
        },
        { kind: "act", x: "h", out: "a", width: 12, act: "silu" },
        { kind: "linear", x: "a", out: "h2", inFeatures: 12, outFeatures: 12, weight: "fc2.weight" },
        { kind: "linear", x: "h2", out: "logits", inFeatures: 12, outFeatures: V, weight: "lm_head.weight" },
      ],
      output: "logits",
      weights: {},
    };
    const weights = new Map([
      ["emb", vec(V * 8)],
      ["ln.w", vec(8, 1)],
      ["ln.b", vec(8)],
      ["fc.weight", vec(12 * 8)],
      ["fc.bias", vec(12)],
      ["fc2.weight", vec(12 * 12)],
      ["lm_head.weight", vec(V * 12)],
    ]);
    const groups = awqGroups(net);
    assert.deepEqual(
      groups.map((g) => [g.input, g.fold, g.skip]),
      [
        ["n", { kind: "vectors", weights: ["ln.w", "ln.b"] }, undefined],
        ["a", null, "produced by act"],
      ],
    );
    assertExact({ net, weights }, [1, 4, 9, 3, 10, 0, 7], 19);
  });

  test("GQA tiny model with biases: exact, and o_proj left unscaled", () => {
    const l = load(gqa.dir, join(tmp.dir, "gqa"), true);
    assert.ok(awqGroups(l.net).every((g) => !/^attn/.test(g.input) || g.fold === null));
    assertExact(l, ids, 17);
  });
});
