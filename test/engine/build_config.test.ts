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
  storedFormat,
} from "../../src/engine/build_config.ts";
import { QuantizedEngineUnsupportedError } from "../../src/engine/errors.ts";
import { WEIGHT_FORMATS } from "../../src/engine/weight_format.ts";

describe("resolveBuildConfig: --quantize with --backend cuda", () => {
  it("accepts int8-wo, int4-wo and fp8", () => {
    for (const quantize of ["int8-wo", "int4-wo", "fp8"] as const)
      assert.equal(resolveBuildConfig({ backend: "cuda", quantize }).quantize, quantize);
  });

  it("runs int4-zp (AWQ / GPTQ checkpoints) on CUDA", () => {
    assert.ok(isCudaWeightFormat("int4-zp"));
  });

  it("lists only formats kiln knows", () => {
    for (const f of CUDA_WEIGHT_FORMATS) assert.ok(WEIGHT_FORMATS.includes(f), f);
  });

  it("has CUDA kernels for every --quantize method's stored format", () => {
    for (const f of QUANTIZE_METHODS) assert.ok(isCudaWeightFormat(storedFormat(f)), f);
  });

  it("accepts int4-awq, whose engines hold int4-wo weights", () => {
    assert.equal(storedFormat("int4-awq"), "int4-wo");
    assert.equal(resolveBuildConfig({ backend: "cuda", quantize: "int4-awq" }).quantize, "int4-awq");
  });

  for (const quantize of QUANTIZE_METHODS.filter((f) => !isCudaWeightFormat(storedFormat(f)))) {
    it(`refuses ${quantize}, naming the formats CUDA runs`, () => {
      assert.throws(
        () => resolveBuildConfig({ backend: "cuda", quantize }),
        (e: unknown) =>
          e instanceof QuantizedEngineUnsupportedError &&
          e.message.includes("build with --quantize int8-wo or --quantize int4-wo for CUDA") &&
          !e.message.includes("int4-zp"), // a CUDA format, but no --quantize method: not suggested
      );
      assert.equal(resolveBuildConfig({ backend: "cpu", quantize }).quantize, quantize);
    });
  }
});
