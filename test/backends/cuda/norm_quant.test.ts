// Which norms of an fp8 engine quantize their output for the fp8 linears reading it (norm_quant.ts
// markNormQuant, through lower()), on the CPU: a Llama layer's input_layernorm and
// post_attention_layernorm for every architecture, fused or unfused linears, dynamic or one static scale;
// not a norm with a reader that is not an fp8 linear or quantizes otherwise, the decoder's final norm, or
// a norm whose readers have another scratch writer between them; and engines without fp8 linears are
// lowered exactly as before.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type LoweredStep, lower } from "../../../src/backends/cuda/lowering.ts";
import type { Fp8Input, Fp8InputOf } from "../../../src/backends/cuda/norm_quant.ts";
import { optimize } from "../../../src/builder/optimize.ts";
import { parseHfConfig } from "../../../src/checkpoint/hf_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import type { Op, Plan } from "../../../src/engine/format.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { TINY_CONFIGS } from "../../helpers/tiny_model.ts";

function plan(arch: string, fuse = true) {
  const config = parseHfConfig(TINY_CONFIGS[arch], arch);
  const net = optimize(defineModel(config, arch), resolveBuildConfig({ fuse }));
  return { config, plan: { ops: net.ops, output: net.output } };
}

/** What `--quantize fp8` makes of a plan: every linear but the LM head an fp8 weight with dynamic scales,
 * or, with `scale`, the static input scale it gives the weight (undefined: not fp8). */
function fp8Engine(p: Plan, scale?: (weight: string) => number | null | undefined): Fp8InputOf {
  const k = new Map<string, number>();
  for (const op of p.ops) if (op.kind === "linear" && op.out !== p.output) k.set(op.weight, op.inFeatures);
  return (weight) => {
    const staticScale = scale ? scale(weight) : null;
    const inFeatures = k.get(weight);
    return inFeatures === undefined || staticScale === undefined ? undefined : { k: inFeatures, staticScale };
  };
}

type Norm = Extract<LoweredStep, { kind: "rms_norm" | "add_rms_norm" }>;
const isNorm = (s: LoweredStep): s is Norm => s.kind === "rms_norm" || s.kind === "add_rms_norm";
const fused = (steps: LoweredStep[]) => steps.filter((s): s is Norm => isNorm(s) && s.fp8Out !== undefined);
const quantizedInputs = (steps: LoweredStep[]) =>
  steps.flatMap((s) => (s.kind === "linear" && s.inputQuantized ? [s.op.weight] : []));
const layerNorm = (steps: LoweredStep[], name: string) =>
  steps.find((s): s is Norm => isNorm(s) && s.op.out.startsWith(name)) as Norm;

describe("fp8 engines: norms that quantize for their fp8 linears (norm_quant.ts)", () => {
  for (const arch of Object.keys(TINY_CONFIGS)) {
    test(`${arch}: each layer's input and post-attention norms quantize for qkv_proj and gate_up_proj`, () => {
      const { config, plan: p } = plan(arch);
      const plain = lower(p, config).steps;
      const { steps } = lower(p, config, fp8Engine(p));
      assert.equal(steps.length, plain.length, "the same steps");
      const norms = fused(steps);
      assert.equal(norms.length, 2 * config.numLayers);
      assert.equal(norms[0].kind, "rms_norm", "layer 0's input norm reads the embedding");
      assert.ok(norms.slice(1).every((s) => s.kind === "add_rms_norm"));
      for (const n of norms) {
        const readers = n.fp8Out?.readers ?? [];
        assert.equal(readers.length, 1);
        assert.match(readers[0].op.weight, /\.(qkv_proj|gate_up_proj)\.weight$/);
        assert.equal(n.fp8Out?.weight, readers[0].op.weight, "the scale is the reader's");
        assert.equal(
          readers[0].gated,
          /gate_up/.test(readers[0].op.weight),
          "gate_up carries its activation",
        );
        assert.equal(readers[0].op.x, n.op.out);
      }
      const inputs = quantizedInputs(steps);
      assert.equal(inputs.length, 2 * config.numLayers);
      assert.ok(
        inputs.every((w) => /\.(qkv_proj|gate_up_proj)\.weight$/.test(w)),
        "o_proj, down_proj quantize",
      );
      // Every step not marked is the plain lowering's, and the marked ones differ only by their marks.
      steps.forEach((s, i) => {
        const { fp8Out: _, inputQuantized: __, ...rest } = s as Norm & { inputQuantized?: boolean };
        assert.deepEqual(rest, plain[i]);
      });
      const final = steps.find((s) => s.kind === "rms_norm" && s.finalNorm);
      assert.ok(final?.kind === "rms_norm" && final.fp8Out === undefined, "not the final norm");
    });

    test(`${arch}: unquantized engines are lowered as before, unmarked`, () => {
      const { config, plan: p } = plan(arch);
      const plain = lower(p, config);
      assert.deepEqual(
        lower(p, config, () => undefined),
        plain,
      );
      for (const s of plain.steps) assert.ok(!("fp8Out" in s) && !("inputQuantized" in s));
    });
  }

  test("the final norm never quantizes, even for an fp8 LM head", () => {
    const { config, plan: p } = plan("llama");
    const k = new Map(p.ops.flatMap((o) => (o.kind === "linear" ? [[o.weight, o.inFeatures] as const] : [])));
    const all: Fp8InputOf = (w) => ({ k: k.get(w) as number, staticScale: null });
    const { steps } = lower(p, config, all);
    assert.equal(fused(steps).length, 2 * config.numLayers);
    assert.ok(!steps.some((s) => s.kind === "linear" && s.logits && s.inputQuantized));
  });

  test("unfused linears: one norm quantizes for q, k, v (and gate, up) when they quantize alike", () => {
    const { config, plan: p } = plan("llama", false);
    const { steps } = lower(p, config, fp8Engine(p));
    const input0 = layerNorm(steps, "model.layers.0.input_layernorm");
    assert.deepEqual(
      input0.fp8Out?.readers.map((r) => r.op.weight.split(".").at(-2)),
      ["q_proj", "k_proj", "v_proj"],
    );
    const post0 = layerNorm(steps, "model.layers.0.post_attention_layernorm");
    assert.deepEqual(
      post0.fp8Out?.readers.map((r) => [r.op.weight.split(".").at(-2), r.gated]),
      [
        ["gate_proj", false],
        ["up_proj", false],
      ],
    );
    assert.equal(quantizedInputs(steps).length, 5 * config.numLayers);
  });

  test("static scales: one value for every reader fuses; two values, or static beside dynamic, do not", () => {
    const { config, plan: p } = plan("llama", false);
    // fp8-static's calibration: one scale per input (fp8_static.ts), so q, k, v share one.
    const perInput = (w: string) => (/self_attn\.[qkv]_proj/.test(w) ? 0.03125 : 0.0625);
    const same = lower(p, config, fp8Engine(p, perInput)).steps;
    assert.equal(fused(same).length, 2 * config.numLayers);
    const input0 = layerNorm(same, "model.layers.0.input_layernorm");
    assert.equal(input0.fp8Out?.weight, "model.layers.0.self_attn.q_proj.weight");

    const kApart = (w: string) => (/self_attn\.k_proj/.test(w) ? 0.0625 : perInput(w));
    const twoValues = lower(p, config, fp8Engine(p, kApart)).steps;
    assert.equal(fused(twoValues).length, config.numLayers, "the post-attention norms only");
    assert.ok(fused(twoValues).every((n) => n.op.out.includes("post_attention_layernorm")));
    assert.ok(!quantizedInputs(twoValues).some((w) => /self_attn/.test(w)), "q, k, v quantize their own");

    const vDynamic = (w: string) => (/self_attn\.v_proj/.test(w) ? null : perInput(w));
    const mixed = lower(p, config, fp8Engine(p, vDynamic)).steps;
    assert.equal(fused(mixed).length, config.numLayers);
    assert.ok(fused(mixed).every((n) => n.op.out.includes("post_attention_layernorm")));
  });

  test("a norm read by a linear that is not fp8 stays as it is; its sibling norm still quantizes", () => {
    const { config, plan: p } = plan("llama");
    const noGateUp = (w: string) => (/gate_up_proj/.test(w) ? undefined : null);
    const { steps } = lower(p, config, fp8Engine(p, noGateUp));
    assert.equal(fused(steps).length, config.numLayers);
    assert.ok(fused(steps).every((n) => n.op.out.includes("input_layernorm")));
    const apart = plan("llama", false).plan;
    const qPlain = (w: string) => (/self_attn\.q_proj/.test(w) ? undefined : null);
    const unfused = lower(apart, config, fp8Engine(apart, qPlain)).steps;
    assert.equal(fused(unfused).length, config.numLayers);
    assert.ok(
      fused(unfused).every((n) => n.op.out.includes("post_attention_layernorm")),
      "q_proj: bf16",
    );
  });

  // A hand-made plan: norm n read by two fp8 linears with another fp8 linear between them, whose own
  // quantization would overwrite the scratch before the second reader; then the same without it, a norm
  // also read by an add, and a width that is not a multiple of 16.
  function handPlan(between: boolean, width = 32): Plan {
    const lin = (x: string, out: string, weight: string): Op => ({
      kind: "linear",
      x,
      out,
      inFeatures: width,
      outFeatures: width,
      weight,
    });
    const ops: Op[] = [
      { kind: "embedding", out: "e", width, weight: "emb" },
      { kind: "rms_norm", x: "e", out: "n", width, eps: 1e-5, weight: "g" },
      lin("n", "a", "wa"),
      ...(between ? [lin("a", "b", "wb")] : []),
      lin("n", "c", "wc"),
      { kind: "add", a: between ? "b" : "a", b: "c", out: "d", width },
      lin("d", "logits", "head"),
    ];
    return { ops, output: "logits" };
  }
  const dynamic =
    (width: number): Fp8InputOf =>
    (w) =>
      ["wa", "wb", "wc"].includes(w) ? ({ k: width, staticScale: null } satisfies Fp8Input) : undefined;

  test("another fp8 linear between a norm's readers keeps the norm as it is", () => {
    const { config } = plan("llama");
    const apart = lower(handPlan(true), config, dynamic(32)).steps;
    assert.equal(fused(apart).length, 0);
    assert.deepEqual(quantizedInputs(apart), []);
    const together = lower(handPlan(false), config, dynamic(32)).steps;
    assert.deepEqual(
      fused(together).map((n) => n.fp8Out?.readers.map((r) => r.op.weight)),
      [["wa", "wc"]],
    );
    assert.deepEqual(quantizedInputs(together), ["wa", "wc"]);
  });

  test("a norm also read by another op, or of a width not a multiple of 16, stays as it is", () => {
    const { config } = plan("llama");
    const p = handPlan(false);
    const alsoAdded: Plan = {
      ...p,
      ops: p.ops.map((o) => (o.kind === "add" ? { ...o, b: "n" } : o)),
    };
    assert.equal(fused(lower(alsoAdded, config, dynamic(32)).steps).length, 0);
    assert.equal(fused(lower(handPlan(false, 24), config, dynamic(24)).steps).length, 0);
  });
});
