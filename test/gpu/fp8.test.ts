// fp8 (W8A8 E4M3) engines on CUDA against the CPU backend (the format's reference: fp8_format.ts, the
// weight dequantized exactly and every linear's input fake-quantized per token, in fp32), on the bundled
// model and the tiny Llama built with --quantize fp8 (dynamic activations), and the compressed-tensors
// static-activation fixture (its calibrated input scales). Both backends read the same E4M3 weights;
// what differs is the activations each quantizes: CUDA's come from its own kernels (fp32: other
// summation orders; bf16: rounded to bf16 at every layer), so an element whose x/s lies near an E4M3
// rounding boundary may round the other way (one E4M3 step, 1/8 relative, on that element). Bounds on
// the log-prob of each generated token for the same prefix, first ones to be confirmed on the device:
//   fp32 engines ≤ 0.05 nats (rare flips), bf16 engines ≤ 0.25 nats (the bf16 bound of quantized.test.ts,
//   0.15, plus the flips bf16 activations cause).
// Paths: prompts of 20 tokens prefill through the FP8 GEMM (cuBLASLt, > 8 rows) and decode through
// gemv_fp8 (and its gated kernel); KILN_GEMV=0 runs every step on the FP8 GEMM, within the same bound.
// The prefix cache: a runner's second run of the 20-token prompt takes its first 16 tokens (one KV
// block) from the cache, so its step 0 is a 4-row step on gemv_fp8, not the FP8 GEMM; that re-run is
// held to the same bound, and runs are compared bit for bit only with runs that took the same path:
// the gated kernel and the unfused pair give the same bits, fresh against fresh and cached against cached.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";
import { cpuLogits, greedy, logProb, STEPS } from "./cpu_reference.ts";

// fp8 is out of CUDA_WEIGHT_FORMATS until this suite passes (docs/QUANTIZATION.md: on the H200, fp8
// engines part from the CPU beyond these bounds; the fused/unfused gap seen then compared a prefix-cached
// re-run with a fresh run). To debug it, list "fp8" in CUDA_WEIGHT_FORMATS and drop this reason.
const REFUSED = "fp8 engines are refused on CUDA for now (CUDA_WEIGHT_FORMATS; docs/QUANTIZATION.md)";
const skip = noCudaDevice() || REFUSED;
const BOUND = { fp32: 0.05, bf16: 0.25 } as const;
const STATIC_FIXTURE = join(import.meta.dirname, "..", "fixtures", "quantized", "ct-fp8-static");

/** A greedy run: its tokens and each step's logits. */
type Run = Awaited<ReturnType<typeof greedy>>;

/** The largest |Δ logit| of step t's rows ([STEPS, V] each). */
function stepDelta(a: Float32Array, b: Float32Array, t: number): number {
  const V = a.length / STEPS;
  let most = 0;
  for (let i = t * V; i < (t + 1) * V; i++) most = Math.max(most, Math.abs(a[i] - b[i]));
  return most;
}

/** Where two greedy runs part: the first step whose logits differ and its largest |Δ logit|, and the
 * step whose chosen tokens differ (the logits after it are of other prefixes, so not compared). */
function apartBy(a: Run, b: Run) {
  const split = a.tokens.findIndex((tok, t) => tok !== b.tokens[t]);
  for (let t = 0; t <= (split < 0 ? STEPS - 1 : split); t++) {
    const most = stepDelta(a.logits, b.logits, t);
    if (most > 0)
      return `logits part at step ${t}, max |Δ| there ${most.toExponential(2)}${split < 0 ? "" : `; tokens part at step ${split}`}`;
  }
  return "identical";
}

const PROMPTS = [
  [5, 17, 42, 9, 3, 21, 8, 30, 11, 2, 7, 19, 25, 4, 13, 6, 40, 1, 33, 12],
  [11, 2, 7],
];

describe("fp8 engines on CUDA vs the CPU backend", { skip }, () => {
  const cache = tempCache();
  let tiny: ReturnType<typeof writeTinyModel>;
  before(() => {
    tiny = writeTinyModel("llama");
  });
  after(() => {
    tiny.cleanup();
    cache.cleanup();
  });

  const cases = () =>
    [
      { name: "bundled", dir: BUNDLED_MODEL_DIR, quantize: "fp8" as const },
      { name: "tiny", dir: tiny.dir, quantize: "fp8" as const },
      { name: "ct-fp8-static", dir: STATIC_FIXTURE, quantize: undefined },
    ] as const;

  for (const dtype of ["fp32", "bf16"] as const) {
    for (const which of [0, 1, 2]) {
      test(`case ${which}, ${dtype}: generated tokens' log-probs within ${BOUND[dtype]} nats of the CPU's`, async () => {
        const c = cases()[which];
        const opts = { dtype, cacheDir: cache.dir, ...(c.quantize ? { quantize: c.quantize } : {}) };
        const cpu = ModelRunner.fromDir(c.dir, { ...opts, backend: "cpu" });
        const cuda = ModelRunner.fromDir(c.dir, { ...opts, backend: "cuda" });
        const unfused = ModelRunner.fromDir(c.dir, {
          ...opts,
          backend: "cuda",
          cudaTuning: cudaTuning({ fuseGatedAct: false }),
        });
        const gemmOnly = ModelRunner.fromDir(c.dir, {
          ...opts,
          backend: "cuda",
          cudaTuning: cudaTuning({ gemv: false }),
        });
        try {
          // Quantized: the weights as stored are fewer bytes than the arrays they stand for.
          assert.ok(cuda.session.storedWeightBytes < cuda.session.weightBytes, `${c.name}: quantized`);
          const V = cpu.session.config.model.vocabSize;
          for (const ids of PROMPTS) {
            // Each runner's first run of the prompt (a fresh prefill), then the default runner's re-run
            // (for the 20-token prompt, a prefix-cache hit: step 0 on gemv_fp8).
            const runs = new Map<string, Run>();
            for (const [label, runner] of [
              ["gemv_fp8 decode, FP8 GEMM prefill", cuda],
              ["FP8 GEMM only", gemmOnly],
              ["gate_up unfused", unfused],
              ["re-run (prefix cache)", cuda],
            ] as const) {
              const got = await greedy(runner, ids);
              runs.set(label, got);
              const want = await cpuLogits(cpu, ids, got.tokens);
              let worst = 0;
              let widest = 0; // the largest |Δ logit| over whole rows: what the chosen token's log-prob hides
              for (let i = 0; i < got.logits.length; i++)
                widest = Math.max(widest, Math.abs(got.logits[i] - want[i]));
              for (let t = 0; t < STEPS; t++) {
                const tok = got.tokens[t];
                const a = logProb(got.logits.subarray(t * V, (t + 1) * V), tok);
                const b = logProb(want.subarray(t * V, (t + 1) * V), tok);
                worst = Math.max(worst, Math.abs(a - b));
              }
              console.log(
                `${c.name} ${dtype} ${label} prompt ${ids.length}: worst |Δ log-prob| ${worst.toExponential(2)}, max |Δ logit| ${widest.toExponential(2)} (step 0: ${stepDelta(got.logits, want, 0).toExponential(2)})`,
              );
              assert.ok(worst <= BOUND[dtype], `${c.name} ${label}: worst |Δ log-prob| ${worst}`);
            }
            const fusedFresh = runs.get("gemv_fp8 decode, FP8 GEMM prefill") as Run;
            const unfusedFresh = runs.get("gate_up unfused") as Run;
            // Cached against cached: both runners have run the prompt once already.
            const fused = await greedy(cuda, ids);
            const again = await greedy(cuda, ids);
            const apart = await greedy(unfused, ids);
            const tag = `${c.name} ${dtype} prompt ${ids.length}`;
            console.log(`${tag}: run twice ${apartBy(fused, again)}`);
            console.log(`${tag}: fused vs unfused, fresh ${apartBy(fusedFresh, unfusedFresh)}`);
            console.log(`${tag}: fused vs unfused, cached ${apartBy(fused, apart)}`);
            assert.deepEqual(fused.logits, again.logits, "the same engine twice: same logits");
            for (const [a, b, when] of [
              [fusedFresh, unfusedFresh, "fresh"],
              [fused, apart, "cached"],
            ] as const) {
              assert.deepEqual(a.tokens, b.tokens, `fused gated activation, ${when}: same tokens`);
              assert.deepEqual(a.logits, b.logits, `fused gated activation, ${when}: same logits`);
            }
          }
        } finally {
          for (const r of [cpu, cuda, unfused, gemmOnly]) r.dispose();
        }
      });
    }
  }
});
