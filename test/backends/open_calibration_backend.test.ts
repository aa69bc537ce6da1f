// openCalibrationBackend maps a calibration target to its backend: the CPU by default (observing every
// linear's fp32 input), and a CUDA target to the CUDA backend, which opens GPU 0 first: without a GPU
// that is CudaUnavailableError (named), with one the missing kernel modules are (an EngineError naming
// the first), never a silent CPU run.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CudaUnavailableError } from "../../src/backends/cuda/device/index.ts";
import { openCalibrationBackend } from "../../src/backends/open_backend.ts";
import { readHfConfig } from "../../src/checkpoint/hf_config.ts";
import { EngineError } from "../../src/engine/errors.ts";
import { defineModel } from "../../src/models/registry.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";

test("openCalibrationBackend: the CPU by default, the CUDA backend for a CUDA target", () => {
  const tiny = writeTinyModel("llama");
  try {
    const model = readHfConfig(tiny.dir);
    const net = defineModel(model, "tiny");
    const weights = new Map(
      Object.entries(net.weights).map(([name, spec]) => [
        name,
        new Float32Array(spec.shape.reduce((a, b) => a * b, 1)).fill(0.01),
      ]),
    );
    const seen: number[] = [];
    const cpu = openCalibrationBackend(model, net, new Map(weights), 16, (op, x, rows) => {
      assert.equal(x.length, rows * op.inFeatures);
      seen.push(rows);
    });
    cpu.allocateKvCache(1);
    cpu.forward({
      tokenIds: Int32Array.of(1, 2, 3),
      positions: Int32Array.of(0, 1, 2),
      slotMapping: Int32Array.of(0, 1, 2),
      seqs: [{ queryStart: 0, queryLen: 3, contextLen: 3, blockTable: Int32Array.of(0) }],
      logitRows: Int32Array.of(2),
    });
    cpu.dispose();
    assert.equal(seen.length, net.ops.filter((o) => o.kind === "linear").length);
    const target = { backend: "cuda" as const, cubins: new Map<string, Uint8Array>(), maxTokens: 16 };
    assert.throws(
      () => openCalibrationBackend(model, net, new Map(weights), 16, () => {}, target),
      (e: unknown) =>
        e instanceof CudaUnavailableError ||
        (e instanceof EngineError && /lacks the compiled kernel module/.test(e.message)),
    );
  } finally {
    tiny.cleanup();
  }
});
