// kernels/sampling.cu's sample_topk_topp on the CPU emulator (kernels/emulation/run.sh, sample_check.cpp):
// against a literal C++ port of the reference draw (decoding.ts, counter_rng.ts), the same tokens for
// every row of mixed settings (greedy, temperature, top-k, top-p, min-p, ties, −∞ entries) and log-probs
// within 1e-5, at VOCAB 769 (one slice a row) and 5125 (two), each over six slice / CTA layouts (a CTA a
// slice; several slices a CTA, a team of warps each; a warp a slice; CTAs not dividing the slices; idle
// CTAs), and the multi-chunk walks ("flat": high temperatures, top-k past 1,024); a copy whose merge
// drops the row's last slice fails, and so does one whose teams read the first team's partials (each
// broken copy run on the layouts that show it: KILN_SAMPLING_LAYOUTS). The
// whole set (VOCAB 7, 769, 5124, 5125): run.sh by hand. Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/run.sh");
const SAMPLING = kernelsPath("sampling.cu");

describe("sampling.cu sample_topk_topp on the CPU emulator", { skip: noGxx }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-sampling-emu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync("bash", [SCRIPT, ...args], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, KILN_SAMPLING_VOCABS: "769 5125", ...env },
    });
  const lines = (stdout: string) =>
    stdout.match(/^V=\d+ rows=\d+ slices=\d+ ctas=\d+ mismatches=\d+ .*$/gm) ?? [];

  test("the reference's tokens and log-probs, every layout", () => {
    const r = run(["24"]);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const got = lines(r.stdout);
    assert.equal(got.length, 2 * 6, r.stdout);
    for (const l of got) assert.match(l, /rows=24 slices=\d+ ctas=\d+ mismatches=0 max\|dlogprob\|=[^ ]+$/);
    assert.match(r.stdout, /^V=5125 rows=24 slices=32 ctas=1 mismatches=0 /m, "a warp a slice");
  });

  test("the multi-chunk walks", () => {
    // The walks run after the merge, whatever the layout: five of them (not the idle CTAs' 5 × 8, the
    // costliest to emulate, which the first test covers).
    const r = run(["16", "flat"], { KILN_SAMPLING_VOCABS: "5125", KILN_SAMPLING_LAYOUTS: "0 1 2 3 4" });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(lines(r.stdout).length, 5, r.stdout);
  });

  test("a merge that drops the row's last slice fails", () => {
    const src = readFileSync(SAMPLING, "utf8");
    const good = "for (int z = lane; z < P; z += kiln::kWarp) {\n      const ArgMax c{";
    assert.ok(src.includes(good), "the merge loop this test breaks");
    const path = join(dir, "sampling.cu");
    writeFileSync(path, src.replace(good, good.replace("z < P;", "z < P - 1;")));
    const r = run(["24"], {
      KILN_SAMPLING_SRC: path,
      KILN_SAMPLING_VOCABS: "5125",
      KILN_SAMPLING_LAYOUTS: "0",
    });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^V=5125 rows=24 slices=2 ctas=2 mismatches=[1-9]\d* /m);
  });

  test("teams that read the first team's partials fail where a CTA holds several slices", () => {
    const src = readFileSync(SAMPLING, "utf8");
    const good = "per_warp[team.first_warp() + lane]";
    assert.ok(src.includes(good), "the team gather this test breaks");
    const path = join(dir, "sampling.cu");
    writeFileSync(path, src.replace(good, "per_warp[lane]"));
    const r = run(["24"], {
      KILN_SAMPLING_SRC: path,
      KILN_SAMPLING_VOCABS: "5125",
      KILN_SAMPLING_LAYOUTS: "0 2",
    });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^V=5125 rows=24 slices=2 ctas=2 mismatches=0 /m, "a CTA a slice: one team");
    assert.match(r.stdout, /^V=5125 rows=24 slices=32 ctas=1 mismatches=[1-9]\d* /m);
  });
});
