// attention_decode_mma_rope (split decode steps over long contexts: the tensor-core decode with RoPE
// fused in) against attention_decode_mma after rope_qkv_fused (the same steps with KILN_ROPE_FUSE=0): the
// same tokens and logits bit for bit, on tiny random models the kernel applies to (head 128 with 4 query
// heads per kv head; head 64 with Qwen3's q/k norm). A prompt of 2,100 tokens takes the most splits its
// batch may (32), so its decode steps take the fused entry (asserted from the device's SM count); prompts
// of 3 and 150 tokens keep attention_decode alone, and with the long one in the same batch ride its 32
// splits (most of them empty), one at a time and all at once.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { decodeSplits, MAX_SPLITS } from "../../src/backends/cuda/attention_splits.ts";
import { DECODE_MMA_ROPE, decodeRoute, mmaDecodeApplies } from "../../src/backends/cuda/decode_mma.ts";
import { CudaDevice } from "../../src/backends/cuda/device/index.ts";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();

const CONFIGS = {
  "llama head 128, G 4": {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 61,
    hidden_size: 512,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    max_position_embeddings: 4096,
    rope_theta: 10000,
  },
  "qwen3 head 64, q/k norm": {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    vocab_size: 61,
    hidden_size: 128,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 64,
    max_position_embeddings: 4096,
    rope_parameters: { rope_type: "default", rope_theta: 1000000 },
  },
} as const;

const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 7 + seed * 13) % 61);
const LONG = 2100;

/** The device's SM count (decodeSplits' fill), or 0 without a device. */
function smCount(): number {
  if (skip) return 0;
  const d = CudaDevice.open();
  try {
    return d.smCount;
  } finally {
    d.dispose();
  }
}

describe("attention_decode_mma_rope: rope_qkv_fused + attention_decode_mma's bits", { skip }, () => {
  const cache = tempCache();
  after(cache.cleanup);
  for (const [name, config] of Object.entries(CONFIGS)) {
    test(name, async () => {
      const heads = config.num_attention_heads;
      const headDim = "head_dim" in config ? config.head_dim : config.hidden_size / heads;
      assert.ok(
        mmaDecodeApplies("bf16", "auto", heads / config.num_key_value_heads, headDim, false),
        "the kernel applies",
      );
      // The premise: at batch 1 and 3, the long prompt's steps take the most splits (32) and the fused entry.
      const kv = config.num_key_value_heads;
      const target = { smCount: smCount(), ctasPerSeq: kv * Math.ceil(heads / kv / Math.min(heads / kv, 8)) };
      for (const seqs of [1, 3]) {
        const splits = decodeSplits(target, seqs, LONG);
        assert.equal(splits, MAX_SPLITS, `${seqs} sequences over ${LONG} keys`);
        const r = decodeRoute(splits, {
          batch: false,
          mma: true,
          fillSplits: decodeSplits(target, seqs),
          mmaRope: true,
          clusters: true,
          ropeFuse: true,
          ctasPerSeq: target.ctasPerSeq,
          numKvHeads: kv,
        });
        assert.equal(r.kernel, DECODE_MMA_ROPE, `${seqs} sequences over ${LONG} keys`);
      }
      const model = writeTinyModel(config, 5);
      const prompts = [prompt(3, 1), prompt(150, 2), prompt(LONG, 3)].map((ids) => ({ ids }));
      const opts = { greedy: true, maxNewTokens: 10, ignoreEos: true, returnGenerationLogits: true };
      const run = async (ropeFuse: boolean) => {
        const r = ModelRunner.fromDir(model.dir, {
          backend: "cuda",
          dtype: "bf16",
          cacheDir: cache.dir,
          cudaTuning: cudaTuning({ ropeFuse }),
        });
        try {
          const one = [];
          for (const p of prompts) one.push(...(await r.generate(p, opts)));
          return [...one, ...(await r.generate(prompts, opts))];
        } finally {
          r.dispose();
        }
      };
      try {
        const fused = await run(true);
        const apart = await run(false);
        fused.forEach((o, i) => {
          assert.deepEqual(o.outputIds, apart[i].outputIds, `${name}: run ${i} tokens`);
          assert.deepEqual(o.generationLogits, apart[i].generationLogits, `${name}: run ${i} logits`);
        });
      } finally {
        model.cleanup();
      }
    });
  }
});
