// AWQ's energy device (the seam the GPU path plugs into): the CPU reference's sessions return what the
// searches computed by themselves, and awqScaledWeights asks its target for every loss (one scale
// session and one clip session per searched group, each disposed; the device disposed once), with the
// same weights and report as the CPU default, and reports each phase's wall time.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../../src/builder/builder.ts";
import { type AwqTarget, awqScaledWeights, CPU_AWQ } from "../../../src/builder/passes/awq/awq.ts";
import { clipErrors } from "../../../src/builder/passes/awq/clip_search.ts";
import { CPU_ENERGIES, type EnergyDevice } from "../../../src/builder/passes/awq/energy_device.ts";
import { groupErrors } from "../../../src/builder/passes/awq/error_energy.ts";
import { scaledQuantLoss } from "../../../src/builder/passes/awq/scale_search.ts";
import { quantize } from "../../../src/builder/passes/quantize_weights.ts";
import { runSteps } from "../../../src/builder/steps.ts";
import { toF32 } from "../../../src/dtype.ts";
import { openEngine } from "../../../src/engine/reader.ts";
import { dequantize } from "../../../src/engine/weight_format.ts";
import type { EngineWeight } from "../../../src/engine/writer.ts";
import type { Network } from "../../../src/models/network.ts";
import { randn, tempCache, writeTinyModel } from "../../helpers/tiny_model.ts";

function random(n: number, seed: number, scale = 1): Float32Array {
  const r = randn(seed);
  return Float32Array.from({ length: n }, () => scale * r());
}

describe("AWQ energy device", () => {
  test("CPU sessions: scaledQuantLoss per candidate; groupErrors of each clip, on a partial group", () => {
    const [rows, cols, n] = [5, 300, 7];
    const w = random(rows * cols, 1, 0.1);
    const x = random(n * cols, 2);
    const cands = [new Float32Array(cols).fill(1), Float32Array.from(random(cols, 3), (v) => Math.exp(v))];
    const scale = CPU_ENERGIES.scaleSession(w, rows, cols, x, n);
    assert.deepEqual(
      scale.losses(cands),
      cands.map((s) => scaledQuantLoss(w, rows, cols, s, x, n)),
    );
    scale.dispose();
    const groups = 3;
    const orgMax = new Float32Array(rows * groups);
    for (let i = 0; i < w.length; i++) {
      const k = Math.floor(i / cols) * groups + Math.floor((i % cols) / 128);
      orgMax[k] = Math.max(orgMax[k], Math.abs(w[i]));
    }
    const shrinks = [1, 0.9, 0.55];
    const got = CPU_ENERGIES.clipSession(x, n, cols).errors(w, rows, orgMax, shrinks);
    assert.deepEqual(got, clipErrors(w, rows, cols, orgMax, shrinks, x, n));
    // shrink 0.55 by hand: clip each group to ±0.55·max|w|, round trip through int4-wo, subtract.
    const clipped = Float32Array.from(w, (v, i) => {
      const m = orgMax[Math.floor(i / cols) * groups + Math.floor((i % cols) / 128)] * 0.55;
      return Math.max(-m, Math.min(m, v));
    });
    const d = dequantize(quantize(clipped, [rows, cols], "int4-wo"), [rows, cols], "int4-wo");
    for (let i = 0; i < d.length; i++) d[i] -= w[i];
    assert.deepEqual(got[2], groupErrors(d, rows, cols, groups, x, n));
    assert.notDeepEqual(got[0], got[2]);
  });

  const out = tempCache();
  const model = writeTinyModel("llama", 7);
  after(() => {
    model.cleanup();
    out.cleanup();
  });

  test("awqScaledWeights asks its target for every loss, one session per group, all disposed", () => {
    const dir = join(out.dir, "fp32");
    buildEngine(model.dir, dir, { dtype: "fp32" });
    const e = openEngine(dir);
    const net: Network = {
      config: e.config.model,
      ops: e.header.plan.ops,
      output: e.header.plan.output,
      weights: {},
    };
    const weights: EngineWeight[] = e.header.weights.map((w) => {
      const bytes = e.readWeight(w);
      return {
        name: w.name,
        dtype: w.dtype,
        shape: w.shape,
        byteLength: bytes.byteLength,
        bytes: () => bytes,
      };
    });
    e.close();
    const ids = Int32Array.from({ length: 40 }, (_, i) => (i * 7) % 61);
    const counts = { scale: 0, clip: 0, losses: 0, errors: 0, open: 0, disposed: 0, deviceDisposed: 0 };
    const recording: EnergyDevice = {
      scaleSession: (...a) => {
        counts.scale++;
        const s = CPU_ENERGIES.scaleSession(...a);
        return {
          losses: (c) => {
            counts.losses++;
            return s.losses(c);
          },
          dispose: () => {
            counts.disposed++;
            s.dispose();
          },
        };
      },
      clipSession: (...a) => {
        counts.clip++;
        const s = CPU_ENERGIES.clipSession(...a);
        return {
          errors: (...b) => {
            counts.errors++;
            return s.errors(...b);
          },
          dispose: () => {
            counts.disposed++;
            s.dispose();
          },
        };
      },
      dispose: () => {
        counts.deviceDisposed++;
      },
    };
    const target: AwqTarget = {
      calibration: CPU_AWQ.calibration,
      openEnergies: () => {
        counts.open++;
        return recording;
      },
    };
    const ref = runSteps(awqScaledWeights(net.config, net, weights, ids, 0));
    const got = runSteps(awqScaledWeights(net.config, net, weights, ids, 0, target));
    const searched = ref.report.groups.filter((g) => g.alpha !== undefined).length;
    assert.ok(searched > 0);
    assert.equal(counts.open, 1);
    assert.equal(counts.deviceDisposed, 1);
    assert.equal(counts.scale, searched, "one scale session (x uploaded once) per folded group");
    assert.equal(counts.losses, searched, "every α of a group in one call");
    assert.equal(counts.clip, ref.report.groups.length, "one clip session per group");
    assert.ok(counts.errors >= ref.report.groups.length);
    assert.equal(counts.disposed, counts.scale + counts.clip);
    const strip = ({ ms: _, ...r }: typeof ref.report) => r;
    assert.deepEqual(strip(got.report), strip(ref.report));
    assert.deepEqual(
      got.weights.map((w) => toF32(w.bytes(), w.dtype)),
      ref.weights.map((w) => toF32(w.bytes(), w.dtype)),
    );
    for (const phase of ["calibration", "scaleSearch", "clipSearch"] as const)
      assert.ok(got.report.ms[phase] >= 0, `${phase} ms`);
  });
});
