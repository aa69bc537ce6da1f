// A runner's lifetime and its request queue, on a tiny engine: requests after or during dispose()
// reject with RunnerDisposedError and dispose() waits for the running one; an abandoned stream cannot
// hold the runner (it is cancelled once another request has waited streamIdleTimeoutMs); a queued
// request rejects the moment its AbortSignal fires.
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

  test("dispose() rejects queued requests at once", async () => {
    const runner = ModelRunner.fromEngine(dir);
    const it = runner.stream(prompt, long);
    await it.next(); // holds the runner, not read further
    const queued = runner.generate(prompt, long);
    await new Promise((r) => setTimeout(r, 20));
    const closed = runner.close();
    await within(500, assert.rejects(queued, RunnerDisposedError), "the queued request");
    await within(2000, closed, "close() with an unread stream");
    await assert.rejects(it.next(), RunnerDisposedError);
  });

  test("an abandoned stream does not block the runner: it is cancelled after the idle limit", async () => {
    const runner = ModelRunner.fromEngine(dir, undefined, {}, { streamIdleTimeoutMs: 100 });
    after(() => runner.dispose());
    const abandoned = runner.stream(prompt, long);
    await abandoned.next(); // then never read again, never returned
    const started = Date.now();
    const [out] = await within(5000, runner.generate(prompt, { ...long, maxNewTokens: 5 }), "generate");
    assert.equal(out.outputIds.length, 5);
    assert.ok(Date.now() - started >= 90, "the stream keeps its turn until the idle limit");
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

  test("a cancelled stream read late does not disturb the idle clock of the stream after it", async () => {
    const runner = ModelRunner.fromEngine(dir, undefined, {}, { streamIdleTimeoutMs: 100 });
    after(() => runner.dispose());
    const a = runner.stream(prompt, long);
    await a.next(); // abandoned
    const b = runner.stream(prompt, long);
    await within(5000, b.next(), "the second stream's first token"); // a was cancelled; b is abandoned too
    const c = runner.generate(prompt, { ...long, maxNewTokens: 2 });
    await assert.rejects(a.next(), StreamIdleTimeoutError); // read late: must not stop b's clock
    const [out] = await within(5000, c, "generate after two abandoned streams");
    assert.equal(out.outputIds.length, 2);
    await assert.rejects(b.next(), StreamIdleTimeoutError);
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

  test("aborting a queued request rejects at once, not when its turn comes", async () => {
    const runner = ModelRunner.fromEngine(dir);
    after(() => runner.dispose());
    const holder = runner.stream(prompt, long);
    await holder.next(); // holds the runner (default idle limit: 10 s)
    const ac = new AbortController();
    const queued = runner.generate(prompt, { ...long, signal: ac.signal });
    setTimeout(() => ac.abort(), 10);
    await within(500, assert.rejects(queued, /abort/i), "the aborted queued request");
    await holder.return(undefined);
    const [out] = await within(5000, runner.generate(prompt, { ...long, maxNewTokens: 3 }), "generate");
    assert.equal(out.outputIds.length, 3);
  });
});
