// resolveBuildConfig's quantization checks: --backend cuda accepts the methods whose stored format the
// CUDA backend runs (CUDA_WEIGHT_FORMATS: int8-wo, int4-wo, int4-awq) and refuses the others (fp8 and
// fp8-static, CPU-only until their CUDA path matches the reference) before any build work.
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
import { QuantizedEngineUnsupportedError } from "../../src/engine/errors.ts";
import { WEIGHT_FORMATS } from "../../src/engine/weight_format.ts";

describe("resolveBuildConfig: --quantize with --backend cuda", () => {
  it("accepts int8-wo and int4-wo", () => {
    for (const quantize of ["int8-wo", "int4-wo"] as const)
      assert.equal(resolveBuildConfig({ backend: "cuda", quantize }).quantize, quantize);
  });

  it("runs int4-zp (AWQ / GPTQ checkpoints) on CUDA, and not fp8", () => {
    assert.ok(isCudaWeightFormat("int4-zp"));
    assert.ok(!isCudaWeightFormat("fp8"));
  });

  it("lists only formats kiln knows", () => {
    for (const f of CUDA_WEIGHT_FORMATS) assert.ok(WEIGHT_FORMATS.includes(f), f);
  });

  it("refuses exactly the methods whose stored format CUDA does not run: fp8 and fp8-static", () => {
    assert.deepEqual(
      QUANTIZE_METHODS.filter((f) => !isCudaWeightFormat(storedFormat(f))),
      ["fp8", "fp8-static"],
    );
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
