// The torch-free Python helpers of tools/ (train_presets.py: the training presets and the quant-study
// held-out split; quant_study_table.py: the accuracy study's verdicts and table) have unittest checks
// beside them. They run here so that CI keeps them honest; the scripts that need torch run only on the
// GPU machine.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

test("tools/test_*.py pass under python3 (no torch needed)", (t) => {
  const version = spawnSync("python3", ["--version"], { encoding: "utf8" });
  if (version.error) {
    t.skip("python3 not found");
    return;
  }
  const r = spawnSync("python3", ["-m", "unittest", "discover", "-s", "tools", "-p", "test_*.py"], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
  });
  assert.equal(r.status, 0, r.stderr);
  // unittest reports on stderr: "Ran N tests" then "OK"; a discovery that found nothing is a failure.
  const ran = /Ran (\d+) tests?/.exec(r.stderr);
  assert.ok(ran && Number(ran[1]) >= 10, r.stderr);
  assert.match(r.stderr, /\nOK\s*$/);
});
