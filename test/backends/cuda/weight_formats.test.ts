// Which weight formats the CUDA backend loads, checked without a GPU (the check runs before the device
// is opened): plain, int8-wo / int4-wo, int4-zp (AWQ, GPTQ) and fp8 engines pass; a format outside
// CUDA_WEIGHT_FORMATS (one the CPU backend may read, e.g. a format added later) is refused with a named
// error, and so is an fp8 weight whose input features are not a multiple of 16. fp8 needs compute
// capability 8.9 (checked once the device is open: assertFp8Capable, given the device's properties).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  assertCudaWeightFormats,
  assertFp8Capable,
  hasFp8Weights,
} from "../../../src/backends/cuda/weight_formats.ts";
import { QuantizedEngineUnsupportedError } from "../../../src/engine/errors.ts";
import type { WeightEntry } from "../../../src/engine/format.ts";
import type { WeightFormat } from "../../../src/engine/weight_format.ts";

const plain: WeightEntry = {
  name: "a.weight",
  dtype: "BF16",
  shape: [4, 128],
  offset: 256,
  byteLength: 1024,
};

describe("assertCudaWeightFormats", () => {
  it("passes an engine of plain weights", () => {
    assert.doesNotThrow(() => assertCudaWeightFormats("/e", { weights: [plain] }));
  });

  for (const format of ["int8-wo", "int4-wo", "int4-zp", "fp8"] as const) {
    it(`passes a ${format} engine`, () => {
      const params = format === "int4-zp" ? { groupSize: 32, actOrder: true } : undefined;
      const q: WeightEntry = {
        ...plain,
        name: "b.weight",
        format,
        byteLength: 528,
        ...(params ? { params } : {}),
      };
      assert.doesNotThrow(() => assertCudaWeightFormats("/e", { weights: [plain, q] }));
    });
  }

  it("refuses a format it has no kernels for, naming it, the weight and what CUDA runs", () => {
    const q: WeightEntry = { ...plain, name: "c.weight", format: "nf4" as WeightFormat, byteLength: 528 };
    assert.throws(
      () => assertCudaWeightFormats("/e", { weights: [plain, q] }),
      (err: unknown) =>
        err instanceof QuantizedEngineUnsupportedError &&
        err.message.startsWith("nf4 engines run on the CPU backend only so far") &&
        err.message.includes("c.weight") &&
        err.message.includes("int8-wo, int4-wo, int4-zp, fp8"),
    );
  });

  it("refuses an fp8 weight of input features not a multiple of 16, naming it", () => {
    const ok: WeightEntry = { ...plain, name: "d.weight", shape: [4, 48], format: "fp8", byteLength: 208 };
    assert.doesNotThrow(() => assertCudaWeightFormats("/e", { weights: [ok] }));
    const odd: WeightEntry = { ...ok, name: "e.weight", shape: [4, 40], byteLength: 176 };
    assert.throws(
      () => assertCudaWeightFormats("/e", { weights: [ok, odd] }),
      (err: unknown) =>
        err instanceof QuantizedEngineUnsupportedError &&
        err.message.includes("e.weight") &&
        err.message.includes("40 input features") &&
        err.message.includes("multiple of 16"),
    );
  });
});

describe("assertFp8Capable", () => {
  it("passes sm_89, sm_90 and sm_100; refuses sm_80 and sm_86, naming the GPU and the need", () => {
    for (const cc of [
      [8, 9],
      [9, 0],
      [10, 0],
    ] as const)
      assert.doesNotThrow(() =>
        assertFp8Capable("fp8 engine /e", { sm: `sm_${cc[0]}${cc[1]}`, computeCapability: cc }),
      );
    for (const cc of [
      [8, 0],
      [8, 6],
      [7, 5],
    ] as const)
      assert.throws(
        () => assertFp8Capable("fp8 engine /e", { sm: `sm_${cc[0]}${cc[1]}`, computeCapability: cc }),
        (err: unknown) =>
          err instanceof QuantizedEngineUnsupportedError &&
          err.message.startsWith("fp8 engine /e needs a GPU of compute capability 8.9") &&
          err.message.includes(`this GPU is sm_${cc[0]}${cc[1]}`),
      );
  });

  it("hasFp8Weights: only engines holding an fp8 weight", () => {
    assert.equal(hasFp8Weights([plain, { ...plain, format: "int8-wo" }]), false);
    assert.equal(hasFp8Weights([plain, { ...plain, format: "fp8" }]), true);
  });
});
