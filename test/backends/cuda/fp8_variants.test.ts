// The launch shapes of kernels/gemv_fp8.cu (src/backends/cuda/fp8_variants.ts), on the CPU: one block
// per row for the activation quantization, U = 8 from k = 4096 (32 lanes × 8 vectors of 16 features),
// 8 rows per block (gemv_fp8_bits: 16), and the activation scratch: xq for the widest input, then
// 256-byte-aligned scales, then (the bits GEMV, the default) 256-byte-aligned x̂ at the GEMV's rows.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  FP8_GEMV_MAX_ROWS,
  fp8DecodeLaunch,
  fp8DecodeReadsXhat,
  fp8GemvBitsLaunch,
  fp8GemvGatedLaunch,
  fp8GemvLaunch,
  fp8GemvMmaGatedLaunch,
  fp8GemvMmaLaunch,
  fp8QuantLaunch,
  fp8ScaleOffset,
  fp8ScaleRowsLaunch,
  fp8ScratchBytes,
  fp8XhatOffset,
  fp8XhatRows,
  parseFp8Gemv,
  resolveFp8Gemv,
} from "../../../src/backends/cuda/fp8_variants.ts";
import { GATED_ACTS } from "../../../src/backends/cuda/gemv_variants.ts";
import { moduleSpecs } from "../../../src/backends/cuda/kernel_modules.ts";
import { optimize } from "../../../src/builder/optimize.ts";
import { parseHfConfig } from "../../../src/checkpoint/hf_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import { InvalidEnvironmentError } from "../../../src/errors.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { TINY_CONFIGS } from "../../helpers/tiny_model.ts";

const matrix = JSON.parse(
  readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
);

describe("fp8_variants", () => {
  test("fp8_scale_rows: one thread per element of y", () => {
    assert.deepEqual(fp8ScaleRowsLaunch(3, 1000), { kernel: "fp8_scale_rows", grid: 12, block: 256 });
  });

  test("quant_fp8_act: one block per row, a thread per 16 bytes of it in whole warps, ≤ 1,024", () => {
    // bf16 rows of 4,096: 512 vectors; of 14,336: 1,792 vectors, capped (threads loop); fp32 rows of
    // 272: 68 vectors, rounded up to three warps; 16 features: one warp.
    assert.deepEqual(fp8QuantLaunch(7, 4096, 2), { kernel: "quant_fp8_act", grid: 7, block: 512 });
    assert.deepEqual(fp8QuantLaunch(1, 14336, 2), { kernel: "quant_fp8_act", grid: 1, block: 1024 });
    assert.deepEqual(fp8QuantLaunch(3, 272, 4), { kernel: "quant_fp8_act", grid: 3, block: 96 });
    assert.deepEqual(fp8QuantLaunch(2, 16, 2), { kernel: "quant_fp8_act", grid: 2, block: 32 });
  });

  test("gemv_fp8: u8 from k = 4096, u4 below; 8 rows per block", () => {
    assert.deepEqual(fp8GemvLaunch(4096, 4096), { kernel: "gemv_fp8_r2u8w4", grid: 512, block: 128 });
    assert.deepEqual(fp8GemvLaunch(37, 4080), { kernel: "gemv_fp8_r2u4w4", grid: 5, block: 128 });
    assert.deepEqual(fp8GemvGatedLaunch("silu", 14336), {
      kernel: "gemv_fp8_gated_silu",
      grid: 1792,
      block: 256,
    });
    assert.equal(FP8_GEMV_MAX_ROWS, 8);
  });

  test("gemv_fp8_mma: 16 rows (one mma tile) per block of 8 warps, any k", () => {
    assert.deepEqual(fp8GemvMmaLaunch(4096), { kernel: "gemv_fp8_mma", grid: 256, block: 256 });
    assert.deepEqual(fp8GemvMmaLaunch(37), { kernel: "gemv_fp8_mma", grid: 3, block: 256 });
    assert.deepEqual(fp8GemvMmaGatedLaunch("gelu", 14336), {
      kernel: "gemv_fp8_mma_gated_gelu",
      grid: 896,
      block: 256,
    });
  });

  test("gemv_fp8_bits: 16 rows (4 a warp) per block of 4 warps, any k", () => {
    assert.deepEqual(fp8GemvBitsLaunch(4096), { kernel: "gemv_fp8_bits_r4u2w4", grid: 256, block: 128 });
    assert.deepEqual(fp8GemvBitsLaunch(37), { kernel: "gemv_fp8_bits_r4u2w4", grid: 3, block: 128 });
  });

  test("KILN_FP8_GEMV picks the decode kernels: auto (default), bits, fma or mma; others refused by name", () => {
    assert.equal(parseFp8Gemv(undefined), "auto");
    assert.equal(parseFp8Gemv(""), "auto");
    assert.equal(parseFp8Gemv("auto"), "auto");
    assert.equal(parseFp8Gemv("fma"), "fma");
    assert.equal(parseFp8Gemv("mma"), "mma");
    assert.equal(parseFp8Gemv("bits"), "bits");
    for (const bad of ["tensor", "BITS", "bits "])
      assert.throws(
        () => parseFp8Gemv(bad),
        (e: unknown) =>
          e instanceof InvalidEnvironmentError &&
          e.message.includes("KILN_FP8_GEMV") &&
          e.message.includes("bits") &&
          e.message.includes(bad),
      );
    assert.deepEqual(fp8DecodeLaunch("fma", 4096, 4096), fp8GemvLaunch(4096, 4096));
    assert.deepEqual(fp8DecodeLaunch("fma", 100, 4096, "silu"), fp8GemvGatedLaunch("silu", 100));
    assert.deepEqual(fp8DecodeLaunch("mma", 4096, 4096), fp8GemvMmaLaunch(4096));
    assert.deepEqual(fp8DecodeLaunch("mma", 100, 4096, "silu"), fp8GemvMmaGatedLaunch("silu", 100));
    assert.deepEqual(fp8DecodeLaunch("bits", 4096, 4096), fp8GemvBitsLaunch(4096));
    // bits: the conversion-free kernel for plain linears, gemv_fp8's gated kernel (on xq) for gate_up.
    assert.deepEqual(fp8DecodeLaunch("bits", 100, 4096, "gelu"), fp8GemvGatedLaunch("gelu", 100));
    assert.equal(fp8DecodeReadsXhat("bits", false), true);
    assert.equal(fp8DecodeReadsXhat("bits", true), false);
    assert.equal(fp8DecodeReadsXhat("fma", false), false);
    assert.equal(fp8DecodeReadsXhat("mma", false), false);
  });

  test("auto: the tensor-core GEMV in 16-bit engines, the exact-sum bits GEMV in fp32 ones; a choice is kept", () => {
    assert.equal(resolveFp8Gemv("auto", "bf16"), "mma");
    assert.equal(resolveFp8Gemv("auto", "fp16"), "mma");
    assert.equal(resolveFp8Gemv("auto", "fp32"), "bits");
    for (const kind of ["bits", "fma", "mma"] as const)
      for (const dtype of ["fp32", "fp16", "bf16"] as const) assert.equal(resolveFp8Gemv(kind, dtype), kind);
    // So a bf16 engine's decode steps keep no x̂ and launch gemv_fp8_mma; an fp32 engine's read x̂.
    assert.equal(fp8XhatRows(resolveFp8Gemv("auto", "bf16"), 8), 0);
    assert.equal(fp8DecodeLaunch(resolveFp8Gemv("auto", "bf16"), 4096, 4096).kernel, "gemv_fp8_mma");
    assert.equal(fp8XhatRows(resolveFp8Gemv("auto", "fp32"), 8), 8);
    assert.equal(fp8DecodeLaunch(resolveFp8Gemv("auto", "fp32"), 4096, 4096).kernel, "gemv_fp8_bits_r4u2w4");
  });

  test("scratch: xq [rows, widest], scales 256-byte aligned after it; none without fp8 weights", () => {
    assert.equal(fp8ScratchBytes([], 64), 0);
    assert.equal(fp8ScaleOffset(48, 3), 256);
    assert.equal(fp8ScratchBytes([{ cols: 16 }, { cols: 48 }], 3), 256 + 12);
    assert.equal(fp8ScratchBytes([{ cols: 14336 }, { cols: 4096 }], 8192), 14336 * 8192 + 8192 * 4);
  });

  test("scratch with x̂ (bits only): fp32 [min(rows, 8), widest] 256-byte aligned after the scales", () => {
    assert.equal(fp8XhatRows("fma", 8192), 0);
    assert.equal(fp8XhatRows("mma", 8192), 0);
    assert.equal(fp8XhatRows("bits", 8192), FP8_GEMV_MAX_ROWS);
    assert.equal(fp8XhatRows("bits", 3), 3);
    // xq 3·48 = 144 → scales at 256, 12 bytes → x̂ at 512, 3·48 floats.
    assert.equal(fp8XhatOffset(48, 3), 512);
    assert.equal(fp8ScratchBytes([{ cols: 16 }, { cols: 48 }], 3, 3), 512 + 3 * 48 * 4);
    assert.equal(fp8ScratchBytes([{ cols: 16 }, { cols: 48 }], 3, 0), 256 + 12);
    assert.equal(fp8ScratchBytes([], 3, 3), 0);
    const [rows, widest] = [8192, 14336];
    const offset = fp8XhatOffset(widest, rows);
    assert.ok(offset >= fp8ScaleOffset(widest, rows) + rows * 4 && offset % 256 === 0);
    assert.equal(fp8ScratchBytes([{ cols: widest }], rows, 8), offset + 8 * widest * 4);
  });

  test("every kernel these launch is one compile_matrix.json lists for gemv_fp8.cu", () => {
    const kernels: string[] = matrix.files["gemv_fp8.cu"].kernels;
    assert.ok(kernels.includes(fp8QuantLaunch(1, 4096, 2).kernel));
    assert.ok(kernels.includes(fp8ScaleRowsLaunch(1, 1).kernel));
    for (const k of [16, 4096]) assert.ok(kernels.includes(fp8GemvLaunch(8, k).kernel), `k ${k}`);
    for (const act of GATED_ACTS) assert.ok(kernels.includes(fp8GemvGatedLaunch(act, 8).kernel), act);
    assert.ok(kernels.includes(fp8GemvMmaLaunch(8).kernel));
    for (const act of GATED_ACTS) assert.ok(kernels.includes(fp8GemvMmaGatedLaunch(act, 8).kernel), act);
    assert.ok(kernels.includes(fp8GemvBitsLaunch(8).kernel));
  });
});

describe("moduleSpecs: the gemv_fp8 module", () => {
  const config = parseHfConfig(TINY_CONFIGS.llama, "llama");
  const net = optimize(defineModel(config, "llama"), resolveBuildConfig());
  const plan = { ops: net.ops, output: net.output };
  const keys = (dtype: "fp32" | "bf16", quantized: boolean, fp8: boolean) =>
    moduleSpecs(config, plan, dtype, 16, { quantized, zp: false, fp8 }).map((s) => s.key);

  test("compiled for fp8 engines of every dtype, never for others; gemv_wo only when asked", () => {
    assert.ok(keys("bf16", false, true).includes("gemv_fp8"));
    assert.ok(keys("fp32", false, true).includes("gemv_fp8"));
    assert.ok(!keys("bf16", true, false).includes("gemv_fp8"));
    assert.ok(!keys("bf16", false, true).includes("gemv_wo"));
  });
});
