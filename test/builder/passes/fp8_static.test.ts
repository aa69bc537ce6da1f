// fp8-static's calibration (builder/passes/fp8_static.ts): each quantizable linear's input scale is the
// largest |x| its input took over every calibration window, over 448; the LM head gets none; an input
// only ever zero gets scale 1.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildEngine } from "../../../src/builder/builder.ts";
import { fp8InputScales } from "../../../src/builder/passes/fp8_static.ts";
import { BUNDLED_MODEL_DIR } from "../../../src/bundled_model.ts";
import { openEngine } from "../../../src/engine/reader.ts";
import type { Network } from "../../../src/models/network.ts";
import { randn, tempCache } from "../../helpers/tiny_model.ts";

const tmp = tempCache();
after(() => tmp.cleanup());

/** embedding → fc → fc2 → LM head, written out by hand (no bias, no norm: inputs are easy to compute). */
function handNetwork(V: number): Network {
  const e = openEngine(
    (() => {
      const dir = join(tmp.dir, "config");
      buildEngine(BUNDLED_MODEL_DIR, dir, { dtype: "fp32" });
      return dir;
    })(),
  );
  const config = { ...e.config.model, vocabSize: V };
  e.close();
  return {
    config,
    ops: [
      { kind: "embedding", out: "e", width: 8, weight: "emb" },
      { kind: "linear", x: "e", out: "h", inFeatures: 8, outFeatures: 6, weight: "fc.weight" },
      { kind: "linear", x: "h", out: "h2", inFeatures: 6, outFeatures: 6, weight: "fc2.weight" },
      { kind: "linear", x: "h2", out: "logits", inFeatures: 6, outFeatures: V, weight: "lm_head.weight" },
    ],
    output: "logits",
    weights: {},
  };
}

function run(net: Network, weights: Map<string, Float32Array>, ids: number[], window: number) {
  const gen = fp8InputScales(net.config, net, weights, Int32Array.from(ids), window);
  for (;;) {
    const r = gen.next();
    if (r.done) return r.value;
  }
}

test("input scales: max |x| over all windows / 448, for each block linear; none for the LM head", () => {
  const V = 13;
  const net = handNetwork(V);
  const r = randn(5);
  const vec = (n: number) => Float32Array.from({ length: n }, () => r());
  const weights = new Map([
    ["emb", vec(V * 8)],
    ["fc.weight", vec(6 * 8)],
    ["fc2.weight", vec(6 * 6)],
    ["lm_head.weight", vec(V * 6)],
  ]);
  const ids = [3, 1, 4, 1, 5, 9, 2, 6, 5]; // windows of 4: [3 1 4 1] [5 9 2 6] [5]
  // The inputs, computed here in fp64: e = emb[id]; h = e · fcᵀ.
  let maxE = 0;
  let maxH = 0;
  const emb = weights.get("emb")!;
  const fc = weights.get("fc.weight")!;
  for (const id of ids) {
    for (let c = 0; c < 8; c++) maxE = Math.max(maxE, Math.abs(emb[id * 8 + c]));
    for (let o = 0; o < 6; o++) {
      let h = 0;
      for (let c = 0; c < 8; c++) h += emb[id * 8 + c] * fc[o * 8 + c];
      maxH = Math.max(maxH, Math.abs(h));
    }
  }
  const scales = run(net, weights, ids, 4);
  assert.deepEqual([...scales.keys()].sort(), ["fc.weight", "fc2.weight"]);
  assert.equal(scales.get("fc.weight"), Math.fround(maxE / 448));
  const fc2 = scales.get("fc2.weight")!;
  assert.ok(Math.abs(fc2 - maxH / 448) <= 1e-6 * fc2, `${fc2} vs ${maxH / 448}`);
  // The range is not all in the first window, so later windows were observed too.
  let maxFirst = 0;
  for (const id of ids.slice(0, 4))
    for (let c = 0; c < 8; c++) maxFirst = Math.max(maxFirst, Math.abs(emb[id * 8 + c]));
  assert.ok(maxFirst < maxE, "the test's ids put the largest |x| after the first window");
});

test("an input the calibration only saw as zeros gets scale 1", () => {
  const V = 5;
  const net = handNetwork(V);
  const weights = new Map([
    ["emb", new Float32Array(V * 8)],
    ["fc.weight", new Float32Array(6 * 8).fill(0.5)],
    ["fc2.weight", new Float32Array(6 * 6).fill(0.5)],
    ["lm_head.weight", new Float32Array(V * 6).fill(0.5)],
  ]);
  const scales = run(net, weights, [1, 2, 3], 8);
  assert.deepEqual(Object.fromEntries(scales), { "fc.weight": 1, "fc2.weight": 1 });
});
