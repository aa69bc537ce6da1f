// AWQ's weight clipping: the per-group error it ranks clips by, that it clips where an outlier weight
// costs the other weights their resolution (and lowers the int4 output error by doing so), that it
// leaves query/key rows alone, and which rows those are.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { optimize } from "../../../src/builder/optimize.ts";
import { clipWeights } from "../../../src/builder/passes/awq/clip_search.ts";
import { errorEnergy, groupErrors } from "../../../src/builder/passes/awq/error_energy.ts";
import { queryKeyRows } from "../../../src/builder/passes/awq/fold_rules.ts";
import { quantize } from "../../../src/builder/passes/quantize_weights.ts";
import { BUNDLED_MODEL_DIR } from "../../../src/bundled_model.ts";
import { readHfConfig } from "../../../src/checkpoint/hf_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import { dequantize } from "../../../src/engine/weight_format.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { randn } from "../../helpers/tiny_model.ts";

function random(n: number, seed: number, scale = 1): Float32Array {
  const r = randn(seed);
  return Float32Array.from({ length: n }, () => scale * r());
}

/** ‖(Q(w) − w0)·Xᵀ‖²: the int4 output error of weights w against the original w0. */
function int4Error(
  w: Float32Array,
  w0: Float32Array,
  rows: number,
  cols: number,
  x: Float32Array,
  n: number,
) {
  const d = dequantize(quantize(w, [rows, cols], "int4-wo"), [rows, cols], "int4-wo");
  for (let i = 0; i < d.length; i++) d[i] -= w0[i];
  return errorEnergy(d, rows, cols, x, n);
}

describe("AWQ weight clipping", () => {
  test("groupErrors: Σ_t (Σ_{c in group} d·x)² per row and group, on odd sizes with a partial group", () => {
    const [rows, cols, n] = [7, 300, 5]; // groups of 128, 128, 44
    const d = random(rows * cols, 1);
    const x = random(n * cols, 2);
    const got = groupErrors(d, rows, cols, 3, x, n);
    for (let r = 0; r < rows; r++)
      for (let g = 0; g < 3; g++) {
        let want = 0;
        for (let t = 0; t < n; t++) {
          let a = 0;
          for (let c = g * 128; c < Math.min(cols, (g + 1) * 128); c++)
            a += d[r * cols + c] * x[t * cols + c];
          want += a * a;
        }
        assert.ok(Math.abs(got[r * 3 + g] - want) <= 1e-9 * want, `row ${r} group ${g}`);
      }
  });

  test("an outlier weight on a quiet input channel is clipped, lowering the int4 output error", () => {
    const [rows, cols, n] = [8, 256, 32];
    const w0 = random(rows * cols, 3, 0.1);
    for (let r = 0; r < rows; r++) w0[r * cols + 10] = 1.5; // outlier: the group's step becomes 1.5/7
    const x = random(n * cols, 4);
    for (let t = 0; t < n; t++) x[t * cols + 10] *= 0.01; // ... on an input that barely matters
    const w = w0.slice();
    const clipped = clipWeights(w, rows, cols, x, n, (r) => r === 0);
    assert.ok(clipped >= rows - 1, `${clipped} groups clipped`);
    for (let r = 1; r < rows; r++)
      assert.ok(w[r * cols + 10] < 1.5, `row ${r}: the outlier's group is clipped`);
    for (let c = 0; c < cols; c++) assert.equal(w[c], w0[c], "row 0 is left alone");
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i]) <= Math.abs(w0[i]));
    assert.ok(w[cols + 10] < 1.5 && w[cols + 10] >= 0.75, `clipped to ${w[cols + 10]} (at most half off)`);
    const before = int4Error(w0, w0, rows, cols, x, n);
    const after = int4Error(w, w0, rows, cols, x, n);
    assert.ok(after < 0.8 * before, `int4 output error ${after} vs unclipped ${before}`);
  });

  test("no outliers and uniform inputs: at most a few groups clipped, never a worse error", () => {
    const [rows, cols, n] = [16, 128, 32];
    const w0 = random(rows * cols, 5);
    const x = random(n * cols, 6);
    const w = w0.slice();
    clipWeights(w, rows, cols, x, n, () => false);
    assert.ok(int4Error(w, w0, rows, cols, x, n) <= int4Error(w0, w0, rows, cols, x, n));
  });

  test("queryKeyRows: the q and k rows of a fused QKV, or of q_proj and k_proj", () => {
    const config = readHfConfig(BUNDLED_MODEL_DIR);
    const path = join(BUNDLED_MODEL_DIR, "config.json");
    const fused = queryKeyRows(optimize(defineModel(config, path), resolveBuildConfig({})));
    assert.deepEqual(fused.get("model.layers.0.self_attn.qkv_proj.weight"), [
      [0, 256],
      [256, 384],
    ]);
    assert.equal(fused.size, 6);
    const unfused = queryKeyRows(optimize(defineModel(config, path), resolveBuildConfig({ fuse: false })));
    assert.deepEqual(unfused.get("model.layers.5.self_attn.q_proj.weight"), [[0, 256]]);
    assert.deepEqual(unfused.get("model.layers.5.self_attn.k_proj.weight"), [[0, 128]]);
    assert.equal(unfused.get("model.layers.5.self_attn.v_proj.weight"), undefined);
  });
});
