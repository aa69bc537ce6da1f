// Pre-quantized AWQ and GPTQ checkpoints (test/fixtures/quantized: awq, gptq, gptq-actorder, gptq-v1;
// every linear int4-zp, group size 32, hidden 64 and intermediate 128, so k = 64 and 128: whole 16-byte
// q vectors) built for --backend cuda against the same checkpoints on the CPU backend (the format's
// reference: int4_zp_format.ts dequantize, then fp32 linears). Both backends read the same stored
// nibbles, scales, zero points and g_idx; what differs (as test/gpu/quantized.test.ts argues for
// int8-wo / int4-wo):
//   fp32 engines: CUDA dequantizes into fp32 ((q − z)·s, one rounding, as the CPU: the same weights)
//     and runs cuBLASLt's exact-fp32 GEMMs; left are fp32 summation orders: |Δlogit| ≤ 1e-3, and the
//     greedy tokens equal, batched as single.
//   bf16 engines: activations and KV rounded to bf16 at every layer, prefill's dequantized weight
//     rounded to bf16, decode's gemv_zp (gemv_zp_any for act-order) sums in fp32: each generated
//     token's log-prob within 0.15 nats of the CPU's for the same prefix (quantized.test.ts's bound),
//     KILN_GEMV=0 (dequantize + cuBLASLt for decode too) as well; fused and unfused gated activation
//     give the same bits. 12 sequences generated together (steps of 12 and ~60 rows: gemm_zp, except
//     gptq-actorder, whose g_idx keeps dequantization + cuBLASLt) within the same bound, and with
//     KILN_WO_GEMM_MAX_M=0 (dequantization for those steps) too.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache } from "../helpers/tiny_model.ts";
import { assertManySequences, cpuLogits, greedy, logProb, STEPS } from "./cpu_reference.ts";

const skip = noCudaDevice();
const FIXTURES = fileURLToPath(new URL("../fixtures/quantized/", import.meta.url));
const CHECKPOINTS = ["awq", "gptq", "gptq-actorder", "gptq-v1"];
const PROMPTS = [
  [5, 17, 42, 9, 3],
  [11, 2, 7],
];

describe("pre-quantized AWQ / GPTQ (int4-zp) engines on CUDA vs the CPU backend", { skip }, () => {
  const cache = tempCache();
  after(() => cache.cleanup());

  for (const name of CHECKPOINTS) {
    const dir = FIXTURES + name;
    test(`${name}, fp32: |Δlogit| ≤ 1e-3, greedy tokens equal, batched as single`, async () => {
      const opts = { dtype: "fp32" as const, cacheDir: cache.dir };
      const cpu = ModelRunner.fromDir(dir, { ...opts, backend: "cpu" });
      const cuda = ModelRunner.fromDir(dir, { ...opts, backend: "cuda" });
      try {
        for (const ids of PROMPTS) {
          const want = await greedy(cpu, ids);
          const got = await greedy(cuda, ids);
          assert.deepEqual(got.tokens, want.tokens, "greedy tokens");
          let worst = 0;
          for (let i = 0; i < want.logits.length; i++)
            worst = Math.max(worst, Math.abs(got.logits[i] - want.logits[i]));
          console.log(`${name} fp32: worst |Δlogit| ${worst.toExponential(2)}`);
          assert.ok(worst <= 1e-3, `worst |Δlogit| ${worst}`);
        }
        const batched = await cuda.generate(
          PROMPTS.map((ids) => ({ ids })),
          { greedy: true, maxNewTokens: STEPS, ignoreEos: true },
        );
        for (const [i, ids] of PROMPTS.entries())
          assert.deepEqual(batched[i].outputIds, (await greedy(cpu, ids)).tokens, `batched prompt ${i}`);
      } finally {
        cpu.dispose();
        cuda.dispose();
      }
    });

    test(`${name}, bf16: generated tokens' log-probs within 0.15 nats of the CPU's`, async () => {
      const opts = { dtype: "bf16" as const, cacheDir: cache.dir };
      const cpu = ModelRunner.fromDir(dir, { ...opts, backend: "cpu" });
      const cuda = ModelRunner.fromDir(dir, { ...opts, backend: "cuda" });
      const unfused = ModelRunner.fromDir(dir, {
        ...opts,
        backend: "cuda",
        cudaTuning: cudaTuning({ fuseGatedAct: false }),
      });
      const noGemv = ModelRunner.fromDir(dir, {
        ...opts,
        backend: "cuda",
        cudaTuning: cudaTuning({ gemv: false }),
      });
      try {
        const V = cpu.session.config.model.vocabSize;
        for (const ids of PROMPTS) {
          for (const [label, runner] of [
            ["gemv_zp", cuda],
            ["dequant_zp + cuBLASLt", noGemv],
          ] as const) {
            const got = await greedy(runner, ids);
            const want = await cpuLogits(cpu, ids, got.tokens);
            for (let t = 0; t < STEPS; t++) {
              const tok = got.tokens[t];
              const a = logProb(got.logits.subarray(t * V, (t + 1) * V), tok);
              const b = logProb(want.subarray(t * V, (t + 1) * V), tok);
              assert.ok(Math.abs(a - b) <= 0.15, `${label} step ${t}: ${a} vs CPU ${b}`);
            }
          }
          const fused = await greedy(cuda, ids);
          const apart = await greedy(unfused, ids);
          assert.deepEqual(fused.tokens, apart.tokens);
          assert.deepEqual(fused.logits, apart.logits, "fused gated activation: same logits");
        }
      } finally {
        for (const r of [cpu, cuda, unfused, noGemv]) r.dispose();
      }
    });

    test(`${name}, bf16: 12 sequences at once (gemm_zp) within 0.15 nats of the CPU`, async () => {
      await assertManySequences(dir, { cacheDir: cache.dir }, "gemm_zp");
    });
  }
});
