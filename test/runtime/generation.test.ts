// The generation runtime on the bundled model: seeded sampling independent of the batch, several
// returned samples, stop words, user extension points, streaming text, cancellation, logits outputs
// and the padded/packed batch forms.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { RequestTooLargeError } from "../../src/executor/errors.ts";
import { type GenerateOptions, ModelRunner } from "../../src/runtime/model_runner.ts";
import type { LogitsProcessor, StoppingCriteria } from "../../src/sampling/logits_processor.ts";
import { assertLogProbsNear } from "../helpers/log_probs.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const MODEL = fileURLToPath(new URL("../../models/default", import.meta.url));

describe("generation runtime", () => {
  const cache = tempCache();
  const runner = ModelRunner.fromDir(MODEL, { cacheDir: cache.dir });
  after(() => {
    runner.dispose();
    cache.cleanup();
  });
  const sample: GenerateOptions = {
    temperature: 0.9,
    topK: 40,
    topP: 0.95,
    maxNewTokens: 12,
    seed: 42,
    ignoreEos: true,
  };

  test("the same seed gives the same tokens alone and batched with other prompts", async () => {
    const [alone] = await runner.generate("JULIET:\n", sample);
    const batched = await runner.generate(["ROMEO:\n", "JULIET:\n", "First Citizen:\n"], sample);
    assert.deepEqual(batched[1].outputIds, alone.outputIds);
    const other = await runner.generate("JULIET:\n", { ...sample, seed: 43 });
    assert.notDeepEqual(other[0].outputIds, alone.outputIds, "a different seed should change the sample");
  });

  test("per-prompt settings: greedy for one prompt, sampling for the other", async () => {
    const [g] = await runner.generate("ROMEO:\n", { maxNewTokens: 8, greedy: true, ignoreEos: true });
    const both = await runner.generate(["ROMEO:\n", "ROMEO:\n"], {
      ...sample,
      maxNewTokens: 8,
      temperature: [0, 0.9],
    });
    assert.deepEqual(both[0].outputIds, g.outputIds);
  });

  test("numReturnSequences returns independent samples; sample k does not depend on the others", async () => {
    const [out] = await runner.generate("KING:\n", { ...sample, numReturnSequences: 3 });
    assert.equal(out.sequences.length, 3);
    assert.ok(new Set(out.sequences.map((s) => s.outputIds.join(","))).size > 1, "samples should differ");
    const [again] = await runner.generate(["KING:\n", "QUEEN:\n"], { ...sample, numReturnSequences: 3 });
    assert.deepEqual(
      again.sequences.map((s) => s.outputIds),
      out.sequences.map((s) => s.outputIds),
    );
    for (const s of out.sequences) {
      assert.equal(s.logProbs.length, s.outputIds.length);
      assert.ok(Math.abs(s.cumLogProb - s.logProbs.reduce((a, b) => a + b, 0)) < 1e-9);
    }
  });

  test("beam search: batched prompts with per-prompt length penalties equal each alone", async () => {
    const opts = { beamWidth: 3, numReturnSequences: 2, maxNewTokens: 10 };
    const both = await runner.generate(["ROMEO:\n", "My lord,"], {
      ...opts,
      lengthPenalty: [0.5, 2.0],
      earlyStopping: [true, "never"],
    });
    const [a] = await runner.generate("ROMEO:\n", { ...opts, lengthPenalty: 0.5, earlyStopping: true });
    const [b] = await runner.generate("My lord,", { ...opts, lengthPenalty: 2.0, earlyStopping: "never" });
    assert.deepEqual(
      both[0].sequences.map((s) => s.outputIds),
      a.sequences.map((s) => s.outputIds),
    );
    assert.deepEqual(
      both[1].sequences.map((s) => s.outputIds),
      b.sequences.map((s) => s.outputIds),
    );
    assert.deepEqual(
      both[1].sequences.map((s) => s.score),
      b.sequences.map((s) => s.score),
    );
  });

  test("concurrent generate calls on one runner run in flight together and give the same results", async () => {
    const a = { ...sample, seed: 1 };
    const b = { ...sample, seed: 2, numReturnSequences: 2 };
    const [ra, rb] = await Promise.all([
      runner.generate("ROMEO:\n", a),
      runner.generate(["JULIET:\n", "KING:"], b),
    ]);
    assert.deepEqual(ra[0].outputIds, (await runner.generate("ROMEO:\n", a))[0].outputIds);
    const again = await runner.generate(["JULIET:\n", "KING:"], b);
    assert.deepEqual(
      rb.map((o) => o.sequences.map((q) => q.outputIds)),
      again.map((o) => o.sequences.map((q) => q.outputIds)),
    );
  });

  test("chunked prefill (prompts longer than the backend's step) equals one-shot prefill", async () => {
    const prompts = [
      "ROMEO:\nWhat light through yonder window breaks? It is the east,",
      "KING:",
      "To be, or not to be: that is the question",
    ];
    const opts = [
      { greedy: true, maxNewTokens: 8, ignoreEos: true },
      { ...sample, numReturnSequences: 2, maxNewTokens: 8 },
      { beamWidth: 3, maxNewTokens: 8 },
    ];
    const want: Awaited<ReturnType<typeof runner.generate>>[] = [];
    for (const o of opts) want.push(await runner.generate(prompts, o));
    // A runner of its own whose executor starts with a budget of 7 tokens per step.
    const small = ModelRunner.fromEngine(runner.engine.dir);
    Object.defineProperty(small.session.backend, "maxStepTokens", { value: 7, configurable: true });
    try {
      for (let i = 0; i < opts.length; i++) {
        const got = await small.generate(prompts, opts[i]);
        got.forEach((o, p) => {
          assert.deepEqual(
            o.sequences.map((q) => q.outputIds),
            want[i][p].sequences.map((q) => q.outputIds),
            `options ${i} prompt ${p}`,
          );
          assertLogProbsNear(
            o.sequences[0].logProbs,
            want[i][p].sequences[0].logProbs,
            1e-4,
            `options ${i} prompt ${p}`,
          );
        });
      }
      const s = small.generation.stats();
      assert.ok(s && s.numContextTokens > 0 && s.numIterations > 3, "the prompts ran in chunks");
    } finally {
      await small.close();
    }
  });

  test("topK 1 equals greedy", async () => {
    const [g] = await runner.generate("ROMEO:\n", { maxNewTokens: 10, greedy: true, ignoreEos: true });
    const [k] = await runner.generate("ROMEO:\n", {
      maxNewTokens: 10,
      temperature: 1.7,
      topK: 1,
      seed: 5,
      ignoreEos: true,
    });
    assert.deepEqual(k.outputIds, g.outputIds);
  });

  test("stop words: text stops with finishReason stop and is cut before the stop string", async () => {
    const [g] = await runner.generate("ROMEO:\n", { maxNewTokens: 40, greedy: true, ignoreEos: true });
    // Stop at a word the greedy text contains (not at its start).
    const word = g.text.trim().split(/\s+/)[2];
    assert.ok(word, `greedy text too short: ${JSON.stringify(g.text)}`);
    const [s] = await runner.generate("ROMEO:\n", {
      maxNewTokens: 40,
      greedy: true,
      ignoreEos: true,
      stopWords: [word],
    });
    assert.equal(s.finishReason, "stop");
    assert.equal(s.text, g.text.slice(0, g.text.indexOf(word)));
    // Token-id stop words end right after the matching tokens.
    const ids = g.outputIds.slice(3, 5);
    const [t] = await runner.generate("ROMEO:\n", {
      maxNewTokens: 40,
      greedy: true,
      ignoreEos: true,
      stopWords: [ids],
    });
    assert.equal(t.finishReason, "stop");
    assert.deepEqual(t.outputIds, g.outputIds.slice(0, 5));
  });

  test("max length: finishReason length after maxNewTokens", async () => {
    const [o] = await runner.generate("ROMEO:\n", { maxNewTokens: 5, greedy: true, ignoreEos: true });
    assert.equal(o.outputIds.length, 5);
    assert.equal(o.finishReason, "length");
  });

  test("a user StoppingCriteria and LogitsProcessor are applied", async () => {
    const stopAfter3: StoppingCriteria = { shouldStop: (s) => s.outputIds.length >= 3 };
    const [o] = await runner.generate("ROMEO:\n", {
      maxNewTokens: 20,
      greedy: true,
      stoppingCriteria: stopAfter3,
    });
    assert.equal(o.outputIds.length, 3);
    assert.equal(o.finishReason, "stop");
    const onlyEven: LogitsProcessor = {
      process(logits, V) {
        for (let i = 1; i < logits.length; i += 2) logits[i] = Number.NEGATIVE_INFINITY;
        assert.equal(logits.length % V, 0);
      },
    };
    const [e] = await runner.generate("ROMEO:\n", { ...sample, logitsProcessors: [onlyEven] });
    assert.ok(
      e.outputIds.every((id) => id % 2 === 0),
      `${e.outputIds}`,
    );
  });

  test("streaming yields exactly the final text, including multi-byte characters split across tokens", async () => {
    const tok = runner.tokenizer;
    const target = tok.encode("héllo € 😀 日本", { addSpecialTokens: false }).ids;
    // Force the byte-level tokens of the target one by one (the emoji is several byte tokens).
    const force: LogitsProcessor = {
      process(logits, V, seqs) {
        seqs.forEach((s, r) => {
          const want = target[s.outputIds.length];
          for (let i = 0; i < V; i++) if (i !== want) logits[r * V + i] = Number.NEGATIVE_INFINITY;
        });
      },
    };
    let streamed = "";
    const opts: GenerateOptions = {
      greedy: true,
      maxNewTokens: target.length,
      logitsProcessors: force,
      ignoreEos: true,
    };
    for await (const ev of runner.stream("ROMEO:", opts)) streamed += ev.text;
    const [final] = await runner.generate("ROMEO:", opts);
    assert.deepEqual(final.outputIds, target);
    assert.equal(final.text, "héllo € 😀 日本");
    assert.equal(streamed, final.text);
  });

  test("an AbortSignal cancels generation and frees its KV blocks", async () => {
    const ac = new AbortController();
    let n = 0;
    await assert.rejects(async () => {
      for await (const _ of runner.stream("ROMEO:\n", { ...sample, maxNewTokens: 50, signal: ac.signal })) {
        if (++n === 2) ac.abort();
      }
    }, /abort/i);
    const [o] = await runner.generate("ROMEO:\n", { ...sample, maxNewTokens: 4 });
    assert.equal(o.outputIds.length, 4);
  });

  test("context and generation logits", async () => {
    const [o] = await runner.generate("ROMEO:\n", {
      greedy: true,
      maxNewTokens: 3,
      ignoreEos: true,
      returnContextLogits: true,
      returnGenerationLogits: true,
    });
    const V = runner.session.config.model.vocabSize;
    assert.equal(o.contextLogits?.length, o.promptIds.length * V);
    assert.equal(o.generationLogits?.[0].length, 3 * V);
    // The first generation step's logits are the last prompt position's.
    const last = o.contextLogits!.subarray((o.promptIds.length - 1) * V);
    const first = o.generationLogits![0].subarray(0, V);
    for (let i = 0; i < V; i += 97) assert.ok(Math.abs(last[i] - first[i]) < 1e-6);
    // Greedy picks the argmax of each step's logits.
    const g = o.generationLogits![0];
    for (let t = 0; t < 3; t++) {
      const row = g.subarray(t * V, (t + 1) * V);
      assert.equal(row.indexOf(Math.max(...row)), o.outputIds[t]);
    }
  });

  test("padded and packed batches equal the list form", async () => {
    const a = runner.encode("ROMEO:\n");
    const b = runner.encode("To be, or not");
    const opts: GenerateOptions = { greedy: true, maxNewTokens: 6, ignoreEos: true };
    const list = await runner.generate([{ ids: a }, { ids: b }], opts);
    const pad = 2;
    const width = Math.max(a.length, b.length);
    const padded = await runner.generate(
      {
        padded: [
          [...a, ...Array(width - a.length).fill(pad)],
          [...Array(width - b.length).fill(pad), ...b],
        ],
        padId: pad,
      },
      opts,
    );
    const packed = await runner.generate({ packed: [...a, ...b], lengths: [a.length, b.length] }, opts);
    for (const out of [padded, packed])
      assert.deepEqual(
        out.map((o) => o.outputIds),
        list.map((o) => o.outputIds),
      );
  });

  test("top-p decay narrows to greedy once topP reaches topPMin", async () => {
    const opts: GenerateOptions = {
      temperature: 1,
      topP: 0.9,
      topPDecay: 0.01,
      topPMin: 1e-6,
      seed: 3,
      maxNewTokens: 8,
      ignoreEos: true,
    };
    const [o] = await runner.generate("ROMEO:\n", opts);
    const prompt = runner.encode("ROMEO:\n");
    for (const t of [3, 5, 7]) {
      const [g] = await runner.generate(
        { ids: [...prompt, ...o.outputIds.slice(0, t)] },
        { greedy: true, maxNewTokens: 1, ignoreEos: true },
      );
      assert.equal(o.outputIds[t], g.outputIds[0], `step ${t}`);
    }
  });

  test("a KV cache larger than device memory is a clear error, not an out-of-memory crash", async () => {
    // A runner of its own: the cache is sized once, at the first request, from what the backend reports.
    const r = ModelRunner.fromEngine(runner.engine.dir);
    try {
      const backend = r.session.backend;
      backend.freeMemoryBytes = () => 3 * backend.kvBytesPerBlock;
      assert.deepEqual(r.generation.allocatePool(), {
        numBlocks: 2, // 0.9 of the 3 blocks that fit
        blockSize: backend.kvBlockSize,
        tokens: 2 * backend.kvBlockSize,
        bytes: 2 * backend.kvBytesPerBlock,
        limitedBy: "free-memory",
        dtype: "auto",
        freeBlocks: 3,
      });
      await assert.rejects(
        r.generate("ROMEO:\n", { greedy: true, maxNewTokens: 64 }),
        (e: unknown) =>
          e instanceof RequestTooLargeError &&
          /the KV cache holds 2 blocks/.test(e.message) &&
          /--kv-cache-free-gpu-mem-fraction/.test(e.message),
      );
    } finally {
      await r.close();
    }
  });

  test("GenerationSession.decode runs id prompts; its pool and stats view the executor's KV cache", async () => {
    const gs = runner.generation;
    const outs = await gs.decode([runner.encode("ROMEO:\n")], { temperature: 0, maxNewTokens: 4, endId: [] });
    assert.equal(outs[0].sequences[0].outputIds.length, 4);
    const kv = gs.stats()?.kv;
    assert.equal(kv?.numBlocks, gs.pool?.numBlocks);
    assert.equal(kv?.numUsed, 0, "every block is back once the request finished");
  });
});
