// A runner's lifetime over its executor, on a tiny engine: requests after or during dispose() reject
// with RunnerDisposedError and dispose() waits for those in flight; concurrent calls run in the same
// iterations, each as it would alone, and one's abort leaves the other be; an abandoned stream cannot
// hold the KV cache that waiting requests need (it is cancelled once one has waited
// streamIdleTimeoutMs); a queued request rejects the moment its AbortSignal fires.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { RunnerDisposedError, StreamIdleTimeoutError } from "../../src/runtime/errors.ts";
import { type GenerateOptions, ModelRunner } from "../../src/runtime/model_runner.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";

/** Resolves with the promise's outcome, or rejects once `ms` have passed (a hang fails the test). */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

describe("runner lifetimes", () => {
  const model = writeTinyModel("llama", 5);
  after(model.cleanup);
  const dir = join(model.dir, "engine");
  buildEngine(model.dir, dir, { kvBlockSize: 4 });
  const prompt = { ids: [5, 6, 7] };
  const long: GenerateOptions = { greedy: true, maxNewTokens: 40, ignoreEos: true };

  test("generate, stream and steps after dispose() reject with RunnerDisposedError", async () => {
    const runner = ModelRunner.fromEngine(dir);
    runner.dispose();
    runner.dispose(); // twice is fine
    await assert.rejects(runner.generate(prompt, long), RunnerDisposedError);
    await assert.rejects(runner.stream(prompt, long).next(), RunnerDisposedError);
    await assert.rejects(runner.generation.decode([prompt.ids]), RunnerDisposedError);
    assert.throws(() => runner.generation.allocatePool(), RunnerDisposedError);
    await runner.close();
  });

  test("dispose() during generate cancels it at its next step; close() waits for it", async () => {
    const runner = ModelRunner.fromEngine(dir);
    let steps = 0;
    const running = runner.generate(prompt, {
      ...long,
      stoppingCriteria: {
        shouldStop: () => {
          if (++steps === 3) runner.dispose();
          return false;
        },
      },
    });
    await assert.rejects(running, RunnerDisposedError);
    assert.equal(steps, 3, "the request stops at the step after dispose()");
    await within(2000, runner.close(), "close()");
  });

  test("close() during a stream that is read on cancels it and frees the runner", async () => {
    const runner = ModelRunner.fromEngine(dir);
    const it = runner.stream(prompt, long);
    await it.next();
    const closed = runner.close();
    await assert.rejects(it.next(), RunnerDisposedError);
    await within(2000, closed, "close()");
  });

  test("dispose() with two calls in flight rejects both and frees the runner", async () => {
    const runner = ModelRunner.fromEngine(dir);
    const it = runner.stream(prompt, long);
    await it.next(); // in flight, not read further
    const other = runner.generate({ ids: [9, 8] }, long);
    assert.ok(runner.generation.busy, "both requests are in the executor");
    const closed = runner.close();
    assert.ok(runner.generation.closed);
    await within(500, assert.rejects(other, RunnerDisposedError), "the other call");
    await within(2000, closed, "close() with an unread stream");
    await assert.rejects(it.next(), RunnerDisposedError);
    await assert.rejects(runner.generate(prompt, long), RunnerDisposedError);
    assert.equal(runner.generation.busy, false, "nothing runs once close() resolved");
  });

  test("two concurrent generate calls run in the same iterations, each as it would alone", async () => {
    const runner = ModelRunner.fromEngine(dir);
    after(() => runner.dispose());
    const a: GenerateOptions = { ...long, maxNewTokens: 12 };
    const b: GenerateOptions = {
      temperature: 0.8,
      seed: 7,
      maxNewTokens: 12,
      ignoreEos: true,
      numReturnSequences: 2,
    };
    const iterations = () => runner.generation.stats()?.numIterations ?? 0;
    const [soloA] = await runner.generate(prompt, a);
    const i0 = iterations();
    const soloB = await runner.generate([{ ids: [9, 8] }, { ids: [4] }], b);
    const i1 = iterations();
    const [ra, rb] = await Promise.all([
      runner.generate(prompt, a),
      runner.generate([{ ids: [9, 8] }, { ids: [4] }], b),
    ]);
    const together = iterations() - i1;
    assert.deepEqual(ra[0].outputIds, soloA.outputIds);
    assert.deepEqual(ra[0].logProbs, soloA.logProbs);
    assert.deepEqual(
      rb.map((o) => o.sequences.map((q) => q.outputIds)),
      soloB.map((o) => o.sequences.map((q) => q.outputIds)),
    );
    assert.ok(together < i0 + (i1 - i0), `${together} iterations for both, ${i0} + ${i1 - i0} alone`);
    assert.ok(together <= Math.max(i0, i1 - i0) + 2, `one iteration serves both: ${together}`);
  });

  test("aborting one call leaves a concurrent one exact", async () => {
    const runner = ModelRunner.fromEngine(dir);
    after(() => runner.dispose());
    const [solo] = await runner.generate({ ids: [9, 8] }, long);
    const ac = new AbortController();
    const other = runner.generate({ ids: [9, 8] }, long);
    let n = 0;
    await assert.rejects(async () => {
      for await (const _ of runner.stream(prompt, { ...long, signal: ac.signal })) if (++n === 3) ac.abort();
    }, /abort/i);
    const [out] = await other;
    assert.deepEqual(out.outputIds, solo.outputIds);
    assert.equal(runner.generation.stats()?.kv.numUsed, 0, "every block is back");
  });

  /** A LogitsProcessor that makes each step of its request take `ms` (a slow model). */
  const slow = (ms: number) => ({
    process() {
      const end = Date.now() + ms;
      while (Date.now() < end);
    },
  });
  /** A runner whose KV cache holds one long request and nothing beside it (blocks of 4 tokens). */
  const cramped = () =>
    ModelRunner.fromEngine(dir, undefined, { maxTokens: 48 }, { streamIdleTimeoutMs: 100 });

  test("an abandoned stream that holds the KV cache is cancelled once a request waited the idle limit", async () => {
    const runner = cramped();
    after(() => runner.dispose());
    const abandoned = runner.stream(prompt, { ...long, logitsProcessors: slow(10) });
    await abandoned.next(); // then never read again, never returned
    const started = Date.now();
    const [out] = await within(5000, runner.generate(prompt, { ...long, maxNewTokens: 5 }), "generate");
    assert.equal(out.outputIds.length, 5);
    assert.ok(Date.now() - started >= 90, "the stream keeps its blocks until the idle limit");
    await assert.rejects(
      abandoned.next(),
      (e: unknown) =>
        e instanceof StreamIdleTimeoutError && /not read for 100 ms.*streamIdleTimeoutMs/.test(e.message),
    );
    // The runner works on, and a stream read at once is never cancelled.
    const events = [];
    for await (const e of runner.stream(prompt, { ...long, maxNewTokens: 6 })) events.push(e);
    assert.equal(events.length, 6);
  });

  test("an unread stream is left alone while no request waits", async () => {
    const runner = ModelRunner.fromEngine(dir, undefined, {}, { streamIdleTimeoutMs: 20 });
    after(() => runner.dispose());
    const unread = runner.stream(prompt, { ...long, maxNewTokens: 8, logitsProcessors: slow(10) });
    await unread.next();
    await new Promise((r) => setTimeout(r, 150));
    const [out] = await runner.generate(prompt, { ...long, maxNewTokens: 2 }); // runs beside it, no wait
    assert.equal(out.outputIds.length, 2);
    let n = 1;
    for await (const _ of unread) n++;
    assert.equal(n, 8);
  });

  test("a stream read slowly with no one waiting is not cancelled", async () => {
    const runner = ModelRunner.fromEngine(dir, undefined, {}, { streamIdleTimeoutMs: 20 });
    after(() => runner.dispose());
    let n = 0;
    for await (const _ of runner.stream(prompt, { ...long, maxNewTokens: 3 })) {
      n++;
      await new Promise((r) => setTimeout(r, 60));
    }
    assert.equal(n, 3);
  });

  test("aborting a queued request rejects at once, not when it would be admitted", async () => {
    const runner = cramped();
    after(() => runner.dispose());
    const holder = runner.stream(prompt, { ...long, logitsProcessors: slow(5) });
    await holder.next(); // holds the KV cache (idle limit 100 ms, but it is read below)
    const ac = new AbortController();
    const queued = runner.generate(prompt, { ...long, signal: ac.signal });
    setTimeout(() => ac.abort(), 10);
    await within(500, assert.rejects(queued, /abort/i), "the aborted queued request");
    await holder.return(undefined);
    const [out] = await within(5000, runner.generate(prompt, { ...long, maxNewTokens: 3 }), "generate");
    assert.equal(out.outputIds.length, 3);
  });
});
