// The log-prob comparison used against HF fixtures must fail on a result shorter than the reference
// (it used to walk the result's array, so an empty result passed), on NaN, and on a step out of tolerance.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assertLogProbsNear } from "./log_probs.ts";

test("a short or empty result fails", () => {
  assert.throws(() => assertLogProbsNear([], [-1.5, -2], 1e-3, "x"), /x: 0 log-probs, the reference has 2/);
  assert.throws(() => assertLogProbsNear([-1.5], [-1.5, -2], 1e-3, "x"), /1 log-probs, the reference has 2/);
});

test("a longer result fails", () => {
  assert.throws(() => assertLogProbsNear([-1.5, -2, -3], [-1.5, -2], 1e-3, "x"), /3 log-probs/);
});

test("each step is compared within the tolerance; NaN fails", () => {
  assertLogProbsNear(Float32Array.of(-1.5004, -2), [-1.5, -2], 1e-3, "x");
  assert.throws(
    () => assertLogProbsNear([-1.502, -2], [-1.5, -2], 1e-3, "x"),
    /x: step 0 log-prob -1.502 vs -1.5/,
  );
  assert.throws(() => assertLogProbsNear([-1.5, Number.NaN], [-1.5, -2], 1e-3, "x"), /step 1/);
});
