// The kernels a linear over a quantized weight launches (src/backends/cuda/gemv_wo_variants.ts) and the
// modules an engine compiles for them (kernel_modules.ts), on the CPU: int8-wo's variant per row length,
// int4-wo's tensor-core gemv_wo4_mma at every length, launch grids that cover every row or vector, kernel
// names that kernels/gemv_wo.cu exports (as compile_matrix.json lists them), the dequantization scratch,
// and the gemv_wo module exactly for quantized engines.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { GATED_ACTS } from "../../../src/backends/cuda/gemv_variants.ts";
import {
  dequantLaunch,
  dequantScratchBytes,
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

  // [k, U] of int8-wo's CUDA-core gemv_wo8_r2uUw4: U = 8 once a row holds 32·8 q vectors (16 features
  // each).
  const cases: [number, number][] = [
    [4096, 8], // 256 vectors: one whole U = 8 iteration
    [4080, 4], // 255 vectors
    [14336, 8],
    [264, 4],
  ];
  for (const [k, u] of cases) {
    test(`int8-wo, k ${k}: r2u${u}w4`, () => {
      const l = woGemvLaunch("int8-wo", 37, k);
      assert.equal(l.kernel, `gemv_wo8_r2u${u}w4`);
      assert.equal(l.block, 128);
      assert.equal(l.grid, 5, "8 rows a block: 37 rows in 5 blocks");
    });
  }

  test("int4-wo: the tensor-core gemv_wo4_mma, 16 rows a block of 8 warps; past one step, its pipelined twin", () => {
    for (const k of [8, 264, 4096])
      assert.deepEqual(
        woGemvLaunch("int4-wo", 37, k),
        { kernel: "gemv_wo4_mma", grid: 3, block: 256 },
        `k ${k}`,
      );
    for (const k of [4104, 8192, 14336])
      assert.deepEqual(
        woGemvLaunch("int4-wo", 37, k),
        { kernel: "gemv_wo4_mma_p", grid: 3, block: 256 },
        `k ${k}: several load rounds`,
      );
    assert.equal(woGemvLaunch("int4-wo", 32, 4096).grid, 2, "32 rows: 2 whole blocks");
    assert.equal(woGemvLaunch("int4-wo", 33, 4096).grid, 3, "33 rows: a third block for the last row");
    assert.equal(woGemvLaunch("int4-wo", 1, 4096).grid, 1);
  });

  test("int4-wo gated: gemv_wo4_mma_gated_ACT, 16 output features a block of 8 warps", () => {
    assert.deepEqual(woGemvGatedLaunch("int4-wo", "silu", 14336), {
      kernel: "gemv_wo4_mma_gated_silu",
      grid: 896,
      block: 256,
    });
    assert.deepEqual(woGemvGatedLaunch("int4-wo", "gelu", 17), {
      kernel: "gemv_wo4_mma_gated_gelu",
      grid: 2,
      block: 256,
    });
  });

  test("int8-wo gated: the CUDA-core gemv_wo8_gated_ACT, one output feature a warp, 8 a block", () => {
    assert.deepEqual(woGemvGatedLaunch("int8-wo", "silu", 14336), {
      kernel: "gemv_wo8_gated_silu",
      grid: 1792,
      block: 256,
    });
    assert.equal(woGemvGatedLaunch("int8-wo", "relu", 9).grid, 2);
  });

  test("every kernel a launch can name is one gemv_wo.cu exports (16-bit builds)", () => {
    const exported = new Set([...entry.kernels, ...entry.kernels16Bit]);
    for (const format of FORMATS) {
      for (const k of [8, 264, 4096, 14336])
        assert.ok(exported.has(woGemvLaunch(format, 1, k).kernel), `${format} k ${k}`);
      for (const act of GATED_ACTS)
        assert.ok(exported.has(woGemvGatedLaunch(format, act, 7).kernel), `${format} ${act}`);
      assert.ok(entry.kernels.includes(dequantLaunch(format, 1, 1).kernel), "dequant in every dtype");
    }
  });

  test("int4 kernels: gemv_wo.cu exports only the tensor-core ones, for every activation", () => {
    const exported = [...entry.kernels, ...entry.kernels16Bit] as string[];
    assert.deepEqual(
      exported.filter((k) => k.startsWith("gemv_wo4_")).sort(),
      ["gemv_wo4_mma", "gemv_wo4_mma_p", ...GATED_ACTS.map((act) => `gemv_wo4_mma_gated_${act}`)].sort(),
    );
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
