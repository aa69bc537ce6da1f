// gemmShapes (src/backends/cuda/gemm_algorithms.ts), on the CPU: the engine-dtype GEMMs the build tunes
// cover every linear at every power-of-two row bucket, except the linears over weights it is told to
// skip (fp8 weights, which run cuBLASLt's FP8 GEMM, planned at load).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { gemmShapes } from "../../../src/backends/cuda/gemm_algorithms.ts";
import { lower } from "../../../src/backends/cuda/lowering.ts";
import { optimize } from "../../../src/builder/optimize.ts";
import { quantizableWeights } from "../../../src/builder/passes/quantize_weights.ts";
import { parseHfConfig } from "../../../src/checkpoint/hf_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { TINY_CONFIGS } from "../../helpers/tiny_model.ts";

describe("gemmShapes", () => {
  const config = parseHfConfig(TINY_CONFIGS.llama, "llama");
  const net = optimize(defineModel(config, "llama"), resolveBuildConfig());
  const lowered = lower({ ops: net.ops, output: net.output }, config);

  test("skips the linears over the given weights: with every quantizable one skipped, only the LM head's", () => {
    const all = gemmShapes(lowered, "bf16", 16, 64);
    const skipped = gemmShapes(lowered, "bf16", 16, 64, quantizableWeights(net));
    assert.ok(
      all.some((s) => !s.fp32Out),
      "block linears tuned by default",
    );
    assert.ok(skipped.length > 0 && skipped.length < all.length);
    assert.ok(
      skipped.every((s) => s.fp32Out && s.n === config.vocabSize),
      "only the LM head is left",
    );
  });
});
