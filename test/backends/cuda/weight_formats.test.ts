// The CUDA backend's refusal of quantized engines, checked without a GPU (it runs before the device
// is opened).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertCudaWeightFormats } from "../../../src/backends/cuda/weight_formats.ts";
import { QuantizedEngineUnsupportedError } from "../../../src/engine/errors.ts";
import type { WeightEntry } from "../../../src/engine/format.ts";

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

  for (const format of ["int8-wo", "int4-wo"] as const) {
    it(`refuses a ${format} engine with a named error saying how to run it`, () => {
      const q: WeightEntry = { ...plain, name: "b.weight", format, byteLength: 528 };
      assert.throws(
        () => assertCudaWeightFormats("/e", { weights: [plain, q] }),
        (err: unknown) =>
          err instanceof QuantizedEngineUnsupportedError &&
          err.message.startsWith(
            `${format} engines run on the CPU backend only so far; build without --quantize for CUDA`,
          ) &&
          err.message.includes("b.weight"),
      );
    });
  }
});
