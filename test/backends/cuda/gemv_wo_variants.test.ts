// The kernels a linear over a quantized weight launches (src/backends/cuda/gemv_wo_variants.ts) and the
// modules an engine compiles for them (kernel_modules.ts), on the CPU: the variant per row length,
// launch grids that cover every row or vector, kernel names that kernels/gemv_wo.cu exports (as
// compile_matrix.json lists them), the dequantization scratch, and the gemv_wo module exactly for
// quantized engines.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { GATED_ACTS } from "../../../src/backends/cuda/gemv_variants.ts";
import {
  dequantLaunch,
  dequantScratchBytes,
  parseWo4Gemv,
  WO_GEMV_MAX_ROWS,
  woBits,
  woGemvGatedLaunch,
  woGemvLaunch,
} from "../../../src/backends/cuda/gemv_wo_variants.ts";
import { moduleSpecs, quantizedModules } from "../../../src/backends/cuda/kernel_modules.ts";
import { optimize } from "../../../src/builder/optimize.ts";
import { parseHfConfig } from "../../../src/checkpoint/hf_config.ts";
import type { CudaWeightFormat } from "../../../src/engine/build_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { TINY_CONFIGS } from "../../helpers/tiny_model.ts";

const matrix = JSON.parse(
  readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
);
const entry = matrix.files["gemv_wo.cu"];
const FORMATS = ["int8-wo", "int4-wo"] as const;

describe("gemv_wo launches", () => {
  test("bits per weight of each format; no kernels for any other", () => {
    assert.equal(woBits("int8-wo"), 8);
    assert.equal(woBits("int4-wo"), 4);
    assert.throws(() => woBits("fp8" as CudaWeightFormat), /no kernels for fp8/);
  });

  // [format, k, U] of the CUDA-core kernels (the default; int8-wo always): U = 8 once a row holds 32·8 q
  // vectors (16 int8 or 32 int4 features each).
  const cases: [CudaWeightFormat, number, number][] = [
    ["int8-wo", 4096, 8], // 256 vectors: one whole U = 8 iteration
    ["int8-wo", 4080, 4], // 255 vectors
    ["int8-wo", 14336, 8],
    ["int4-wo", 4096, 4], // 128 vectors
    ["int4-wo", 8192, 8],
    ["int4-wo", 14336, 8],
    ["int4-wo", 264, 4],
  ];
  for (const [format, k, u] of cases) {
    test(`${format}, k ${k}: r2u${u}w4`, () => {
      const l = woGemvLaunch(format, 37, k);
      assert.equal(l.kernel, `gemv_wo${woBits(format)}_r2u${u}w4`);
      assert.equal(l.block, 128);
      assert.equal(l.grid, 5, "8 rows a block: 37 rows in 5 blocks");
    });
  }

  test("int4-wo with KILN_WO4_GEMV=mma: the tensor-core gemv_wo4_mma, 16 rows a block of 8 warps", () => {
    for (const k of [8, 264, 4096, 14336])
      assert.deepEqual(woGemvLaunch("int4-wo", 37, k, "mma"), {
        kernel: "gemv_wo4_mma",
        grid: 3,
        block: 256,
      });
    assert.deepEqual(woGemvGatedLaunch("int4-wo", "silu", 14336, "mma"), {
      kernel: "gemv_wo4_mma_gated_silu",
      grid: 896,
      block: 256,
    });
    assert.equal(
      woGemvLaunch("int8-wo", 37, 4096, "mma").kernel,
      "gemv_wo8_r2u8w4",
      "int8-wo: no mma kernel",
    );
  });

  test("KILN_WO4_GEMV: fma (unset or empty) or mma; anything else refused by name", () => {
    assert.equal(parseWo4Gemv(undefined), "fma");
    assert.equal(parseWo4Gemv(""), "fma");
    assert.equal(parseWo4Gemv("mma"), "mma");
    assert.throws(() => parseWo4Gemv("bits"), /KILN_WO4_GEMV must be mma or fma; got bits/);
  });

  test("every kernel a launch can name is one gemv_wo.cu exports (16-bit builds)", () => {
    const exported = new Set([...entry.kernels, ...entry.kernels16Bit]);
    for (const format of FORMATS) {
      for (const kind of ["mma", "fma"] as const) {
        for (const k of [8, 264, 4096, 14336])
          assert.ok(exported.has(woGemvLaunch(format, 1, k, kind).kernel));
        for (const act of GATED_ACTS)
          assert.ok(exported.has(woGemvGatedLaunch(format, act, 7, kind).kernel), `${act} ${kind}`);
      }
      assert.ok(entry.kernels.includes(dequantLaunch(format, 1, 1).kernel), "dequant in every dtype");
    }
  });

  test("the CUDA-core gated kernel: one output feature a warp, 8 a block", () => {
    assert.deepEqual(woGemvGatedLaunch("int4-wo", "silu", 14336), {
      kernel: "gemv_wo4_gated_silu",
      grid: 1792,
      block: 256,
    });
    assert.equal(woGemvGatedLaunch("int8-wo", "relu", 9).grid, 2);
  });

  test("dequant: one thread per q vector holding a feature below k", () => {
    // int8: 16 features a vector; k 264 → 17 vectors a row; 37 rows → 629 threads → 3 blocks of 256.
    assert.deepEqual(dequantLaunch("int8-wo", 37, 264), { kernel: "dequant_wo8", grid: 3, block: 256 });
    // int4: 32 features a vector; k 4096 → 128 vectors; 28672 rows → 14336 blocks.
    assert.equal(dequantLaunch("int4-wo", 28672, 4096).grid, 14336);
  });

  test("the scratch holds the largest weight in the engine dtype", () => {
    const weights = [
      { rows: 6144, cols: 4096 },
      { rows: 28672, cols: 4096 },
      { rows: 4096, cols: 14336 },
    ];
    assert.equal(dequantScratchBytes(weights, 2), 28672 * 4096 * 2);
    assert.equal(dequantScratchBytes([], 2), 0);
  });

  test("decode GEMVs over quantized weights up to the kernels' GEMV_MAX_M rows", () => {
    assert.equal(WO_GEMV_MAX_ROWS, 8);
  });
});

describe("moduleSpecs: the gemv_wo module", () => {
  const config = parseHfConfig(TINY_CONFIGS.llama, "llama");
  const net = optimize(defineModel(config, "llama"), resolveBuildConfig());
  const plan = { ops: net.ops, output: net.output };
  const keys = (dtype: "fp32" | "bf16", quantized: boolean) =>
    moduleSpecs(config, plan, dtype, 16, { quantized, zp: false, fp8: false }).map((s) => s.key);

  test("compiled for quantized engines of every dtype (fp32: for dequant_woB), never for others", () => {
    assert.ok(keys("bf16", true).includes("gemv_wo"));
    assert.ok(keys("fp32", true).includes("gemv_wo"));
    assert.ok(!keys("bf16", false).includes("gemv_wo"));
    assert.ok(!keys("fp32", false).includes("gemv_wo"));
  });

  test("with the model's activation only, as gemv.cu", () => {
    const specs = moduleSpecs(config, plan, "bf16", 16, quantizedModules(["int8-wo"]));
    const wo = specs.find((s) => s.key === "gemv_wo");
    const gemv = specs.find((s) => s.key === "gemv");
    assert.equal(wo?.defines.GEMV_ACT, 1, "silu");
    assert.deepEqual(wo?.defines, gemv?.defines);
  });
});
