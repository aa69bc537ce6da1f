// Compares log-probs with a reference (an HF fixture, or a run taken as the reference) by walking the
// reference's array, after checking both have the same length: walking the result's array instead lets
// a short or empty result pass.
import assert from "node:assert/strict";

/** Asserts got[t] is within tol of want[t] for every step t of want, and that got has no extra steps. */
export function assertLogProbsNear(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  label: string,
): void {
  assert.equal(
    got.length,
    want.length,
    `${label}: ${got.length} log-probs, the reference has ${want.length}`,
  );
  for (let t = 0; t < want.length; t++) {
    const diff = Math.abs(got[t] - want[t]);
    // `!(diff <= tol)` also fails on NaN.
    if (!(diff <= tol))
      assert.fail(`${label}: step ${t} log-prob ${got[t]} vs ${want[t]} (tolerance ${tol})`);
  }
}
