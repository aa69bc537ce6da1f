// AWQ's scale search: AutoAWQ's scale formula, the loss it minimises, and that it finds a better
// scaling than round-to-nearest where salient channels exist (and falls back to s = 1 where not).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { errorEnergy } from "../../../src/builder/passes/awq/error_energy.ts";
import {
  awqScales,
  GRID,
  scaledQuantLoss,
  searchScales,
} from "../../../src/builder/passes/awq/scale_search.ts";
import { randn } from "../../helpers/tiny_model.ts";

function random(n: number, seed: number, scale = 1): Float32Array {
  const r = randn(seed);
  return Float32Array.from({ length: n }, () => scale * r());
}

describe("AWQ scale search", () => {
  test("s = s_x^α clamped at 1e-4, divided by sqrt(max·min); α = 0 is all ones", () => {
    const m = Float32Array.of(0, 0.25, 1, 4);
    assert.deepEqual([...awqScales(m, 0)], [1, 1, 1, 1]);
    const s = awqScales(m, 0.5); // raw [1e-4, 0.5, 1, 2]: norm sqrt(2e-4)
    const norm = Math.sqrt(2 * 1e-4);
    const want = [1e-4 / norm, 0.5 / norm, 1 / norm, 2 / norm];
    s.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-6 * want[i], `${v} vs ${want[i]}`));
  });

  test("errorEnergy is Σ (d_r · x_t)² on odd sizes", () => {
    const [rows, cols, n] = [7, 13, 5]; // a 4 × 2 tile, and both tails
    const d = random(rows * cols, 1);
    const x = random(n * cols, 2);
    let want = 0;
    for (let r = 0; r < rows; r++)
      for (let t = 0; t < n; t++) {
        let a = 0;
        for (let c = 0; c < cols; c++) a += d[r * cols + c] * x[t * cols + c];
        want += a * a;
      }
    assert.ok(Math.abs(errorEnergy(d, rows, cols, x, n) - want) <= 1e-9 * want);
  });

  test("salient input channels: a scaled α wins, with a lower loss than round to nearest", () => {
    const [rows, cols, n] = [64, 256, 48];
    const w = random(rows * cols, 3, 0.05);
    const x = random(n * cols, 4);
    for (let t = 0; t < n; t++) for (const c of [5, 77, 130, 200]) x[t * cols + c] *= 30; // outliers
    const meanAbs = new Float32Array(cols);
    for (let t = 0; t < n; t++) for (let c = 0; c < cols; c++) meanAbs[c] += Math.abs(x[t * cols + c]) / n;
    const best = searchScales(w, rows, cols, meanAbs, x, n);
    assert.ok(best.alpha > 0 && best.alpha < 1, `alpha ${best.alpha}`);
    assert.equal(best.alpha * GRID, Math.round(best.alpha * GRID));
    assert.equal(best.rtnLoss, scaledQuantLoss(w, rows, cols, new Float32Array(cols).fill(1), x, n));
    assert.ok(best.loss < 0.8 * best.rtnLoss, `loss ${best.loss} vs round to nearest ${best.rtnLoss}`);
    assert.equal(best.loss, scaledQuantLoss(w, rows, cols, best.scales, x, n));
  });

  test("constant salience: every α gives s = 1, so α = 0 (round to nearest) is kept", () => {
    const [rows, cols, n] = [32, 128, 32];
    const w = random(rows * cols, 5);
    const x = random(n * cols, 6);
    const best = searchScales(w, rows, cols, new Float32Array(cols).fill(1), x, n);
    // s_x constant: every α gives s = 1, so the loss is round to nearest's and α = 0 is kept.
    assert.equal(best.alpha, 0);
    assert.equal(best.loss, best.rtnLoss);
  });
});
