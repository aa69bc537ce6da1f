// The scheme a pre-quantized checkpoint declares: what is read, and every unsupported scheme or
// setting refused by name (UnsupportedQuantizationError naming it and what kiln reads).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { UnsupportedQuantizationError } from "../../src/checkpoint/errors.ts";
import { readQuantizationScheme } from "../../src/checkpoint/quantization_scheme.ts";

const fp8Group = (weights: object, inputs: object | null) => ({
  quant_method: "compressed-tensors",
  format: "float-quantized",
  config_groups: {
    group_0: {
      targets: ["Linear"],
      weights: { num_bits: 8, type: "float", strategy: "channel", dynamic: false, ...weights },
      input_activations: inputs,
    },
  },
  ignore: ["lm_head"],
});
const dynamicInputs = { num_bits: 8, type: "float", dynamic: true, strategy: "token" };

const scheme = (qc: unknown, modelopt?: unknown) =>
  readQuantizationScheme(qc === undefined ? {} : { quantization_config: qc }, "config.json", modelopt);

describe("readQuantizationScheme", () => {
  test("no quantization_config and no hf_quant_config.json: none", () => {
    assert.deepEqual(scheme(undefined), { method: "none" });
    assert.deepEqual(scheme(null), { method: "none" });
  });

  test("AWQ GEMM, GPTQ v1 / v2 with and without desc_act, group_size -1 as one group per row", () => {
    assert.deepEqual(
      scheme({ quant_method: "awq", bits: 4, group_size: 128, version: "GEMM", zero_point: true }),
      {
        method: "awq",
        groupSize: 128,
      },
    );
    assert.deepEqual(scheme({ quant_method: "gptq", bits: 4, group_size: 128, desc_act: true }), {
      method: "gptq",
      groupSize: 128,
      descAct: true,
      zeroOffset: 1,
    });
    assert.deepEqual(
      scheme({
        quant_method: "gptq",
        bits: 4,
        group_size: -1,
        desc_act: false,
        checkpoint_format: "gptq_v2",
      }),
      { method: "gptq", groupSize: 0, descAct: false, zeroOffset: 0 },
    );
  });

  test("FP8: compressed-tensors static / dynamic, quant_method fp8, ModelOpt in either file", () => {
    const staticInputs = { num_bits: 8, type: "float", dynamic: false, strategy: "tensor" };
    assert.deepEqual(scheme(fp8Group({ strategy: "tensor" }, staticInputs)), {
      method: "fp8",
      producer: "compressed-tensors",
      activation: "static",
    });
    assert.deepEqual(scheme({ ...fp8Group({}, dynamicInputs), kv_cache_scheme: { num_bits: 8 } }), {
      method: "fp8",
      producer: "compressed-tensors",
      activation: "dynamic",
    });
    assert.deepEqual(scheme({ quant_method: "fp8", activation_scheme: "static" }), {
      method: "fp8",
      producer: "fp8",
      activation: "static",
    });
    const modelopt = { method: "fp8", producer: "modelopt", activation: "static" };
    assert.deepEqual(
      scheme(undefined, { quantization: { quant_algo: "FP8", kv_cache_quant_algo: "FP8" } }),
      modelopt,
    );
    assert.deepEqual(scheme({ quant_method: "modelopt", quant_algo: "FP8" }), modelopt);
  });

  const refused: [string, unknown, RegExp, unknown?][] = [
    ["gptq 8-bit", { quant_method: "gptq", bits: 8, group_size: 128 }, /gptq bits=8/],
    ["awq gemv", { quant_method: "awq", bits: 4, group_size: 128, version: "gemv" }, /awq version="gemv"/],
    [
      "awq marlin",
      { quant_method: "awq", bits: 4, group_size: 128, version: "marlin" },
      /awq version="marlin"/,
    ],
    [
      "awq exllama",
      { quant_method: "awq", bits: 4, group_size: 128, version: "exllama" },
      /version="exllama"/,
    ],
    [
      "awq without zero points",
      { quant_method: "awq", bits: 4, group_size: 64, zero_point: false },
      /zero_point=false/,
    ],
    [
      "gptq marlin packing",
      { quant_method: "gptq", bits: 4, group_size: 128, checkpoint_format: "marlin" },
      /checkpoint_format="marlin"/,
    ],
    [
      "gptq quantized lm_head",
      { quant_method: "gptq", bits: 4, group_size: 128, lm_head: true },
      /lm_head=true/,
    ],
    ["gptq group_size 0", { quant_method: "gptq", bits: 4, group_size: 0 }, /group_size=0/],
    [
      "fp8 block-wise",
      { quant_method: "fp8", weight_block_size: [128, 128] },
      /fp8 weight_block_size=\[128,128\]/,
    ],
    ["bitsandbytes", { quant_method: "bitsandbytes", load_in_4bit: true }, /quant_method "bitsandbytes"/],
    ["hqq", { quant_method: "hqq" }, /quant_method "hqq"/],
    [
      "compressed-tensors w4a16 (pack-quantized)",
      { ...fp8Group({ type: "int", num_bits: 4 }, null), format: "pack-quantized" },
      /format="pack-quantized"/,
    ],
    [
      "compressed-tensors int8 weights",
      fp8Group({ type: "int" }, dynamicInputs),
      /weights type="int" num_bits=8/,
    ],
    [
      "compressed-tensors block fp8",
      fp8Group({ strategy: "block" }, dynamicInputs),
      /weights strategy="block"/,
    ],
    ["compressed-tensors fp8 weight-only", fp8Group({}, null), /input_activations=null.*W8A16/],
    [
      "compressed-tensors per-group activations",
      fp8Group({}, { num_bits: 8, type: "float", dynamic: true, strategy: "group" }),
      /input_activations dynamic=true strategy="group"/,
    ],
    ["ModelOpt NVFP4", undefined, /ModelOpt quant_algo="NVFP4"/, { quantization: { quant_algo: "NVFP4" } }],
    [
      "ModelOpt INT4_AWQ in config.json",
      { quant_method: "modelopt", quant_algo: "W4A16_AWQ" },
      /quant_algo="W4A16_AWQ"/,
    ],
  ];
  for (const [what, qc, re, modelopt] of refused) {
    test(`refused by name: ${what}`, () => {
      assert.throws(
        () => scheme(qc, modelopt),
        (e: unknown) => {
          assert.ok(e instanceof UnsupportedQuantizationError, String(e));
          assert.match(e.message, re);
          assert.match(e.message, /kiln loads AWQ .* GPTQ .* FP8/);
          return true;
        },
      );
    });
  }
});
