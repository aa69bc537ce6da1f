// Pipelined decoding (ExecutionBackend.enqueueSample): the session queues step N+1, fed with step N's
// tokens "on the device", before it reads them. The CPU backend gets a host emulation of the CUDA
// backend's queue (the fed tokens are copied from the earlier ticket's results, never from the host's
// sequences, so a wrong feed row or a step built on the placeholder token changes the output). Every
// configuration must give exactly what the unpipelined host path gives.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { ExecutionBackend, SampleTicket, StepInput } from "../../src/backends/backend.ts";
import type { SampleParams, StepTransforms } from "../../src/backends/decoding_ops.ts";
import { type GenerateOptions, ModelRunner } from "../../src/runtime/model_runner.ts";
import type { StoppingCriteria } from "../../src/sampling/logits_processor.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const MODEL = fileURLToPath(new URL("../../models/default", import.meta.url));

type Result = { tokens: Int32Array; logProbs: Float32Array };

/** Installs forwardSample/enqueueSample/collectSample on a host backend; returns counters and an uninstall. */
function emulateDeviceQueue(backend: ExecutionBackend) {
  const results = new Map<number, Result>();
  const stats = { queued: 0, fed: 0, collected: 0, maxOutstanding: 0 };
  let next = 0;
  const V = backend.vocabSize;
  const enqueue = (
    step: StepInput,
    p: SampleParams,
    t: StepTransforms,
    feed?: { from: SampleTicket; rows: Int32Array },
  ): SampleTicket => {
    let s = step;
    if (feed) {
      const src = results.get(feed.from.id);
      assert.ok(src, `fed from ticket ${feed.from.id}, which is gone`);
      assert.equal(feed.rows.length, step.seqs.length);
      const tokenIds = Int32Array.from(step.tokenIds);
      step.seqs.forEach((q, i) => {
        assert.equal(q.queryLen, 1, "a fed step is a decode step");
        tokenIds[q.queryStart] = src.tokens[feed.rows[i]];
      });
      s = { ...step, tokenIds };
      stats.fed++;
    }
    const B = step.logitRows.length;
    const logits = backend.forward(s).slice();
    if (t.bias) backend.decoding.addBias(logits, B, V, t.bias);
    if (t.penalties) backend.decoding.applyPenalties(logits, B, V, t.penalties);
    if (t.banned) backend.decoding.banTokens(logits, B, V, t.banned);
    const id = next++;
    results.set(id, backend.decoding.sample(logits, B, V, p));
    stats.queued++;
    stats.maxOutstanding = Math.max(stats.maxOutstanding, stats.queued - stats.collected);
    return { id, rows: B };
  };
  const collect = (ticket: SampleTicket): Result => {
    const r = results.get(ticket.id);
    assert.ok(r, `ticket ${ticket.id} collected twice or never queued`);
    // Keep the result for one more step: the next ticket may still be fed from it.
    for (const k of results.keys()) if (k < ticket.id) results.delete(k);
    stats.collected++;
    return r;
  };
  const b = backend as ExecutionBackend & Record<string, unknown>;
  b.enqueueSample = enqueue;
  b.collectSample = collect;
  b.forwardSample = (step: StepInput, p: SampleParams, t: StepTransforms) => collect(enqueue(step, p, t));
  return {
    stats,
    outstanding: () => stats.queued - stats.collected,
    uninstall: () => {
      delete b.enqueueSample;
      delete b.collectSample;
      delete b.forwardSample;
    },
  };
}

describe("pipelined decoding", () => {
  const cache = tempCache();
  const runner = ModelRunner.fromDir(MODEL, { cacheDir: cache.dir });
  after(() => {
    runner.dispose();
    cache.cleanup();
  });
  const prompts = ["ROMEO:\n", "JULIET:\nO ", "First Citizen:\nBefore we proceed"];

  /** Plain host path vs the emulated device queue, same inputs. */
  async function both(input: string | string[], o: GenerateOptions) {
    const plain = await runner.generate(input, o);
    const emu = emulateDeviceQueue(runner.session.backend);
    try {
      const piped = await runner.generate(input, o);
      return { plain, piped, stats: emu.stats, outstanding: emu.outstanding() };
    } finally {
      emu.uninstall();
    }
  }

  const strip = (outs: Awaited<ReturnType<ModelRunner["generate"]>>) =>
    outs.map((o) =>
      o.sequences.map((s) => ({ ids: s.outputIds, lp: s.logProbs, why: s.finishReason, text: s.text })),
    );

  test("greedy, batched: the same tokens, log-probs and texts; steps after the first are fed on the device", async () => {
    const o = { greedy: true, maxNewTokens: 14, ignoreEos: true };
    const { plain, piped, stats, outstanding } = await both(prompts, o);
    assert.deepEqual(strip(piped), strip(plain));
    // 14 tokens: step 0 from the prompt, steps 1..13 queued ahead and fed.
    assert.equal(stats.queued, 14);
    assert.equal(stats.fed, 13);
    assert.equal(stats.maxOutstanding, 2);
    assert.equal(outstanding, 0);
  });

  test("seeded sampling with several samples per prompt (forked sequences)", async () => {
    const o = {
      temperature: 0.8,
      topK: 30,
      topP: 0.9,
      seed: 7,
      maxNewTokens: 10,
      ignoreEos: true,
      numReturnSequences: 3,
    };
    const { plain, piped, stats } = await both(prompts.slice(0, 2), o);
    assert.deepEqual(strip(piped), strip(plain));
    assert.ok(stats.fed > 0);
  });

  test("sequences that finish at different steps (stop words, a StoppingCriteria, min length) leave the batch cleanly", async () => {
    const [g] = await runner.generate(prompts[0], { greedy: true, maxNewTokens: 20, ignoreEos: true });
    const stopAt = g.outputIds.slice(4, 6);
    const stopSecond: StoppingCriteria = {
      shouldStop: (s) => s.promptIndex === 1 && s.outputIds.length >= 7,
    };
    const o: GenerateOptions = {
      greedy: true,
      maxNewTokens: 20,
      stopWords: [stopAt],
      stoppingCriteria: stopSecond,
      minLength: 3,
    };
    const { plain, piped, stats, outstanding } = await both(prompts, o);
    assert.deepEqual(strip(piped), strip(plain));
    const lens = strip(piped).map((p) => p[0].ids.length);
    assert.equal(lens[0], 6, "prompt 0 ends at its stop word");
    assert.equal(lens[1], 7, "prompt 1 ends at the StoppingCriteria");
    assert.ok(stats.fed > 0);
    assert.equal(outstanding, 0, "the step queued ahead of the last finish is collected");
  });

  test("configurations whose next step depends on the token run unpipelined, and still match", async () => {
    for (const o of [
      { greedy: true, maxNewTokens: 8, ignoreEos: true, repetitionPenalty: 1.3 },
      { greedy: true, maxNewTokens: 8, ignoreEos: true, noRepeatNgramSize: 2 },
      { temperature: 0.9, seed: 3, maxNewTokens: 8, ignoreEos: true, topPDecay: 0.9, topP: 0.9 },
    ] satisfies GenerateOptions[]) {
      const { plain, piped, stats } = await both(prompts.slice(0, 2), o);
      assert.deepEqual(strip(piped), strip(plain), JSON.stringify(o));
      assert.equal(stats.fed, 0, `${JSON.stringify(o)} must not be fed`);
      assert.equal(stats.queued, 8);
    }
  });

  test("an aborted pipelined generation leaves nothing queued; the next call is exact", async () => {
    const emu = emulateDeviceQueue(runner.session.backend);
    try {
      const ac = new AbortController();
      let n = 0;
      await assert.rejects(async () => {
        for await (const _ of runner.stream(prompts[0], {
          greedy: true,
          maxNewTokens: 30,
          signal: ac.signal,
        })) {
          if (++n === 3) ac.abort();
        }
      }, /abort/i);
      assert.equal(emu.outstanding(), 0);
      const [after] = await runner.generate(prompts[1], { greedy: true, maxNewTokens: 6, ignoreEos: true });
      emu.uninstall();
      const [plain] = await runner.generate(prompts[1], { greedy: true, maxNewTokens: 6, ignoreEos: true });
      assert.deepEqual(after.outputIds, plain.outputIds);
    } finally {
      emu.uninstall();
    }
  });
});
