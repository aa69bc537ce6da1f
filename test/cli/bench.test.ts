// `kiln bench --json` reports the contract's fields with sane values (CPU, bundled model).
import assert from "node:assert/strict";
import { test } from "node:test";
import { kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

test("kiln bench --json", () => {
  const cache = tempCache();
  try {
    const r = kiln(["bench", "--input-len", "8", "--output-len", "4", "--runs", "1", "--json"], {
      KILN_CACHE_DIR: cache.dir,
    });
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    for (const k of [
      "device",
      "dtype",
      "batchSize",
      "inputLen",
      "outputLen",
      "ttftMs",
      "tpotMs",
      "outputTokensPerSec",
      "floorMs",
      "tpotOverFloor",
    ]) {
      assert.ok(k in o, `missing ${k}`);
    }
    assert.equal(o.inputLen, 8);
    assert.equal(o.outputLen, 4);
    assert.ok(o.tpotMs > 0 && o.floorMs > 0 && o.tpotOverFloor > 0);
    assert.ok(Math.abs(o.tpotOverFloor - o.tpotMs / o.floorMs) < 1e-9);
  } finally {
    cache.cleanup();
  }
});
