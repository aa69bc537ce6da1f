// Which weight formats the CUDA backend loads, checked without a GPU (the check runs before the device
// is opened): plain, int8-wo / int4-wo and int4-zp (AWQ, GPTQ) engines pass; a format outside CUDA_WEIGHT_FORMATS (one the
// CPU backend may read, e.g. a format added later) is refused with a named error.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertCudaWeightFormats } from "../../../src/backends/cuda/weight_formats.ts";
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

  for (const format of ["int8-wo", "int4-wo", "int4-zp"] as const) {
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
    const q: WeightEntry = { ...plain, name: "c.weight", format: "fp8" as WeightFormat, byteLength: 528 };
    assert.throws(
      () => assertCudaWeightFormats("/e", { weights: [plain, q] }),
      (err: unknown) =>
        err instanceof QuantizedEngineUnsupportedError &&
        err.message.startsWith("fp8 engines run on the CPU backend only so far") &&
        err.message.includes("c.weight") &&
        err.message.includes("int8-wo, int4-wo, int4-zp"),
    );
  });
});
