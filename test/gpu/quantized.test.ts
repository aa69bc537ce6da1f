// int8-wo and int4-wo engines on the CUDA backend against the CPU backend (the format's reference:
// engine/weight_format.ts dequantize, then fp32 linears), on the bundled model (k = 256 and 640: whole
// groups) and the tiny Llama (hidden 32, intermediate 48: every group padded, partial q vectors).
// Both backends read the same quantized bytes, so the weights are the same numbers; what differs:
//   fp32 engines: CUDA dequantizes into fp32 (q·scale rounds once to fp32, as the CPU's dequantize does:
//     the same fp32 weights) and runs cuBLASLt's exact-fp32 GEMMs; left are fp32 summation orders
//     (GEMMs, norms, attention), ~√k·2⁻²⁴ relative each: |Δlogit| ≤ 1e-3 (as fp32 CUDA vs HF's
//     log-probs, test/gpu/cuda_backend.test.ts), and the greedy tokens equal, batched as single.
//   bf16 engines: activations and the KV cache rounded to bf16 at every layer (the CPU computes in
//     fp32 from the same weights), prefill's dequantized weight rounded to bf16 once more (2⁻⁸
//     relative, the order of the activations' roundings), decode's gemv_wo sums q·x in fp32 without
//     rounding the weight: the log-prob of each generated token within 0.15 nats of the CPU's for the
//     same prefix (the bound of cuda_backend.test.ts's bf16 engines vs HF fp32, for the same reason).
//   Decode steps of bf16 engines run gemv_wo (its gated kernel by default): fused and unfused gated
//   activation give the same bits; KILN_GEMV=0 (dequantize + cuBLASLt for decode too) stays within
//   the bf16 bound.
//   Steps of 9…256 rows of bf16 engines run gemm_wo.cu (sums q·x exactly in fp32 per group, as gemv_wo):
//   12 sequences generated together (decode steps of 12 rows; their prefill one step of ~60 rows, a
//   20-token prompt among them) within the same 0.15 nats of the CPU, and with KILN_WO_GEMM_MAX_M=0
//   (dequantize + cuBLASLt for those steps) too.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";
import { assertManySequences, cpuLogits, greedy, logProb, STEPS } from "./cpu_reference.ts";

const skip = noCudaDevice();
const FORMATS = ["int8-wo", "int4-wo"] as const;

const models = () => {
  const tiny = writeTinyModel("llama");
  return { models: { bundled: BUNDLED_MODEL_DIR, tiny: tiny.dir }, cleanup: tiny.cleanup };
};

describe("quantized engines on CUDA vs the CPU backend", { skip }, () => {
  const cache = tempCache();
  let m: ReturnType<typeof models>;
  before(() => {
    m = models();
  });
  after(() => {
    m.cleanup();
    cache.cleanup();
  });

  for (const quantize of FORMATS) {
    for (const name of ["bundled", "tiny"] as const) {
      test(`${name}, ${quantize}, fp32: |Δlogit| ≤ 1e-3, greedy tokens equal, batched as single`, async () => {
        const dir = m.models[name];
        const opts = { dtype: "fp32" as const, quantize, cacheDir: cache.dir };
        const cpu = ModelRunner.fromDir(dir, { ...opts, backend: "cpu" });
        const cuda = ModelRunner.fromDir(dir, { ...opts, backend: "cuda" });
        try {
          const prompts = [
            [5, 17, 42, 9, 3],
            [11, 2, 7],
          ];
          for (const ids of prompts) {
            const want = await greedy(cpu, ids);
            const got = await greedy(cuda, ids);
            assert.deepEqual(got.tokens, want.tokens, "greedy tokens");
            let worst = 0;
            for (let i = 0; i < want.logits.length; i++)
              worst = Math.max(worst, Math.abs(got.logits[i] - want.logits[i]));
            console.log(`${name} ${quantize} fp32: worst |Δlogit| ${worst.toExponential(2)}`);
            assert.ok(worst <= 1e-3, `worst |Δlogit| ${worst}`);
          }
          const batched = await cuda.generate(
            prompts.map((ids) => ({ ids })),
            { greedy: true, maxNewTokens: STEPS, ignoreEos: true },
          );
          for (const [i, ids] of prompts.entries())
            assert.deepEqual(batched[i].outputIds, (await greedy(cpu, ids)).tokens, `batched prompt ${i}`);
        } finally {
          cpu.dispose();
          cuda.dispose();
        }
      });

      test(`${name}, ${quantize}, bf16: generated tokens' log-probs within 0.15 nats of the CPU's`, async () => {
        const dir = m.models[name];
        const opts = { dtype: "bf16" as const, quantize, cacheDir: cache.dir };
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
          for (const ids of [
            [5, 17, 42, 9, 3],
            [11, 2, 7],
          ]) {
            for (const [label, runner] of [
              ["gemv_wo", cuda],
              ["dequant + cuBLASLt", noGemv],
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
            // The gated activation inside gemv_wo's gate_up GEMV, or after it: the same bits.
            const fused = await greedy(cuda, ids);
            const apart = await greedy(unfused, ids);
            assert.deepEqual(fused.tokens, apart.tokens);
            assert.deepEqual(fused.logits, apart.logits, "fused gated activation: same logits");
          }
        } finally {
          for (const r of [cpu, cuda, unfused, noGemv]) r.dispose();
        }
      });

      test(`${name}, ${quantize}, bf16: 12 sequences at once (gemm_wo) within 0.15 nats of the CPU`, async () => {
        await assertManySequences(m.models[name], { quantize, cacheDir: cache.dir }, "gemm_wo");
      });
    }
  }
});
