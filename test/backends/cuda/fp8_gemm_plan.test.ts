// Which FP8 GEMM plan a linear over an fp8 weight gets (fp8_gemm_plan.ts), on the CPU with a stand-in
// for cuBLASLt's plan creation: outer-vector scales with the bias epilogue first; where cuBLASLt refuses
// that, the same plan without the bias (then bias_add); then unit scales + fp8_scale_rows. A bias-free
// linear never asks for a bias epilogue. Only cuBLASLt's refusals (CublasError) move on to the next plan.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CublasError } from "../../../src/backends/cuda/ffi/errors.ts";
import {
  chooseFp8Plan,
  type Fp8PlanAttempt,
  fp8PlanAttempts,
} from "../../../src/backends/cuda/fp8_gemm_plan.ts";

const refusal = () =>
  new CublasError("cublasLtMatmulAlgoGetHeuristic", 7, "CUBLAS_STATUS_INVALID_VALUE", "no algorithm");

/** A stand-in for Gemm.create that refuses the attempts `refuses` matches; records what was asked. */
function creator(refuses: (a: Fp8PlanAttempt) => boolean) {
  const asked: Fp8PlanAttempt[] = [];
  const create = (a: Fp8PlanAttempt) => {
    asked.push(a);
    if (refuses(a)) throw refusal();
    return `gemm ${asked.length}`;
  };
  return { asked, create };
}

describe("chooseFp8Plan", () => {
  test("a biased linear takes outer-vector scales with the bias epilogue when cuBLASLt offers it", () => {
    const { asked, create } = creator(() => false);
    const got = chooseFp8Plan(true, create);
    assert.equal(got.kind, "outer-vector");
    assert.deepEqual(asked, [{ kind: "outer-vector", biasEpilogue: true, unitScales: false }]);
    assert.deepEqual(got.refused, []);
  });

  test("refused with the bias epilogue: outer-vector scales without it (bias_add after), the refusal kept", () => {
    const { asked, create } = creator((a) => a.biasEpilogue);
    const got = chooseFp8Plan(true, create);
    assert.equal(got.kind, "outer-vector + bias_add");
    assert.equal(got.gemm, "gemm 2");
    assert.deepEqual(asked[1], { kind: "outer-vector + bias_add", biasEpilogue: false, unitScales: false });
    assert.equal(got.refused.length, 1);
    assert.match(got.refused[0], /^outer-vector: .*CUBLAS_STATUS_INVALID_VALUE/);
  });

  test("no outer-vector plan at all: unit scales + fp8_scale_rows, both refusals kept", () => {
    const { asked, create } = creator((a) => !a.unitScales);
    const got = chooseFp8Plan(true, create);
    assert.equal(got.kind, "unit scales + fp8_scale_rows");
    assert.deepEqual(asked.at(-1), {
      kind: "unit scales + fp8_scale_rows",
      biasEpilogue: false,
      unitScales: true,
    });
    assert.equal(got.refused.length, 2);
  });

  test("a bias-free linear never asks for the bias epilogue", () => {
    assert.ok(fp8PlanAttempts(false).every((a) => !a.biasEpilogue));
    const { asked, create } = creator((a) => !a.unitScales);
    assert.equal(chooseFp8Plan(false, create).kind, "unit scales + fp8_scale_rows");
    assert.deepEqual(
      asked.map((a) => a.kind),
      ["outer-vector", "unit scales + fp8_scale_rows"],
    );
  });

  test("the last plan's refusal, and any error not cuBLASLt's, propagate", () => {
    assert.throws(() => chooseFp8Plan(true, creator(() => true).create), CublasError);
    const { create } = creator(() => false);
    let calls = 0;
    assert.throws(
      () =>
        chooseFp8Plan(true, (a) => {
          calls++;
          if (a.biasEpilogue) throw new RangeError("out of memory");
          return create(a);
        }),
      RangeError,
    );
    assert.equal(calls, 1, "no other plan tried after a non-cuBLASLt error");
  });
});
