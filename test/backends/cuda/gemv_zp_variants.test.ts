// Which kernels/gemv_zp.cu kernel runs an int4-zp linear (src/backends/cuda/gemv_zp_variants.ts): the
// one-group-a-vector GEMV for group sizes that are multiples of 32 without g_idx, the per-feature
// ("any") GEMV for act-order weights and other group sizes; the GEMV only for k a multiple of 32; every
// name it launches is a kernel kernels/compile_matrix.json lists for the gemv_wo module.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  zpDequantLaunch,
  zpGemvGatedLaunch,
  zpGemvLaunch,
  zpGemvTakes,
} from "../../../src/backends/cuda/gemv_zp_variants.ts";
import { moduleSpecs, quantizedModules } from "../../../src/backends/cuda/kernel_modules.ts";
import { optimize } from "../../../src/builder/optimize.ts";
import { parseHfConfig } from "../../../src/checkpoint/hf_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { TINY_CONFIGS } from "../../helpers/tiny_model.ts";

const matrix = JSON.parse(
  readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
);
const entry = matrix.files["gemv_zp.cu"];
const exported = new Set<string>([...entry.kernels, ...entry.kernels16Bit]);

describe("gemv_zp variants", () => {
  test("group sizes that are multiples of 32 without g_idx: gemv_zp; else gemv_zp_any", () => {
    for (const g of [32, 64, 128, 4096]) assert.match(zpGemvLaunch(8, 4096, g, false).kernel, /^gemv_zp_r2u/);
    for (const g of [1, 16, 48, 100])
      assert.match(zpGemvLaunch(8, 4096, g, false).kernel, /^gemv_zp_any_r2u4w4$/);
    for (const g of [32, 128]) assert.equal(zpGemvLaunch(8, 4096, g, true).kernel, "gemv_zp_any_r2u4w4");
    assert.equal(zpGemvGatedLaunch("silu", 8, 128, false).kernel, "gemv_zp_gated_silu");
    assert.equal(zpGemvGatedLaunch("silu", 8, 128, true).kernel, "gemv_zp_any_gated_silu");
  });

  test("with the tensor cores allowed (mma): gemv_zp_mma where G is a multiple of 128 and no g_idx", () => {
    for (const g of [128, 256, 4096])
      assert.deepEqual(zpGemvLaunch(37, 4096, g, false, true), {
        kernel: "gemv_zp_mma",
        grid: 3,
        block: 256,
      });
    for (const g of [32, 64]) assert.match(zpGemvLaunch(8, 4096, g, false, true).kernel, /^gemv_zp_r2u/);
    assert.equal(zpGemvLaunch(8, 4096, 128, true, true).kernel, "gemv_zp_any_r2u4w4", "act-order");
    assert.deepEqual(zpGemvGatedLaunch("silu", 14336, 128, false, true), {
      kernel: "gemv_zp_mma_gated_silu",
      grid: 896,
      block: 256,
    });
    assert.equal(zpGemvGatedLaunch("silu", 8, 64, false, true).kernel, "gemv_zp_gated_silu");
  });

  test("U = 8 once a row has 256 vectors (k ≥ 8192), for the grouped kernel only", () => {
    assert.equal(zpGemvLaunch(8, 8160, 32, false).kernel, "gemv_zp_r2u4w4");
    assert.equal(zpGemvLaunch(8, 8192, 32, false).kernel, "gemv_zp_r2u8w4");
    assert.equal(zpGemvLaunch(8, 8192, 32, true).kernel, "gemv_zp_any_r2u4w4");
  });

  test("grids: 8 rows (GEMV, gated) or 256 q bytes (dequant) a block", () => {
    assert.deepEqual(zpGemvLaunch(37, 64, 32, false), { kernel: "gemv_zp_r2u4w4", grid: 5, block: 128 });
    assert.deepEqual(zpGemvGatedLaunch("relu", 9, 32, false), {
      kernel: "gemv_zp_gated_relu",
      grid: 2,
      block: 256,
    });
    assert.deepEqual(zpDequantLaunch(11, 101), { kernel: "dequant_zp", grid: 3, block: 256 }); // 561 bytes
    assert.deepEqual(zpDequantLaunch(4, 128), { kernel: "dequant_zp", grid: 1, block: 256 }); // 256 bytes
  });

  test("the GEMV takes k a multiple of 32 (16-byte q rows) only", () => {
    for (const k of [32, 64, 4096, 11008, 14336]) assert.ok(zpGemvTakes(k), `${k}`);
    for (const k of [8, 16, 48, 4100]) assert.ok(!zpGemvTakes(k), `${k}`);
  });

  test("every kernel named is one gemv_zp.cu exports", () => {
    const names = [
      ...[32, 48].flatMap((g) => [false, true].map((a) => zpGemvLaunch(8, 8192, g, a).kernel)),
      zpGemvLaunch(8, 64, 32, false).kernel,
      zpGemvLaunch(8, 4096, 128, false, true).kernel,
      ...["silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu"].flatMap((act) => [
        ...[false, true].map((a) => zpGemvGatedLaunch(act, 8, 32, a).kernel),
        zpGemvGatedLaunch(act, 8, 128, false, true).kernel,
      ]),
      zpDequantLaunch(1, 1).kernel,
    ];
    for (const n of names) assert.ok(exported.has(n), `${n} not in compile_matrix.json's gemv_zp.cu`);
  });
});

describe("moduleSpecs: the gemv_zp module", () => {
  const config = parseHfConfig(TINY_CONFIGS.llama, "llama");
  const net = optimize(defineModel(config, "llama"), resolveBuildConfig());
  const plan = { ops: net.ops, output: net.output };
  const keys = (dtype: "fp32" | "bf16", formats: (string | undefined)[]) => {
    return moduleSpecs(config, plan, dtype, 16, quantizedModules(formats)).map((s) => s.key);
  };

  test("int4-zp engines (AWQ, GPTQ) get gemv_zp.cu, every dtype, and not gemv_wo.cu", () => {
    for (const dtype of ["fp32", "bf16"] as const) {
      const k = keys(dtype, [undefined, "int4-zp"]);
      assert.ok(k.includes("gemv_zp"), dtype);
      assert.ok(!k.includes("gemv_wo"), dtype);
    }
  });

  test("int8-wo / int4-wo engines get gemv_wo.cu only; plain engines neither", () => {
    for (const f of ["int8-wo", "int4-wo"]) {
      const k = keys("bf16", [undefined, f]);
      assert.ok(k.includes("gemv_wo") && !k.includes("gemv_zp"), f);
    }
    const plainKeys = keys("bf16", [undefined]);
    assert.ok(!plainKeys.includes("gemv_wo") && !plainKeys.includes("gemv_zp"));
  });

  test("with the model's activation only, as gemv.cu", () => {
    const specs = moduleSpecs(config, plan, "bf16", 16, quantizedModules(["int4-zp"]));
    assert.deepEqual(
      specs.find((s) => s.key === "gemv_zp")?.defines,
      specs.find((s) => s.key === "gemv")?.defines,
    );
  });
});
