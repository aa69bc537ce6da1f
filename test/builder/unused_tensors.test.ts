// A checkpoint whose config.json describes less than its weights hold is refused, with the names of
// the tensors that would be silently ignored.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { UnusedTensorError } from "../../src/builder/errors.ts";
import { writeSafetensors } from "../../src/checkpoint/safetensors_writer.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

describe("unused checkpoint tensors", () => {
  const out = tempCache();
  after(out.cleanup);

  test("fewer layers in config.json than in the weights is an UnusedTensorError naming them", () => {
    const m = writeTinyModel("llama");
    try {
      const cfgPath = join(m.dir, "config.json");
      const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
      writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 1 }));
      assert.throws(
        () => buildEngine(m.dir, join(out.dir, "e1")),
        (e: unknown) =>
          e instanceof UnusedTensorError &&
          e.tensorNames.length > 0 &&
          e.tensorNames.every((n) => n.startsWith("model.layers.1.")) &&
          e.message.includes("model.layers.1.") &&
          /num_hidden_layers/.test(e.message),
      );
    } finally {
      m.cleanup();
    }
  });

  test("rotary inv_freq buffers are ignored, as transformers does", () => {
    const m = writeTinyModel("llama");
    try {
      writeSafetensors(join(m.dir, "extra.safetensors"), {
        "model.layers.0.self_attn.rotary_emb.inv_freq": {
          dtype: "F32",
          shape: [4],
          data: new Uint8Array(16),
        },
      });
      buildEngine(m.dir, join(out.dir, "e2"));
    } finally {
      m.cleanup();
    }
  });
});
