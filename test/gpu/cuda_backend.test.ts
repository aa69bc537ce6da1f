// The CUDA backend against Hugging Face and against the CPU backend, on every fixture architecture.
// Tolerances:
//   fp32 engines: true fp32 arithmetic (CUBLAS_COMPUTE_32F, no TF32; fp32 FMA attention), so greedy
//     tokens must equal HF's exactly and |Δ log-prob| ≤ 1e-3, as on the CPU backend.
//   bf16 engines: weights, activations and the KV cache are rounded to bf16 (8 significant bits,
//     relative step 2^-8 ≈ 0.4%) at every layer, as HF in bf16 would. We require the first greedy
//     token to equal HF-fp32's where HF's top-1/top-2 margin is ≥ 0.5 and the log-probs of HF's
//     tokens under teacher forcing to stay within 0.15 nats for the first 8 steps.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { CudaBackend } from "../../src/backends/cuda/cuda_backend.ts";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { assertLogProbsNear } from "../helpers/log_probs.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();
const FIXTURES = fileURLToPath(new URL("../fixtures/models", import.meta.url));
const names = readdirSync(FIXTURES).sort();

interface Case {
  prompt: string | null;
  promptIds: number[];
  outputIds: number[];
  logProbs: number[];
  margins: number[];
}

describe("CUDA backend, fp32 engines: HF's greedy tokens exactly", { skip }, () => {
  const cache = tempCache();
  after(cache.cleanup);
  for (const name of names) {
    test(name, async () => {
      const expected = JSON.parse(readFileSync(join(FIXTURES, name, "expected.json"), "utf8"));
      const runner = ModelRunner.fromDir(join(FIXTURES, name), {
        backend: "cuda",
        dtype: "fp32",
        cacheDir: cache.dir,
      });
      try {
        for (const c of expected.cases as Case[]) {
          const [out] = await runner.generate(
            { ids: c.promptIds },
            { greedy: true, maxNewTokens: 32, ignoreEos: true },
          );
          assert.deepEqual(out.outputIds, c.outputIds, `${name}: tokens`);
          assertLogProbsNear(out.logProbs, c.logProbs, 1e-3, `${name}: log-probs vs HF`);
        }
        // Batched equals single on the GPU too.
        const prompts = (expected.cases as Case[]).map((c) => ({ ids: c.promptIds }));
        const batched = await runner.generate(prompts, { greedy: true, maxNewTokens: 32, ignoreEos: true });
        batched.forEach((b, i) =>
          assert.deepEqual(b.outputIds, expected.cases[i].outputIds, `${name}: batched prompt ${i}`),
        );
      } finally {
        runner.dispose();
      }
    });
  }
});

describe("CUDA backend, bf16 engines: within bf16 tolerance of HF fp32", { skip }, () => {
  const cache = tempCache();
  after(cache.cleanup);
  for (const name of names) {
    test(name, async () => {
      const expected = JSON.parse(readFileSync(join(FIXTURES, name, "expected.json"), "utf8"));
      const runner = ModelRunner.fromDir(join(FIXTURES, name), {
        backend: "cuda",
        dtype: "bf16",
        cacheDir: cache.dir,
      });
      try {
        for (const c of expected.cases as Case[]) {
          const [first] = await runner.generate(
            { ids: c.promptIds },
            { greedy: true, maxNewTokens: 1, ignoreEos: true },
          );
          if (c.margins[0] >= 0.5) assert.equal(first.outputIds[0], c.outputIds[0], `${name}: first token`);
          for (let t = 0; t < 8; t++) {
            // Teacher forcing: HF's prefix, compare the log-prob of HF's next token.
            const prefix = [...c.promptIds, ...c.outputIds.slice(0, t)];
            const [o] = await runner.generate(
              { ids: prefix },
              { greedy: true, maxNewTokens: 1, ignoreEos: true, returnGenerationLogits: true },
            );
            const logits = o.generationLogits?.[0] as Float32Array;
            let max = Number.NEGATIVE_INFINITY;
            for (const x of logits) max = Math.max(max, x);
            let sum = 0;
            for (const x of logits) sum += Math.exp(x - max);
            const lp = logits[c.outputIds[t]] - max - Math.log(sum);
            assert.ok(
              Math.abs(lp - c.logProbs[t]) <= 0.15,
              `${name} step ${t}: ${lp} vs HF ${c.logProbs[t]}`,
            );
          }
        }
        // Decode steps run RoPE and the KV-cache write inside the decode attention (attention_decode_rope*,
        // the default): the same bits as the separate rope_qkv_fused launch (KILN_ROPE_FUSE=0), graphs on.
        const prompts = (expected.cases as Case[]).map((c) => ({ ids: c.promptIds }));
        const opts = { greedy: true, maxNewTokens: 12, ignoreEos: true };
        assert.equal((runner.session.backend as CudaBackend).tuning.ropeFuse, true);
        const fused = await runner.generate(prompts, opts);
        const apartRunner = ModelRunner.fromDir(join(FIXTURES, name), {
          backend: "cuda",
          dtype: "bf16",
          cacheDir: cache.dir,
          cudaTuning: cudaTuning({ ropeFuse: false }),
        });
        const apart = await apartRunner.generate(prompts, opts).finally(() => apartRunner.dispose());
        fused.forEach((o, i) => {
          assert.deepEqual(o.outputIds, apart[i].outputIds, `${name}: fused RoPE, prompt ${i}`);
          assert.deepEqual(o.logProbs, apart[i].logProbs, `${name}: fused RoPE log-probs, prompt ${i}`);
        });
      } finally {
        runner.dispose();
      }
    });
  }
});

describe("CUDA backend equals the CPU backend (fp32 engine of the bf16 default model)", { skip }, () => {
  test("greedy 32 tokens, two prompts batched, and sampling with a seed", async () => {
    const cache = tempCache();
    const model = fileURLToPath(new URL("../../models/default", import.meta.url));
    const cpu = ModelRunner.fromDir(model, { backend: "cpu", cacheDir: cache.dir });
    const gpu = ModelRunner.fromDir(model, { backend: "cuda", dtype: "fp32", cacheDir: cache.dir });
    try {
      const prompts = ["ROMEO:\n", "To be, or not to be"];
      const opts = { greedy: true, maxNewTokens: 32, ignoreEos: true };
      const a = await cpu.generate(prompts, opts);
      const b = await gpu.generate(prompts, opts);
      assert.deepEqual(
        b.map((o) => o.outputIds),
        a.map((o) => o.outputIds),
      );
      const s = { temperature: 0.8, topK: 50, seed: 7, maxNewTokens: 16, ignoreEos: true };
      assert.deepEqual(
        (await gpu.generate("JULIET:", s))[0].outputIds,
        (await cpu.generate("JULIET:", s))[0].outputIds,
      );
      // Beam search forks KV blocks on the device.
      const beams = { beamWidth: 4, maxNewTokens: 12 };
      assert.deepEqual(
        (await gpu.generate("KING:", beams))[0].outputIds,
        (await cpu.generate("KING:", beams))[0].outputIds,
      );
    } finally {
      cpu.dispose();
      gpu.dispose();
      cache.cleanup();
    }
  });
});

describe("decode attention for many sequences (attention_decode_batch)", { skip }, () => {
  // The default model has 4 kv heads (groups of 2): 4 CTAs per sequence, so 96 sequences give 384 CTAs,
  // at least 2 per SM on any GPU of up to 192 SMs: attention_splits.ts useBatchKernel picks the batch
  // kernel for the bucket of 128 (graphs) and for the 96 rows (eager steps).
  test("96 prompts of mixed lengths: the CPU backend's greedy tokens, graphs on and off", async () => {
    const cache = tempCache();
    const model = fileURLToPath(new URL("../../models/default", import.meta.url));
    const gpuOpts = { backend: "cuda", dtype: "fp32", cacheDir: cache.dir, maxBatchSize: 128 } as const;
    const cpu = ModelRunner.fromDir(model, { backend: "cpu", cacheDir: cache.dir, maxBatchSize: 128 });
    const runners = [
      ModelRunner.fromDir(model, gpuOpts),
      ModelRunner.fromDir(model, { ...gpuOpts, cudaTuning: cudaTuning({ graphs: false }) }),
    ];
    try {
      // Prompts of 1 to ~70 tokens: contexts cross the block size (16) and the kernel's tiles.
      const prompts = Array.from({ length: 96 }, (_, i) => `${"To be, or not ".repeat(i % 12)}${i}`);
      const opts = { greedy: true, maxNewTokens: 12, ignoreEos: true };
      const want = (await cpu.generate(prompts, opts)).map((o) => o.outputIds);
      for (const [i, r] of runners.entries()) {
        const got = (await r.generate(prompts, opts)).map((o) => o.outputIds);
        assert.deepEqual(got, want, ["graphs", "eager"][i]);
      }
    } finally {
      cpu.dispose();
      for (const r of runners) r.dispose();
      cache.cleanup();
    }
  });
});

describe("CUDA graphs and the on-device decoding fast path", { skip }, () => {
  test("graphs on and off agree, replays agree, device sampling equals host sampling", async () => {
    const cache = tempCache();
    const model = fileURLToPath(new URL("../../models/default", import.meta.url));
    const gpu = ModelRunner.fromDir(model, { backend: "cuda", dtype: "fp32", cacheDir: cache.dir });
    // The same engine with graphs off (KILN_CUDA_GRAPHS=0): every step launches its kernels eagerly.
    const eagerGpu = ModelRunner.fromDir(model, {
      backend: "cuda",
      dtype: "fp32",
      cacheDir: cache.dir,
      cudaTuning: cudaTuning({ graphs: false }),
    });
    try {
      const prompts = ["ROMEO:\n", "To be, or not to be", "KING:"];
      const greedy = { greedy: true, maxNewTokens: 24, ignoreEos: true };
      const eager = await eagerGpu.generate(prompts, greedy);
      const first = await gpu.generate(prompts, greedy); // captures
      const replay = await gpu.generate(prompts, greedy); // replays
      for (const run of [first, replay]) {
        run.forEach((o, i) => {
          assert.deepEqual(o.outputIds, eager[i].outputIds, `prompt ${i}`);
          assertLogProbsNear(o.logProbs, eager[i].logProbs, 1e-5, `prompt ${i}`);
        });
      }
      // A pass-through processor forces the host path; the device path must draw the same tokens.
      const passThrough = { process() {} };
      const sample = {
        temperature: 0.9,
        topK: 40,
        topP: 0.95,
        minP: 0.01,
        seed: 3,
        maxNewTokens: 24,
        ignoreEos: true,
      };
      // Pipelined decoding: sequences leave the batch at different steps (stop words, a criteria),
      // so later steps are fed from non-identity rows and change graph buckets (3 → 2 → 1).
      const [g] = await gpu.generate(prompts[0], greedy);
      const staggered = {
        ...sample,
        temperature: 0,
        stopWords: [g.outputIds.slice(5, 7)],
        stoppingCriteria: {
          shouldStop: (q: { promptIndex: number; outputIds: readonly number[] }) =>
            q.promptIndex === 2 && q.outputIds.length >= 11,
        },
      };
      const piped = await gpu.generate(prompts, staggered);
      const unpiped = await gpu.generate(prompts, { ...staggered, logitsProcessors: passThrough });
      assert.deepEqual(
        piped.map((o) => o.outputIds),
        unpiped.map((o) => o.outputIds),
      );
      assert.ok(piped[0].outputIds.length <= 7 && piped[2].outputIds.length <= 11);
      assert.ok(
        new Set(piped.map((o) => o.outputIds.length)).size > 1,
        "sequences should end at different steps",
      );
      const forks = { ...sample, numReturnSequences: 3, maxNewTokens: 12 };
      const pf = await gpu.generate(prompts.slice(0, 2), forks);
      const hf = await gpu.generate(prompts.slice(0, 2), { ...forks, logitsProcessors: passThrough });
      assert.deepEqual(
        pf.map((o) => o.sequences.map((q) => q.outputIds)),
        hf.map((o) => o.sequences.map((q) => q.outputIds)),
      );
      const device = await gpu.generate(prompts, sample);
      const host = await gpu.generate(prompts, { ...sample, logitsProcessors: passThrough });
      device.forEach((o, i) => {
        assert.deepEqual(o.outputIds, host[i].outputIds, `sampled prompt ${i}`);
        assertLogProbsNear(o.logProbs, host[i].logProbs, 1e-4, `sampled prompt ${i}`);
      });
      // Without logit transforms the graph runs the sampler (its settings in the step's metadata, its
      // tokens fed to the next step's embedding): the same draws as eager steps, graphs off. With a
      // repetition penalty the sampler runs after the graph, on the same device path as the host's.
      const eagerSampled = await eagerGpu.generate(prompts, sample);
      device.forEach((o, i) => {
        assert.deepEqual(o.outputIds, eagerSampled[i].outputIds, `graph vs eager, sampled prompt ${i}`);
        assertLogProbsNear(o.logProbs, eagerSampled[i].logProbs, 1e-4, `graph vs eager ${i}`);
      });
      const penalized = { ...sample, repetitionPenalty: 1.3 };
      const pd = await gpu.generate(prompts, penalized);
      const ph = await gpu.generate(prompts, { ...penalized, logitsProcessors: passThrough });
      assert.deepEqual(
        pd.map((o) => o.outputIds),
        ph.map((o) => o.outputIds),
      );
    } finally {
      eagerGpu.dispose();
      gpu.dispose();
      cache.cleanup();
    }
  });
});
