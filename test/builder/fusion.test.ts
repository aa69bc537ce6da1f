// The fusion passes change the plan, never the numbers: fused and unfused engines of every
// architecture give the same logits (prefill and decode), and the fused plan has the fused ops.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { TINY_CONFIGS, writeTinyModel } from "../helpers/tiny_model.ts";

for (const arch of Object.keys(TINY_CONFIGS)) {
  describe(`fusion: ${arch}`, () => {
    const model = writeTinyModel(arch);
    after(model.cleanup);
    const fused = join(model.dir, "engine-fused");
    const plain = join(model.dir, "engine-plain");
    buildEngine(model.dir, fused, { fuse: true });
    buildEngine(model.dir, plain, { fuse: false });

    test("fused plan packs qkv and gate-up GEMMs and fuses add+norm", () => {
      const e = openEngine(fused);
      const ops = e.header.plan.ops;
      const names = e.header.weights.map((w) => w.name);
      e.close();
      assert.ok(names.includes("model.layers.0.self_attn.qkv_proj.weight"), names.join(","));
      assert.ok(names.includes("model.layers.1.mlp.gate_up_proj.weight"));
      assert.ok(!names.includes("model.layers.0.self_attn.q_proj.weight"));
      assert.equal(ops.filter((o) => o.kind === "gated_act").length, 2);
      assert.equal(ops.filter((o) => o.kind === "gated_act2").length, 0);
      // Per layer: the post-attention norm, and the next layer's input norm (layer 0 → 1).
      assert.equal(ops.filter((o) => o.kind === "add_rms_norm").length, 3);
    });

    test("fused and unfused engines agree on greedy tokens and log-probs", async () => {
      const a = ModelRunner.fromEngine(fused);
      const b = ModelRunner.fromEngine(plain);
      const prompt = { ids: [3, 17, 5, 42, 8, 9, 11] };
      const [ra] = await a.generate(prompt, { greedy: true, maxNewTokens: 12, ignoreEos: true });
      const [rb] = await b.generate(prompt, { greedy: true, maxNewTokens: 12, ignoreEos: true });
      assert.deepEqual(ra.outputIds, rb.outputIds);
      for (let i = 0; i < ra.logProbs.length; i++)
        assert.ok(Math.abs(ra.logProbs[i] - rb.logProbs[i]) < 1e-5);
      a.dispose();
      b.dispose();
    });
  });
}
