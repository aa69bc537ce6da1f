// resolveBuildConfig's quantization checks: --backend cuda accepts the formats the CUDA backend has
// kernels for (CUDA_WEIGHT_FORMATS: every --quantize method now, fp8 included) and would refuse any
// other method before any build work (none is left to refuse; the check stays for methods added later).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CUDA_WEIGHT_FORMATS,
  isCudaWeightFormat,
  QUANTIZE_METHODS,
  resolveBuildConfig,
} from "../../src/engine/build_config.ts";
import { QuantizedEngineUnsupportedError } from "../../src/engine/errors.ts";
import { WEIGHT_FORMATS } from "../../src/engine/weight_format.ts";

describe("resolveBuildConfig: --quantize with --backend cuda", () => {
  it("accepts int8-wo, int4-wo and fp8", () => {
    for (const quantize of ["int8-wo", "int4-wo", "fp8"] as const)
      assert.equal(resolveBuildConfig({ backend: "cuda", quantize }).quantize, quantize);
  });

  it("lists only formats kiln knows", () => {
    for (const f of CUDA_WEIGHT_FORMATS) assert.ok(WEIGHT_FORMATS.includes(f), f);
  });

  it("has CUDA kernels for every --quantize method", () => {
    for (const f of QUANTIZE_METHODS) assert.ok(isCudaWeightFormat(f), f);
  });

  for (const quantize of QUANTIZE_METHODS.filter((f) => !isCudaWeightFormat(f))) {
    it(`refuses ${quantize}, naming the formats CUDA runs`, () => {
      assert.throws(
        () => resolveBuildConfig({ backend: "cuda", quantize }),
        (e: unknown) => e instanceof QuantizedEngineUnsupportedError && e.message.includes("int8-wo"),
      );
      assert.equal(resolveBuildConfig({ backend: "cpu", quantize }).quantize, quantize);
    });
  }
});
