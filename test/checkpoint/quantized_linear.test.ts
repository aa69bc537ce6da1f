// Pre-quantized linears decoded from hand-packed tensors: AWQ's interleaved nibble order, GPTQ's
// sequential order and its v1 zero points (stored − 1), FP8 per-channel scales, and named errors for
// parts that are missing or misshapen. (The fixtures in test/fixtures/quantized cover whole models.)
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Checkpoint } from "../../src/checkpoint/checkpoint.ts";
import { QuantizedTensorError } from "../../src/checkpoint/errors.ts";
import { readQuantizedLinear } from "../../src/checkpoint/quantized_linear.ts";
import { type TensorToWrite, writeSafetensors } from "../../src/checkpoint/safetensors.ts";
import { llamaConfig, tempDir, tensor, writeConfig } from "./helpers.ts";

const { dir, cleanup } = tempDir();
after(cleanup);
let counter = 0;

function i32(shape: number[], words: number[]): TensorToWrite {
  return { dtype: "I32", shape, data: new Uint8Array(new Uint32Array(words).buffer) };
}

/** A checkpoint holding only module "m" with `tensors`, declaring `qc`. */
function open(qc: unknown, tensors: Record<string, TensorToWrite>): Checkpoint {
  const d = join(dir, `c${counter++}`);
  mkdirSync(d);
  writeConfig(d, llamaConfig({ quantization_config: qc }));
  writeSafetensors(join(d, "model.safetensors"), tensors);
  return Checkpoint.open(d);
}

const AWQ = { quant_method: "awq", bits: 4, group_size: 2, version: "gemm" };
const GPTQ = { quant_method: "gptq", bits: 4, group_size: 8, desc_act: false };

describe("pre-quantized linears", () => {
  test("AWQ: nibble i of a word holds row 8j + [0, 2, 4, 6, 1, 3, 5, 7][i]", () => {
    // [out 8, in 2], one group of 2 (group_size 2): column 0 rows 0..7 = 0..7, column 1 = 8..15
    const order = [0, 2, 4, 6, 1, 3, 5, 7];
    const pack = (vals: number[]) => order.reduce((w, row, i) => (w | (vals[row] << (4 * i))) >>> 0, 0);
    const col0 = [0, 1, 2, 3, 4, 5, 6, 7];
    const col1 = [8, 9, 10, 11, 12, 13, 14, 15];
    using ckpt = open(AWQ, {
      "m.qweight": i32([2, 1], [pack(col0), pack(col1)]),
      "m.qzeros": i32([1, 1], [pack([1, 2, 3, 4, 5, 6, 7, 8])]),
      "m.scales": tensor("F16", [1, 8], [1, 2, 3, 4, 5, 6, 7, 8]),
    });
    const lin = readQuantizedLinear(ckpt, ckpt.quantization, "m");
    assert.equal(lin.kind, "int4");
    if (lin.kind !== "int4") return;
    assert.deepEqual([lin.rows, lin.cols, lin.groups], [8, 2, 1]);
    assert.deepEqual(
      [...lin.q],
      col0.flatMap((v, r) => [v, col1[r]]),
    );
    assert.deepEqual([...lin.zeros], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([...lin.scales], [1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test("GPTQ: feature 8i + k in nibble k; v1 zero points read as stored + 1 (15 → 16), v2 as stored", () => {
    // [out 8, in 8], one group: row r has q = r + c (mod 16)
    const words = Array.from({ length: 8 }, (_, r) =>
      Array.from({ length: 8 }, (_, c) => (r + c) & 15).reduce((w, v, k) => (w | (v << (4 * k))) >>> 0, 0),
    );
    const zeros = [15, 0, 1, 2, 3, 4, 5, 6].reduce((w, v, k) => (w | (v << (4 * k))) >>> 0, 0);
    const tensors = {
      "m.qweight": i32([1, 8], words),
      "m.qzeros": i32([1, 1], [zeros]),
      "m.scales": tensor("F16", [1, 8], [1, 1, 1, 1, 1, 1, 1, 1]),
      "m.g_idx": i32([8], [0, 0, 0, 0, 0, 0, 0, 0]),
    };
    for (const [format, offset] of [
      ["gptq", 1],
      ["gptq_v2", 0],
    ] as const) {
      using ckpt = open({ ...GPTQ, checkpoint_format: format }, tensors);
      const lin = readQuantizedLinear(ckpt, ckpt.quantization, "m");
      if (lin.kind !== "int4") throw new Error(lin.kind);
      assert.deepEqual([...lin.q.subarray(8, 16)], [1, 2, 3, 4, 5, 6, 7, 8], "row 1");
      assert.deepEqual(
        [...lin.zeros],
        [15, 0, 1, 2, 3, 4, 5, 6].map((z) => z + offset),
        format,
      );
      assert.equal(lin.gIdx, null, "the trivial g_idx is dropped");
    }
  });

  test("GPTQ desc_act: a g_idx that is not c // G is kept; one out of range is refused", () => {
    const base = {
      "m.qweight": i32([2, 8], new Array(16).fill(0)),
      "m.qzeros": i32([2, 1], [0, 0]),
      "m.scales": tensor("F16", [2, 8], new Array(16).fill(1)),
    };
    const perm = [1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1];
    {
      using ckpt = open({ ...GPTQ, desc_act: true }, { ...base, "m.g_idx": i32([16], perm) });
      const lin = readQuantizedLinear(ckpt, ckpt.quantization, "m");
      if (lin.kind !== "int4") throw new Error(lin.kind);
      assert.deepEqual([...(lin.gIdx ?? [])], perm);
    }
    using bad = open({ ...GPTQ, desc_act: true }, { ...base, "m.g_idx": i32([16], [2, ...perm.slice(1)]) });
    assert.throws(
      () => readQuantizedLinear(bad, bad.quantization, "m"),
      (e: unknown) =>
        e instanceof QuantizedTensorError && /g_idx\[0\] = 2 is outside \[0, 2\)/.test(e.message),
    );
  });

  test("a missing or misshapen part is a QuantizedTensorError naming the module and the part", () => {
    using ckpt = open(AWQ, {
      "m.qweight": i32([2, 1], [0, 0]),
      "m.scales": tensor("F16", [1, 8], new Array(8).fill(1)),
    });
    assert.throws(
      () => readQuantizedLinear(ckpt, ckpt.quantization, "m"),
      (e: unknown) => e instanceof QuantizedTensorError && /linear m in .* has no "m.qzeros"/.test(e.message),
    );
    using wrong = open(AWQ, {
      "m.qweight": i32([2, 1], [0, 0]),
      "m.qzeros": i32([1, 1], [0]),
      "m.scales": tensor("F16", [2, 8], new Array(16).fill(1)),
    });
    assert.throws(
      () => readQuantizedLinear(wrong, wrong.quantization, "m"),
      (e: unknown) =>
        e instanceof QuantizedTensorError && /"scales" has shape \[2,8\], expected \[1,8\]/.test(e.message),
    );
  });

  test("FP8: per-channel [out, 1] scales; static activations need input_scale", () => {
    const fp8 = (inputs: object) => ({
      quant_method: "compressed-tensors",
      format: "float-quantized",
      config_groups: {
        g: { weights: { num_bits: 8, type: "float", strategy: "channel" }, input_activations: inputs },
      },
    });
    const tensors = {
      "m.weight": {
        dtype: "F8_E4M3",
        shape: [2, 2],
        data: new Uint8Array([0x38, 0x40, 0xb8, 0]),
      } as TensorToWrite,
      "m.weight_scale": tensor("BF16", [2, 1], [0.5, 2]),
    };
    {
      using ckpt = open(fp8({ num_bits: 8, type: "float", dynamic: true, strategy: "token" }), tensors);
      const lin = readQuantizedLinear(ckpt, ckpt.quantization, "m");
      if (lin.kind !== "fp8") throw new Error(lin.kind);
      assert.deepEqual([...lin.scales], [0.5, 2]);
      assert.equal(lin.inputScale, null);
    }
    using noInput = open(fp8({ num_bits: 8, type: "float", dynamic: false, strategy: "tensor" }), tensors);
    assert.throws(
      () => readQuantizedLinear(noInput, noInput.quantization, "m"),
      (e: unknown) =>
        e instanceof QuantizedTensorError && /static but there is no "input_scale"/.test(e.message),
    );
    for (const [value, dtype] of [
      [0, "F32"],
      [Number.NaN, "F32"],
      [Number.POSITIVE_INFINITY, "F32"],
    ] as const) {
      using bad = open(fp8({ num_bits: 8, type: "float", dynamic: false, strategy: "tensor" }), {
        ...tensors,
        "m.input_scale": tensor(dtype, [1], [value]),
      });
      assert.throws(
        () => readQuantizedLinear(bad, bad.quantization, "m"),
        (e: unknown) =>
          e instanceof QuantizedTensorError && /"input_scale" is .*finite and > 0/.test(e.message),
        `input_scale ${value}`,
      );
    }
    using negative = open(fp8({ num_bits: 8, type: "float", dynamic: true, strategy: "token" }), {
      ...tensors,
      "m.weight_scale": tensor("F32", [2, 1], [0.5, -1]),
    });
    assert.throws(
      () => readQuantizedLinear(negative, negative.quantization, "m"),
      (e: unknown) =>
        e instanceof QuantizedTensorError && /"weight_scale" holds -1 \(row 1\)/.test(e.message),
    );
  });
});
