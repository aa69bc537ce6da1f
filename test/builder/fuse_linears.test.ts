// The sibling-linear fusion pass's canFuse hook: a group the builder says cannot be stacked (pre-quantized
// parts with different g_idx) keeps its linears and weights as they are; every other group still fuses.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fuseSiblingLinears } from "../../src/builder/passes/fuse_linears.ts";
import { parseHfConfig } from "../../src/checkpoint/hf_config.ts";
import { defineModel } from "../../src/models/registry.ts";
import { llamaConfig } from "../checkpoint/helpers.ts";

test("canFuse false keeps that group's linears apart; the other groups fuse", () => {
  const net = defineModel(parseHfConfig(llamaConfig({ num_hidden_layers: 2 }), "config.json"), "config.json");
  const asked: string[][] = [];
  const fused = fuseSiblingLinears(net, (weights) => {
    asked.push(weights);
    return !weights[0].startsWith("model.layers.1.self_attn.");
  });
  const linears = fused.ops.flatMap((op) => (op.kind === "linear" ? [op.weight] : []));
  const layer1 = ["q_proj", "k_proj", "v_proj"].map((m) => `model.layers.1.self_attn.${m}.weight`);
  assert.deepEqual(asked.length, 4, "qkv and gate/up of each layer are asked about once");
  assert.deepEqual(asked[2], layer1);
  for (const w of layer1) {
    assert.ok(linears.includes(w), w);
    assert.deepEqual(fused.weights[w], net.weights[w]);
  }
  assert.ok(linears.includes("model.layers.0.self_attn.qkv_proj.weight"));
  assert.ok(linears.includes("model.layers.1.mlp.gate_up_proj.weight"));
  assert.ok(!linears.includes("model.layers.1.self_attn.qkv_proj.weight"));
  assert.equal(fused.ops.filter((op) => op.kind === "split").length, 3);
});
