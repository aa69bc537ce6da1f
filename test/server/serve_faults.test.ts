// `kiln serve` on the bundled model under faults: a client that disconnects (streamed or not) cancels
// its request at once and its KV blocks return; a request past --request-timeout is cancelled and
// answered; shutdown drains what finishes within --shutdown-timeout, cancels the rest with an error
// event and refuses new work. The load run is serve_load.test.ts.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { post, readStream } from "./load_run.ts";
import { parseSse } from "./scripted_executor.ts";
import { type BundledServer, bundledServer, kvIdle, until } from "./server_helpers.ts";

let s: BundledServer;
before(async () => {
  s = await bundledServer({ executor: { maxNumSeqs: 64 } });
});
after(() => s.close());

const long = { model: "default", prompt: "ROMEO:", max_tokens: 400, ignore_eos: true, temperature: 0 };

describe("kiln serve under faults", () => {
  test("a client that disconnects mid-stream cancels its request; its KV blocks return", async () => {
    const ex = s.server.ctx.model.executor;
    const abort = new AbortController();
    const r = await post(`${s.server.url}/v1/completions`, { ...long, stream: true }, abort.signal);
    assert.equal(r.status, 200);
    await readStream(r, { n: 5, abort });
    assert.ok(await until(() => kvIdle(s.server).idle, 2000), kvIdle(s.server).detail);
    const generated = ex.stats().numGeneratedTokens;
    assert.ok(generated < 100, `${generated} tokens generated for a client that left after 5 chunks`);
  });

  test("a client that disconnects before a plain answer cancels its request too", async () => {
    const ex = s.server.ctx.model.executor;
    const before = ex.stats().numGeneratedTokens;
    const abort = new AbortController();
    const pending = post(`${s.server.url}/v1/completions`, long, abort.signal).catch(() => null);
    assert.ok(
      await until(() => ex.stats().numGeneratedTokens > before + 3, 3000),
      "the request never started",
    );
    abort.abort();
    await pending;
    assert.ok(await until(() => kvIdle(s.server).idle, 2000), kvIdle(s.server).detail);
    const made = ex.stats().numGeneratedTokens - before;
    assert.ok(made < 300, `${made} tokens generated after the client left`);
    // The route releases its admission when its reader resumes: a turn of the event loop after the
    // executor freed the blocks (the executor wakes readers a slice per turn: reader_wakeups.ts).
    assert.ok(
      await until(() => s.server.ctx.inFlight.numAdmitted === 0, 2000),
      `${s.server.ctx.inFlight.numAdmitted} still admitted`,
    );
  });

  test("the listening socket's backlog holds a burst of connections (Linux: ss shows it)", (t) => {
    const ss = spawnSync("ss", ["-ltnH", `sport = :${s.server.port}`], { encoding: "utf8" });
    if (ss.status !== 0 || !existsSync("/proc/sys/net/core/somaxconn")) return t.skip("needs Linux's ss");
    const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    // A listening socket's Send-Q is its backlog, capped by the kernel at somaxconn.
    const backlog = Number(ss.stdout.trim().split(/\s+/)[2]);
    assert.equal(backlog, Math.min(4096, somaxconn), ss.stdout);
  });

  test("over a real socket: a 10 MB body gets 413, invalid UTF-8 400, and the server keeps serving", async () => {
    const url = `${s.server.url}/v1/completions`;
    const big = await post(url, { model: "default", prompt: "x", user: "y".repeat(10 * 2 ** 20) }).catch(
      (e: Error) => e,
    );
    // The server may answer 413 before the body is all sent; the client then sees the 413 or a reset.
    if (big instanceof Response) assert.equal(big.status, 413);
    const utf = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: Buffer.concat([
        Buffer.from('{"model":"default","prompt":"'),
        Buffer.from([0xff]),
        Buffer.from('"}'),
      ]),
    });
    assert.equal(utf.status, 400);
    assert.match(((await utf.json()) as { error: { message: string } }).error.message, /UTF-8/);
    const ok = await post(url, { model: "default", prompt: "O", max_tokens: 2 });
    assert.equal(ok.status, 200);
  });

  test("--max-queue and --max-concurrent: 429 with Retry-After once full; served again after", async () => {
    const t = await bundledServer({ maxQueue: 1, executor: { maxNumSeqs: 1 } });
    const c = await bundledServer({ maxConcurrent: 1 });
    try {
      for (const srv of [t, c]) {
        const url = `${srv.server.url}/v1/completions`;
        const ex = srv.server.ctx.model.executor;
        const running = post(url, { ...long, max_tokens: 150 });
        await until(() => ex.stats().numRunning === 1);
        const waiting = srv === t ? post(url, { ...long, max_tokens: 2 }) : null;
        if (waiting) await until(() => ex.stats().numQueued === 1);
        const full = await post(url, { ...long, max_tokens: 2 });
        assert.equal(full.status, 429, await full.clone().text());
        assert.equal(full.headers.get("retry-after"), "1");
        assert.equal((await running).status, 200);
        if (waiting) assert.equal((await waiting).status, 200);
        assert.equal((await post(url, { ...long, max_tokens: 2 })).status, 200);
      }
    } finally {
      await t.close();
      await c.close();
    }
  });

  test("--request-timeout: a request past it is cancelled and answered (408, or an error event)", async () => {
    const t = await bundledServer({ requestTimeoutS: 0.2 });
    try {
      const url = `${t.server.url}/v1/completions`;
      const plain = await post(url, { ...long, max_tokens: 480 });
      assert.equal(plain.status, 408, await plain.clone().text());
      const streamed = await post(url, { ...long, max_tokens: 480, stream: true });
      const { chunks, done } = parseSse(await readStream(streamed));
      assert.ok(done);
      assert.equal((chunks.at(-1) as { error: { code: number } }).error.code, 408);
      assert.ok(kvIdle(t.server).idle, kvIdle(t.server).detail);
    } finally {
      await t.close();
    }
  });

  test("shutdown: drains what finishes in time, cancels the rest with an error event, refuses new work", async () => {
    const t = await bundledServer({ shutdownTimeoutS: 0.4 });
    const url = `${t.server.url}/v1/completions`;
    // Every response has begun (its request admitted) before shutdown starts.
    const opened = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) =>
        post(url, { ...long, prompt: `${i}`, max_tokens: 480, stream: true }),
      ),
      post(url, { model: "default", prompt: "O", max_tokens: 3, stream: true }),
    ]);
    const reading = opened.map((r) => readStream(r));
    const short = reading.pop() as Promise<string>;
    const longOnes = reading;
    const closing = t.server.close();
    const refused = await post(url, { model: "default", prompt: "O", max_tokens: 3 });
    assert.equal(refused.status, 503);
    const shortSse = parseSse(await short);
    assert.ok(shortSse.done);
    assert.ok(
      shortSse.chunks.every((c) => !("error" in c)),
      "the short request finished within the grace period",
    );
    let cancelled = 0;
    for (const text of await Promise.all(longOnes)) {
      const { chunks, done } = parseSse(text);
      assert.ok(done, "every stream ends with [DONE]");
      const last = chunks.at(-1) as {
        error?: { code: number };
        choices?: { finish_reason: string | null }[];
      };
      assert.ok(
        last.error?.code === 503 || last.choices?.[0].finish_reason === "length",
        JSON.stringify(last),
      );
      if (last.error) cancelled++;
    }
    assert.ok(cancelled > 0, "6 × 480 tokens cannot all finish in 0.4 s: some must have been cancelled");
    await closing;
    await assert.rejects(post(url, { model: "default", prompt: "O" }), "no longer listening");
    await t.close();
  });
});
