// The executor on a thread of its own (executor/thread/), as `kiln serve` runs it: the bundled model on
// the CPU backend. Its results equal ModelRunner.generate's, streamed and not, with requests in flight
// together; the executor's refusals and failures reach the caller as their own classes (the server
// answers by class); cancel ends a request with "cancelled" and frees its blocks; shutdown ends the
// thread, after which requests are refused.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { CheckpointNotFoundError } from "../../src/checkpoint/errors.ts";
import { KilnError } from "../../src/errors.ts";
import {
  ExecutorShutDownError,
  QueueFullError,
  RequestTooLargeError,
  UnsupportedRequestError,
} from "../../src/executor/errors.ts";
import type { ResultEvent } from "../../src/executor/executor.ts";
import type { ExecutorThread } from "../../src/executor/thread/executor_thread.ts";
import { errorRecord, RemoteKilnError, reviveError } from "../../src/executor/thread/remote_error.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { openExecutorThread } from "../../src/runtime/open_executor_thread.ts";
import { InvalidSamplingConfigError } from "../../src/sampling/sampling_config.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const cache = tempCache();
let runner: ModelRunner;
let ex: ExecutorThread;
before(async () => {
  runner = ModelRunner.fromDir(BUNDLED_MODEL_DIR, { backend: "cpu", cacheDir: cache.dir });
  ({ executor: ex } = await openExecutorThread(BUNDLED_MODEL_DIR, {
    backend: "cpu",
    cacheDir: cache.dir,
    maxNumTokens: 32,
    maxTokens: 448,
    maxQueueSize: 8,
  }));
});
after(async () => {
  await ex.shutdown({ drain: false });
  runner.dispose();
  cache.cleanup();
});

async function collect(id: number): Promise<ResultEvent[]> {
  const events: ResultEvent[] = [];
  for await (const e of ex.results(id)) events.push(e);
  return events;
}

describe("ExecutorThread on the bundled model", () => {
  test("requests in flight together equal generate's, streamed and not", async () => {
    const prompts = ["Once upon a time", "ROMEO:", "The quick brown fox jumps over", "Hello"];
    const ids = await Promise.all(
      prompts.map((p, i) =>
        ex.enqueue({ prompt: p, maxNewTokens: 10 + i, greedy: true, streaming: i % 2 === 0 }),
      ),
    );
    const got = await Promise.all(ids.map(collect));
    for (const [i, p] of prompts.entries()) {
      const [want] = await runner.generate(p, { maxNewTokens: 10 + i, greedy: true });
      const tokens = got[i].flatMap((e) => e.tokenIds);
      assert.deepEqual(tokens, want.outputIds, `prompt ${i}`);
      assert.equal(got[i].map((e) => e.text).join(""), want.text, `prompt ${i}`);
      assert.equal(
        got[i].length,
        i % 2 === 0 ? want.outputIds.length : 1,
        "events: one a token when streaming",
      );
      assert.equal(got[i].at(-1)?.isFinal, true);
      assert.equal(got[i].at(-1)?.finishReason, want.finishReason);
    }
    const s = ex.stats();
    assert.equal(s.numRunning, 0);
    assert.equal(s.kv.numUsed, 0, "every block back once the last event arrived");
  });

  test("refusals arrive as their classes, with their fields", async () => {
    await assert.rejects(ex.enqueue({ prompt: [1, 2], maxNewTokens: 4, temperature: -1 }), (e: unknown) => {
      assert.ok(e instanceof InvalidSamplingConfigError, String(e));
      assert.ok(e instanceof KilnError);
      assert.match((e as Error).message, /temperature/);
      return true;
    });
    // 300 + 200 tokens: within the context (512), beyond the KV cache (448).
    const long = Array.from({ length: 300 }, (_, i) => 5 + (i % 50));
    await assert.rejects(ex.enqueue({ prompt: long, maxNewTokens: 200 }), (e: unknown) => {
      assert.ok(e instanceof RequestTooLargeError, String(e));
      assert.equal(e.promptTokens, 300);
      assert.equal(e.maxNewTokens, 200);
      return true;
    });
  });

  test("a request with a callback cannot cross: UnsupportedRequestError, and the thread goes on", async () => {
    const processor = { process() {} };
    await assert.rejects(
      ex.enqueue({ prompt: [1, 2], maxNewTokens: 2, logitsProcessors: [processor] }),
      (e: unknown) => {
        assert.ok(e instanceof UnsupportedRequestError, String(e));
        assert.match((e as Error).message, /plain data/);
        return true;
      },
    );
    const id = await ex.enqueue({ prompt: [1, 2], maxNewTokens: 2, greedy: true });
    assert.equal((await collect(id)).at(-1)?.isFinal, true);
  });

  test("a full queue is a QueueFullError; cancel frees the blocks and ends with cancelled", async () => {
    const long = { prompt: [3, 4, 5], maxNewTokens: 300, greedy: true, streaming: true, endId: [] };
    const ids: number[] = [];
    let refused: unknown = null;
    for (let i = 0; i < 64 && refused === null; i++) {
      try {
        ids.push(await ex.enqueue(long));
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused instanceof QueueFullError, `got ${String(refused)}`);
    const results = ids.map(collect);
    // One runs at a time (each holds 303 of the 448 tokens) and may have finished meanwhile; the 8
    // queued behind it are live.
    const cancelled = ids.filter((id) => ex.cancel(id));
    assert.ok(cancelled.length >= 8, `${cancelled.length} of ${ids.length} live`);
    const ended = await Promise.all(results);
    ids.forEach((id, i) => {
      const want = cancelled.includes(id) ? "cancelled" : "length";
      assert.equal(ended[i].at(-1)?.finishReason, want, `request ${id}`);
    });
    assert.equal(ex.cancel(cancelled[0]), false, "not live once its final event arrived");
    const s = ex.stats();
    assert.equal(s.numRunning + s.numQueued, 0);
    assert.equal(s.kv.numUsed, 0);
  });
});

describe("ExecutorThread's ends", () => {
  test("a directory that is not there fails the open with its own error", async () => {
    await assert.rejects(openExecutorThread("/nonexistent/kiln-model", { backend: "cpu" }), (e: unknown) => {
      assert.ok(e instanceof KilnError, String(e));
      assert.equal((e as Error).name, CheckpointNotFoundError.name);
      assert.match((e as Error).message, /nonexistent/);
      return true;
    });
  });

  test("shutdown ends the thread; then every request is refused", async () => {
    const { executor } = await openExecutorThread(BUNDLED_MODEL_DIR, { backend: "cpu", cacheDir: cache.dir });
    const id = await executor.enqueue({ prompt: [7, 8], maxNewTokens: 300, greedy: true, streaming: true });
    const events = (async () => {
      const out: ResultEvent[] = [];
      for await (const e of executor.results(id)) out.push(e);
      return out;
    })();
    assert.equal(executor.alive, true);
    await executor.shutdown({ drain: false });
    assert.equal(executor.alive, false);
    assert.equal((await events).at(-1)?.finishReason, "cancelled");
    await assert.rejects(executor.enqueue({ prompt: [1], maxNewTokens: 1 }), ExecutorShutDownError);
  });
});

test("a thread that dies fails its live requests with the error, refuses new ones and is not alive", async () => {
  const { executor } = await openExecutorThread(
    BUNDLED_MODEL_DIR,
    { backend: "cpu", cacheDir: cache.dir },
    undefined,
    new URL("./crashing_entry.ts", import.meta.url),
  );
  try {
    const id = await executor.enqueue({ prompt: [7, 8], maxNewTokens: 400, endId: [], streaming: true });
    const events = (async () => {
      for await (const _ of executor.results(id));
    })();
    await executor.enqueue({ prompt: [9], maxNewTokens: 4, clientId: "crash" });
    await assert.rejects(events, (e: unknown) => {
      assert.ok(!(e instanceof KilnError), "a bug stays a bug (a 500)");
      assert.match(String(e), /the executor thread's bug/);
      return true;
    });
    assert.equal(executor.alive, false);
    await assert.rejects(executor.enqueue({ prompt: [1], maxNewTokens: 1 }), ExecutorShutDownError);
  } finally {
    await executor.shutdown();
  }
});

test("an idle executor thread keeps no process alive; one with a request in flight does", async () => {
  const script = fileURLToPath(new URL("./thread_idle_exit.ts", import.meta.url));
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const r = spawnSync(process.execPath, ["--import", "tsx", script], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...env, KILN_TEST_CACHE: cache.dir },
  });
  assert.equal(r.signal, null, `the process did not end by itself: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  const [want] = await runner.generate("ROMEO:", { maxNewTokens: 6, greedy: true });
  assert.equal(r.stdout, `${JSON.stringify(want.text)}\n`, "the request's text came back before the end");
});

test("remote errors: a known class comes back as it, an unknown KilnError by name, a bug as a bug", () => {
  const known = reviveError(errorRecord(new RequestTooLargeError(1, 10, 20, 3, 2, 16)));
  assert.ok(known instanceof RequestTooLargeError);
  assert.equal((known as RequestTooLargeError).promptTokens, 10);
  class SomeUserError extends KilnError {}
  const user = reviveError(errorRecord(new SomeUserError("fix it", { details: ["a", "b"] })));
  assert.ok(user instanceof RemoteKilnError && user instanceof KilnError);
  assert.equal(user.name, "SomeUserError");
  assert.deepEqual((user as KilnError).details, ["a", "b"]);
  const bug = reviveError(errorRecord(new TypeError("x is undefined")));
  assert.ok(!(bug instanceof KilnError));
  assert.equal(bug.name, "TypeError");
  assert.match(bug.stack ?? "", /x is undefined/);
});
