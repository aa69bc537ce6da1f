// Pipelined decoding (ExecutionBackend.enqueueSample): the session queues step N+1, fed with step N's
// tokens "on the device", before it reads them. The CPU backend's own queue is hidden (hostPath) so
// that "plain" runs take the unpipelined host path; the tests install a host emulation of the CUDA
// backend's queue that counts what it is asked (the fed tokens are copied from the earlier ticket's
// results, never from the host's sequences, so a wrong feed row or a step built on the placeholder
// token changes the output). Every configuration must give exactly what the host path gives, and the
// CPU backend's own queue too.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { ExecutionBackend, SampleTicket, StepInput } from "../../src/backends/backend.ts";
import type { SampleParams, StepTransforms } from "../../src/backends/decoding_ops.ts";
import { NonFiniteLogitsError, StreamIdleTimeoutError } from "../../src/runtime/errors.ts";
import { type GenerateOptions, ModelRunner } from "../../src/runtime/model_runner.ts";
import type { StepOutput } from "../../src/runtime/outputs.ts";
import type { StoppingCriteria } from "../../src/sampling/logits_processor.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const MODEL = fileURLToPath(new URL("../../models/default", import.meta.url));

type Result = { tokens: Int32Array; logProbs: Float32Array };

/** Installs forwardSample/enqueueSample/collectSample on a host backend; returns counters and an uninstall.
 * It holds the runtime to the CUDA sampler's rules (device_sampler.ts): tickets are collected once, in
 * queue order; a step is fed only from the last queued ticket, by rows of it; a ticket is queued only
 * once the one two before it was collected (its output slot is reused); no position reaches the
 * context window `maxSeqLen` (the device's rope table and block tables end there). `poison(ticket)`
 * names rows whose log-prob reads NaN, as non-finite logits make it on the device. */
function emulateDeviceQueue(
  backend: ExecutionBackend,
  maxSeqLen: number,
  poison: (ticket: number) => readonly number[] = () => [],
) {
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
      assert.equal(feed.from.id, next - 1, "a step is fed from the last queued ticket");
      assert.equal(feed.rows.length, step.seqs.length);
      for (const r of feed.rows) assert.ok(r >= 0 && r < feed.from.rows, `fed row ${r} of ${feed.from.rows}`);
      const tokenIds = Int32Array.from(step.tokenIds);
      step.seqs.forEach((q, i) => {
        assert.equal(q.queryLen, 1, "a fed step is a decode step");
        tokenIds[q.queryStart] = src.tokens[feed.rows[i]];
      });
      s = { ...step, tokenIds };
      stats.fed++;
    }
    assert.ok(stats.queued - stats.collected <= 1, "a third ticket queued before the first was collected");
    for (const pos of step.positions) assert.ok(pos < maxSeqLen, `position ${pos} ≥ maxSeqLen ${maxSeqLen}`);
    const B = step.logitRows.length;
    const logits = backend.forward(s).slice();
    if (t.bias) backend.decoding.addBias(logits, B, V, t.bias);
    if (t.penalties) backend.decoding.applyPenalties(logits, B, V, t.penalties);
    if (t.banned) backend.decoding.banTokens(logits, B, V, t.banned);
    const id = next++;
    const sampled = backend.decoding.sample(logits, B, V, p);
    for (const r of poison(id)) sampled.logProbs[r] = Number.NaN;
    results.set(id, sampled);
    stats.queued++;
    stats.maxOutstanding = Math.max(stats.maxOutstanding, stats.queued - stats.collected);
    return { id, rows: B };
  };
  const collect = (ticket: SampleTicket): Result => {
    const r = results.get(ticket.id);
    assert.ok(r, `ticket ${ticket.id} collected twice or never queued`);
    assert.equal(ticket.id, stats.collected, "tickets are collected in queue order");
    // Keep the result for one more step: the next ticket may still be fed from it.
    for (const k of results.keys()) if (k < ticket.id) results.delete(k);
    stats.collected++;
    return r;
  };
  const restore = install(backend, {
    enqueueSample: enqueue,
    collectSample: collect,
    forwardSample: (step: StepInput, p: SampleParams, t: StepTransforms) => collect(enqueue(step, p, t)),
  });
  return { stats, outstanding: () => stats.queued - stats.collected, uninstall: restore };
}

const QUEUE = ["enqueueSample", "collectSample", "forwardSample"] as const;

/** Sets the backend's queue methods as own properties; returns what puts the previous ones back. */
function install(backend: ExecutionBackend, methods: Record<(typeof QUEUE)[number], unknown>): () => void {
  const b = backend as unknown as Record<string, unknown>;
  const before = QUEUE.map((k) => Object.getOwnPropertyDescriptor(b, k));
  for (const k of QUEUE) b[k] = methods[k];
  return () =>
    QUEUE.forEach((k, i) => {
      const d = before[i];
      if (d) Object.defineProperty(b, k, d);
      else delete b[k];
    });
}

/** Hides the backend's own queue (the CPU backend's), so it runs the host path. */
function hostPath(runner: ModelRunner): () => void {
  return install(runner.session.backend, {
    enqueueSample: undefined,
    collectSample: undefined,
    forwardSample: undefined,
  });
}

describe("pipelined decoding", () => {
  const cache = tempCache();
  const runner = ModelRunner.fromDir(MODEL, { cacheDir: cache.dir });
  hostPath(runner);
  after(() => {
    runner.dispose();
    cache.cleanup();
  });
  const prompts = ["ROMEO:\n", "JULIET:\nO ", "First Citizen:\nBefore we proceed"];

  /** Plain host path vs the emulated device queue, same inputs. */
  async function both(input: string | string[], o: GenerateOptions) {
    const plain = await runner.generate(input, o);
    const emu = emulateDeviceQueue(runner.session.backend, runner.generation.maxSeqLen);
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

  test("the CPU backend's own queue (fed from its stored tickets) gives the host path's outputs", async () => {
    const configs: GenerateOptions[] = [
      { greedy: true, maxNewTokens: 14, ignoreEos: true },
      {
        temperature: 0.8,
        topK: 30,
        topP: 0.9,
        seed: 7,
        maxNewTokens: 10,
        ignoreEos: true,
        numReturnSequences: 3,
      },
      { greedy: true, maxNewTokens: 20, stopWords: [[13]], minLength: 3 },
      { greedy: true, maxNewTokens: 8, ignoreEos: true, repetitionPenalty: 1.3 },
    ];
    const plain = [];
    for (const o of configs) plain.push(strip(await runner.generate(prompts, o)));
    const backend = runner.session.backend;
    let queued = 0;
    const enqueue = Object.getPrototypeOf(backend).enqueueSample;
    const hide = install(backend, {
      enqueueSample: (...a: Parameters<NonNullable<ExecutionBackend["enqueueSample"]>>) => {
        queued++;
        return enqueue.apply(backend, a);
      },
      collectSample: Object.getPrototypeOf(backend).collectSample,
      forwardSample: Object.getPrototypeOf(backend).forwardSample,
    });
    try {
      for (const [i, o] of configs.entries())
        assert.deepEqual(strip(await runner.generate(prompts, o)), plain[i], JSON.stringify(o));
    } finally {
      hide();
    }
    assert.ok(queued > 0, "the runtime used the CPU backend's queue");
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
    const emu = emulateDeviceQueue(runner.session.backend, runner.generation.maxSeqLen);
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

  /** Every step a stream yields (events in order, text deltas) and what it returns. */
  async function stepsOf(input: string | string[], o: GenerateOptions) {
    const it = runner.steps(input, o);
    const steps: StepOutput[] = [];
    for (;;) {
      const r = await it.next();
      if (r.done) return { steps, result: r.value };
      steps.push(r.value);
    }
  }

  test("samples forked at step 0 that end at different steps (token and text stop words, a criterion) stream the same events", async () => {
    const base = {
      temperature: 0.8,
      topK: 30,
      seed: 11,
      maxNewTokens: 16,
      ignoreEos: true,
      numReturnSequences: 3,
    };
    const two = prompts.slice(0, 2);
    const free = await runner.generate(two, base);
    // A token stop word from one sample, a text stop word from another, a criterion for a third.
    const stopIds = free[0].sequences[1].outputIds.slice(3, 5);
    const text = free[1].sequences[0].text;
    const stopText = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    const third: StoppingCriteria = {
      shouldStop: (q) => q.promptIndex === 0 && q.sequenceIndex === 2 && q.outputIds.length >= 6,
    };
    const o: GenerateOptions = { ...base, stopWords: [stopIds, stopText], stoppingCriteria: third };
    const plain = await stepsOf(two, o);
    const emu = emulateDeviceQueue(runner.session.backend, runner.generation.maxSeqLen);
    let piped: Awaited<ReturnType<typeof stepsOf>>;
    try {
      piped = await stepsOf(two, o);
    } finally {
      emu.uninstall();
    }
    assert.deepEqual(piped.steps, plain.steps);
    assert.deepEqual(piped.result, plain.result);
    const lens = plain.result.flatMap((r) => r.sequences.map((q) => q.outputIds.length));
    assert.ok(
      lens.some((n) => n < 16) && lens.some((n) => n === 16),
      `samples end at different steps: ${lens}`,
    );
    assert.ok(plain.result.some((r) => r.sequences.some((q) => q.finishReason === "stop")));
    assert.ok(emu.stats.fed > 0);
    assert.equal(emu.outstanding(), 0);
  });

  test("a sequence at the context window leaves while the others go on", async () => {
    const short = ModelRunner.fromDir(MODEL, { cacheDir: cache.dir, maxSeqLen: 40 });
    hostPath(short);
    try {
      const long = { ids: Array.from({ length: 35 }, (_, i) => 3 + (i % 50)) };
      const batch = [long, { ids: [3, 4, 5] }];
      const o: GenerateOptions = { greedy: true, maxNewTokens: 12, ignoreEos: true };
      const plain = await short.generate(batch, o);
      const emu = emulateDeviceQueue(short.session.backend, short.generation.maxSeqLen);
      try {
        const piped = await short.generate(batch, o);
        assert.deepEqual(strip(piped), strip(plain));
        assert.deepEqual(
          piped.map((p) => [p.outputIds.length, p.finishReason]),
          [
            [5, "length"],
            [12, "length"],
          ],
        );
        assert.ok(emu.stats.fed > 0);
        assert.equal(emu.outstanding(), 0);
        // Alone, no step is queued after its last token: the window ends there.
        const queued = emu.stats.queued;
        const [alone] = await short.generate(long, o);
        assert.deepEqual(alone.outputIds, plain[0].outputIds);
        assert.equal(emu.stats.queued - queued, 5, "one step per token");
        assert.equal(emu.outstanding(), 0);
      } finally {
        emu.uninstall();
      }
    } finally {
      short.dispose();
    }
  });

  test("an abort after a forked sample finished leaves nothing queued; the next call is exact", async () => {
    const emu = emulateDeviceQueue(runner.session.backend, runner.generation.maxSeqLen);
    try {
      const ac = new AbortController();
      const first: StoppingCriteria = { shouldStop: (q) => q.sequenceIndex === 0 && q.outputIds.length >= 2 };
      let n = 0;
      await assert.rejects(async () => {
        for await (const e of runner.stream(prompts.slice(0, 2), {
          temperature: 0.8,
          seed: 5,
          maxNewTokens: 30,
          ignoreEos: true,
          numReturnSequences: 2,
          stoppingCriteria: first,
          signal: ac.signal,
        })) {
          if (e.promptIndex === 1 && e.sequenceIndex === 1 && ++n === 4) ac.abort();
        }
      }, /abort/i);
      assert.ok(emu.stats.fed > 0);
      assert.equal(emu.outstanding(), 0);
      const o = { temperature: 0.8, seed: 9, maxNewTokens: 6, ignoreEos: true, numReturnSequences: 2 };
      const after = await runner.generate(prompts[2], o);
      emu.uninstall();
      assert.deepEqual(strip(after), strip(await runner.generate(prompts[2], o)));
    } finally {
      emu.uninstall();
    }
  });

  test("non-finite logits on a fed step raise NonFiniteLogitsError naming the row's sequence; nothing stays queued", async () => {
    // Ticket 3 is step 3 of 2 prompts × 2 samples; its row 2 is prompt 1, sample 0.
    const emu = emulateDeviceQueue(runner.session.backend, runner.generation.maxSeqLen, (t) =>
      t === 3 ? [2] : [],
    );
    try {
      const o = { temperature: 0.8, seed: 5, maxNewTokens: 10, ignoreEos: true, numReturnSequences: 2 };
      await assert.rejects(
        runner.generate(prompts.slice(0, 2), o),
        (e: unknown) =>
          e instanceof NonFiniteLogitsError && e.step === 3 && e.promptIndex === 1 && e.sequenceIndex === 0,
      );
      assert.equal(emu.stats.fed, 4, "steps 1..4 were fed: step 4 was queued before step 3 was read");
      assert.equal(emu.outstanding(), 0);
    } finally {
      emu.uninstall();
    }
  });

  test("a stream cancelled by the idle limit, or by close(), leaves nothing queued", async () => {
    const idle = ModelRunner.fromDir(MODEL, { cacheDir: cache.dir, streamIdleTimeoutMs: 50 });
    hostPath(idle);
    const emu = emulateDeviceQueue(idle.session.backend, idle.generation.maxSeqLen);
    const o = { greedy: true, maxNewTokens: 20, ignoreEos: true };
    try {
      const abandoned = idle.stream(prompts[0], o);
      await abandoned.next(); // then never read again
      const [out] = await idle.generate(prompts[1], { ...o, maxNewTokens: 5 });
      await assert.rejects(abandoned.next(), StreamIdleTimeoutError);
      assert.equal(out.outputIds.length, 5);
      assert.ok(emu.stats.fed > 0);
      assert.equal(emu.outstanding(), 0);
      // close() while a stream holds a queued step: the step is read before the memory is freed.
      const it = idle.stream(prompts[2], o);
      await it.next();
      let atDispose = -1;
      const backend = idle.session.backend as ExecutionBackend & { dispose: () => void };
      const dispose = backend.dispose.bind(backend);
      backend.dispose = () => {
        atDispose = emu.outstanding();
        dispose();
      };
      await idle.close();
      assert.equal(atDispose, 0);
    } finally {
      emu.uninstall();
      idle.dispose();
    }
  });
});
