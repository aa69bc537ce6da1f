// resolveBuildConfig's quantization checks: --backend cuda accepts the methods whose stored format the
// CUDA backend runs (CUDA_WEIGHT_FORMATS: every --quantize method's, fp8 and fp8-static included) and
// would refuse any other before any build work (none is left; the check stays for methods added later,
// and the CUDA backend's own checks — an fp8 weight's width, the GPU's FP8 tensor cores — remain).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CUDA_WEIGHT_FORMATS,
  DEFAULT_CUDA_MAX_BATCH_SIZE,
  isCudaWeightFormat,
  QUANTIZE_METHODS,
  resolveBuildConfig,
  storedFormat,
} from "../../src/engine/build_config.ts";
import { WEIGHT_FORMATS } from "../../src/engine/weight_format.ts";

describe("resolveBuildConfig: --quantize with --backend cuda", () => {
  it("accepts int8-wo, int4-wo and fp8", () => {
    for (const quantize of ["int8-wo", "int4-wo", "fp8"] as const)
      assert.equal(resolveBuildConfig({ backend: "cuda", quantize }).quantize, quantize);
  });

  it("runs int4-zp (AWQ / GPTQ checkpoints) and fp8 on CUDA, and no format kiln does not list", () => {
    assert.ok(isCudaWeightFormat("int4-zp"));
    assert.ok(isCudaWeightFormat("fp8"));
    assert.ok(!isCudaWeightFormat("nf4"));
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

  it("accepts fp8-static, whose engines hold fp8 weights, with its calibration", () => {
    assert.equal(storedFormat("fp8-static"), "fp8");
    const c = resolveBuildConfig({ backend: "cuda", quantize: "fp8-static" });
    assert.equal(c.quantize, "fp8-static");
    assert.ok(c.calibrationSha256, "the bundled calibration text, hashed");
  });
});

describe("resolveBuildConfig: maxBatchSize defaults", () => {
  it("a CUDA engine takes DEFAULT_CUDA_MAX_BATCH_SIZE running requests; a CPU one 64; a given value wins", () => {
    assert.equal(resolveBuildConfig({ backend: "cuda" }).maxBatchSize, DEFAULT_CUDA_MAX_BATCH_SIZE);
    assert.equal(DEFAULT_CUDA_MAX_BATCH_SIZE, 256);
    assert.equal(resolveBuildConfig({ backend: "cpu" }).maxBatchSize, 64);
    assert.equal(resolveBuildConfig({}).maxBatchSize, 64);
    assert.equal(resolveBuildConfig({ backend: "cuda", maxBatchSize: 8 }).maxBatchSize, 8);
    assert.equal(resolveBuildConfig({ backend: "cuda", maxBatchSize: undefined }).maxBatchSize, 256);
  });
});
