// --quantize int4-awq on --backend cuda (builder/targets/cuda_awq.ts) against the CPU path, the reference.
//   Energies (kernels/awq_search.cu through AwqEnergies): the same doubles as the TypeScript reference
//     (energy_device.ts CPU_ENERGIES), tolerance 0: the kernel quantizes with the reference's roundings
//     and sums in its order (ascending columns, samples in pairs for the 4-row tiles), so no choice of
//     α or shrink can differ given the same inputs. Odd shapes (a partial group, a 4-row tail, two
//     passes over 130 samples) and an 8B-like clip (4,096 columns).
//   Calibration (cudaCalibrationBackend, fp32, cuBLASLt exact-fp32 GEMMs): every group's input
//     observed with the same rows; mean|x| and the sampled rows within 1e-4 of the CPU's, relative to
//     the group's largest |x| (fp32 summation orders differ through 6 layers: ~√k·2⁻²⁴ per op).
//   Builds of the bundled model, 512 calibration tokens: the inputs differ by that calibration noise,
//     so every loss does too (~1e-6 relative); a choice flips only between near-equal candidates:
//     α equal per group unless the two builds' best losses are within 1e-3 relative; clipped counts
//     within 1% (+2) of the CPU's per group; and on the held-out fixture, both engines' weights run on
//     the CPU backend (only the build differs): mean KL(cpu-built ‖ cuda-built) at most a tenth of
//     mean KL(fp32 ‖ cpu-built), i.e. the two builds differ by far less than quantization costs.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openCalibrationBackend } from "../../src/backends/open_backend.ts";
import { buildEngine } from "../../src/builder/builder.ts";
import { calibrationWindow } from "../../src/builder/calibration_run.ts";
import { collectInputStats } from "../../src/builder/passes/awq/activation_stats.ts";
import { CPU_ENERGIES } from "../../src/builder/passes/awq/energy_device.ts";
import { awqGroups } from "../../src/builder/passes/awq/fold_rules.ts";
import { awqScales } from "../../src/builder/passes/awq/scale_search.ts";
import { runSteps } from "../../src/builder/steps.ts";
import { cudaAwqTarget } from "../../src/builder/targets/cuda_awq.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { toF32 } from "../../src/dtype.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { dequantize } from "../../src/engine/weight_format.ts";
import type { Network } from "../../src/models/network.ts";
import { Tokenizer } from "../../src/tokenizer/index.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { randn, tempCache } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();
const HELD_OUT = readFileSync(new URL("../fixtures/quantization/held_out.txt", import.meta.url), "utf8");
const TOKENS = 512;

function random(n: number, seed: number, scale = 1): Float32Array {
  const r = randn(seed);
  return Float32Array.from({ length: n }, () => scale * r());
}

/** An engine's plan and its weights as fp32 (quantized ones dequantized, as the CPU backend reads them). */
function loadEngine(dir: string): { net: Network; weights: Map<string, Float32Array> } {
  const e = openEngine(dir);
  try {
    const weights = new Map(
      e.header.weights.map((w) => [
        w.name,
        w.format ? dequantize(e.readWeight(w), w.shape, w.format, w.params) : toF32(e.readWeight(w), w.dtype),
      ]),
    );
    const { ops, output } = e.header.plan;
    return { net: { config: e.config.model, ops, output, weights: {} }, weights };
  } finally {
    e.close();
  }
}

/** log-softmax of every position's logits of one CPU prefill of `ids`, [ids.length][V], in fp64. */
function logProbs(l: ReturnType<typeof loadEngine>, ids: Int32Array): Float64Array[] {
  const b = openCalibrationBackend(l.net.config, l.net, new Map(l.weights), 16, () => {});
  try {
    const T = ids.length;
    b.allocateKvCache(Math.ceil(T / 16));
    const iota = Int32Array.from({ length: T }, (_, i) => i);
    const blocks = Int32Array.from({ length: Math.ceil(T / 16) }, (_, i) => i);
    const logits = b.forward({
      tokenIds: ids,
      positions: iota,
      slotMapping: iota,
      seqs: [{ queryStart: 0, queryLen: T, contextLen: T, blockTable: blocks }],
      logitRows: iota,
    });
    const V = logits.length / T;
    return Array.from({ length: T }, (_, t) => {
      const row = logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let z = 0;
      for (const v of row) z += Math.exp(v - max);
      const log = Math.log(z) + max;
      return Float64Array.from(row, (v) => v - log);
    });
  } finally {
    b.dispose();
  }
}

/** Mean over positions of KL(p ‖ q). */
function meanKl(p: Float64Array[], q: Float64Array[]): number {
  let sum = 0;
  p.forEach((pt, t) => {
    for (let i = 0; i < pt.length; i++) sum += Math.exp(pt[i]) * (pt[i] - q[t][i]);
  });
  return sum / p.length;
}

describe("--quantize int4-awq on --backend cuda vs the CPU path", { skip }, () => {
  const out = tempCache();
  let fp32: ReturnType<typeof loadEngine>;
  before(() => {
    buildEngine(BUNDLED_MODEL_DIR, join(out.dir, "fp32"), { dtype: "fp32" });
    fp32 = loadEngine(join(out.dir, "fp32"));
  });
  after(() => out.cleanup());

  // Compiled once (NVRTC: the fp32 modules and awq_search.cu), for the first two tests.
  let compiled: ReturnType<typeof cudaAwqTarget> | undefined;
  const target = () => {
    compiled ??= cudaAwqTarget(fp32.net.config, fp32.net, calibrationWindow(fp32.net.config, 0));
    return compiled;
  };

  test("awq_search.cu: the reference's energies, the same doubles", () => {
    const energies = target().openEnergies();
    try {
      for (const [rows, cols, n] of [
        [37, 300, 130],
        [9, 4096, 128],
      ]) {
        const w = random(rows * cols, rows, 0.05);
        w[3] = 0.9; // an outlier: clipping pays in its group
        const x = random(n * cols, cols);
        const meanAbs = Float32Array.from(random(cols, 5), (v) => Math.abs(v) + 0.01);
        const cands = Array.from({ length: 20 }, (_, i) => awqScales(meanAbs, i / 20));
        const gpu = energies.scaleSession(w, rows, cols, x, n);
        const cpu = CPU_ENERGIES.scaleSession(w, rows, cols, x, n);
        assert.deepEqual(gpu.losses(cands), cpu.losses(cands), `scale ${rows}×${cols}, n ${n}`);
        gpu.dispose();
        const groups = Math.ceil(cols / 128);
        const orgMax = new Float32Array(rows * groups);
        for (let i = 0; i < w.length; i++) {
          const k = Math.floor(i / cols) * groups + Math.floor((i % cols) / 128);
          orgMax[k] = Math.max(orgMax[k], Math.abs(w[i]));
        }
        const shrinks = Array.from({ length: 10 }, (_, i) => 1 - i / 20);
        const clip = energies.clipSession(x, n, cols);
        assert.deepEqual(
          clip.errors(w, rows, orgMax, shrinks),
          CPU_ENERGIES.clipSession(x, n, cols).errors(w, rows, orgMax, shrinks),
          `clip ${rows}×${cols}, n ${n}`,
        );
        clip.dispose();
      }
    } finally {
      energies.dispose();
    }
  });

  test("calibration on the GPU: every group's input, within 1e-4 of the CPU's", () => {
    const groups = awqGroups(fp32.net);
    const ids = Tokenizer.fromDir(BUNDLED_MODEL_DIR)
      .encode(readFileSync(join(BUNDLED_MODEL_DIR, "calibration.txt"), "utf8"))
      .ids.slice(0, 700); // two windows, the second partial
    const run = (t?: ReturnType<typeof target>["calibration"]) =>
      runSteps(
        collectInputStats(
          fp32.net.config,
          fp32.net,
          fp32.weights,
          groups,
          Int32Array.from(ids),
          calibrationWindow(fp32.net.config, 0),
          128,
          t,
        ),
      );
    const cpu = run();
    const gpu = run(target().calibration);
    for (const g of groups) {
      const a = cpu.get(g.input)!;
      const b = gpu.get(g.input)!;
      assert.equal(b.rows, a.rows, g.input);
      let scale = 0;
      for (const v of a.samples) scale = Math.max(scale, Math.abs(v));
      let worst = 0;
      for (let i = 0; i < a.samples.length; i++)
        worst = Math.max(worst, Math.abs(a.samples[i] - b.samples[i]));
      for (let c = 0; c < a.meanAbs.length; c++)
        worst = Math.max(worst, Math.abs(a.meanAbs[c] - b.meanAbs[c]));
      assert.ok(worst <= 1e-4 * scale, `${g.input}: worst ${worst} vs max|x| ${scale}`);
    }
  });

  test("builds of the bundled model: the same choices but near-ties, held-out logits close", () => {
    const build = (backend: "cpu" | "cuda") =>
      buildEngine(BUNDLED_MODEL_DIR, join(out.dir, `awq-${backend}`), {
        backend,
        dtype: "fp32",
        quantize: "int4-awq",
        calibrationTokens: TOKENS,
      });
    const cpu = build("cpu").awq!;
    const cuda = build("cuda").awq!;
    console.log(
      `phases ms: cpu ${JSON.stringify(cpu.ms)}, cuda ${JSON.stringify(cuda.ms)}; ` +
        `α cpu ${cpu.groups.map((g) => g.alpha ?? "-").join(",")}, cuda ${cuda.groups.map((g) => g.alpha ?? "-").join(",")}`,
    );
    assert.equal(cuda.tokens, cpu.tokens);
    assert.ok((cuda.ms.kernels ?? 0) > 0 && cpu.ms.kernels === undefined, "the CUDA path's compile time");
    assert.deepEqual(
      cuda.groups.map((g) => [g.input, g.skip]),
      cpu.groups.map((g) => [g.input, g.skip]),
    );
    cpu.groups.forEach((a, i) => {
      const b = cuda.groups[i];
      if (a.alpha !== b.alpha)
        assert.ok(
          Math.abs((a.loss ?? 0) - (b.loss ?? 0)) <= 1e-3 * (a.loss ?? 0),
          `${a.input}: α ${a.alpha} vs ${b.alpha} with losses ${a.loss} vs ${b.loss}`,
        );
      const ca = a.clipped ?? 0;
      assert.ok(
        Math.abs(ca - (b.clipped ?? 0)) <= 0.01 * ca + 2,
        `${a.input}: clipped ${ca} vs ${b.clipped}`,
      );
    });
    const ids = Int32Array.from(Tokenizer.fromDir(BUNDLED_MODEL_DIR).encode(HELD_OUT).ids);
    const ref = logProbs(fp32, ids);
    const pc = logProbs(loadEngine(join(out.dir, "awq-cpu")), ids);
    const pg = logProbs(loadEngine(join(out.dir, "awq-cuda")), ids);
    const [quantCost, buildGap] = [meanKl(ref, pc), meanKl(pc, pg)];
    console.log(
      `mean KL fp32‖cpu-built ${quantCost.toFixed(6)}, cpu-built‖cuda-built ${buildGap.toFixed(6)}`,
    );
    assert.ok(buildGap <= 0.1 * quantCost, `KL between builds ${buildGap} vs quantization's ${quantCost}`);
  });
});
