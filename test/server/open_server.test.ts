// The whole `kiln serve` as openServer builds it (bundled model, CPU, loopback, port 0): the Triton
// and tokenize routes are there by default and need the API key like the OpenAI ones, while probes
// and scrapes do not; --max-concurrent counts both APIs together; graceful shutdown waits for Triton
// streams and cancels them after the grace period; /metrics is prom-client's, fed by the executor.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { post, readStream } from "./load_run.ts";
import { parseSse } from "./scripted_executor.ts";
import { type BundledServer, bundledServer, kvIdle, until } from "./server_helpers.ts";

const PROMPT = "ROMEO:";
// end_id 2 (the pad id, never sampled) and ignore_eos: only max_tokens, a disconnect or shutdown end these.
const longTriton = { text_input: PROMPT, max_tokens: 400, end_id: 2 };
const longOpenAi = { model: "default", prompt: PROMPT, max_tokens: 400, ignore_eos: true, temperature: 0 };

/** Waits for a stream's first bytes, leaving the rest unread. */
async function firstBytes(r: Response): Promise<void> {
  await (r.body as ReadableStream<Uint8Array>).getReader().read();
}

describe("openServer: the API key guards every API route, not the probes", () => {
  let s: BundledServer;
  before(async () => {
    s = await bundledServer({ apiKey: "sesame" });
  });
  after(() => s.close());

  const call = (path: string, body?: object, key?: string) =>
    fetch(`${s.server.url}${path}`, {
      method: body ? "POST" : "GET",
      headers: {
        ...(body ? { "content-type": "application/json" } : {}),
        ...(key ? { authorization: `Bearer ${key}` } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });

  test("Triton, tokenize and OpenAI routes: 401 without the key or with a wrong one, served with it", async () => {
    const routes: [string, object][] = [
      ["/v2/models/default/generate", { text_input: PROMPT, max_tokens: 2 }],
      ["/tokenize", { prompt: PROMPT }],
      ["/detokenize", { tokens: [1, 2] }],
      ["/v1/completions", { model: "default", prompt: PROMPT, max_tokens: 2 }],
    ];
    for (const [path, body] of routes) {
      for (const key of [undefined, "wrong"]) {
        const r = await call(path, body, key);
        assert.equal(r.status, 401, `${path} with key ${key}`);
        const error = ((await r.json()) as { error: { type: string } | string }).error;
        // Triton's shape under /v2/, OpenAI's elsewhere.
        if (typeof error === "string") assert.ok(path.startsWith("/v2/") && /API key/.test(error), error);
        else assert.equal(error.type, "authentication_error");
      }
      assert.equal((await call(path, body, "sesame")).status, 200, path);
    }
    for (const path of ["/v2/models/default", "/v2/models/default/ready"])
      assert.equal((await call(path)).status, 401, path);
  });

  test("probes and scrapes need no key", async () => {
    for (const path of ["/health", "/version", "/metrics", "/v2/health/live", "/v2/health/ready"])
      assert.equal((await call(path)).status, 200, path);
  });
});

test("GET /health and Triton's readiness answer 503 once the executor's loop is dead", async () => {
  const s = await bundledServer();
  try {
    const paths = ["/health", "/v2/health/ready", "/v2/models/default/ready"];
    const statuses = async () =>
      Promise.all(paths.map(async (p) => (await fetch(`${s.server.url}${p}`)).status));
    assert.deepEqual(await statuses(), [200, 200, 200]);
    await s.server.ctx.model.executor.shutdown();
    assert.equal(s.server.ctx.model.executor.alive, false);
    assert.deepEqual(await statuses(), [503, 503, 503]);
    assert.equal((await fetch(`${s.server.url}/v2/health/live`)).status, 200, "the process itself lives");
  } finally {
    await s.close();
  }
});

describe("openServer: one concurrency limit and one shutdown for both APIs", () => {
  test("--max-concurrent 1: a running OpenAI stream makes Triton answer 429, and the other way round", async () => {
    const s = await bundledServer({ maxConcurrent: 1 });
    try {
      const ex = s.server.ctx.model.executor;
      const triton = `${s.server.url}/v2/models/default/generate`;
      const openai = `${s.server.url}/v1/completions`;

      const abort = new AbortController();
      const stream = await post(openai, { ...longOpenAi, stream: true }, abort.signal);
      assert.equal(stream.status, 200);
      await firstBytes(stream);
      const full = await post(triton, { text_input: PROMPT, max_tokens: 2 });
      assert.equal(full.status, 429, await full.clone().text());
      assert.equal(full.headers.get("retry-after"), "1");
      abort.abort();
      assert.ok(await until(() => kvIdle(s.server).idle && s.server.ctx.inFlight.numAdmitted === 0));

      const abort2 = new AbortController();
      const tstream = await post(`${triton}_stream`, longTriton, abort2.signal);
      assert.equal(tstream.status, 200);
      await firstBytes(tstream);
      const full2 = await post(openai, { ...longOpenAi, max_tokens: 2 });
      assert.equal(full2.status, 429, await full2.clone().text());
      abort2.abort();
      assert.ok(await until(() => kvIdle(s.server).idle && s.server.ctx.inFlight.numAdmitted === 0));
      assert.equal((await post(triton, { text_input: PROMPT, max_tokens: 2 })).status, 200);
      assert.equal(ex.stats().numRunning, 0);
    } finally {
      await s.close();
    }
  });

  test("shutdown waits for Triton requests, cancels them after the grace period (503 / error event)", async () => {
    const s = await bundledServer({ shutdownTimeoutS: 0.3 });
    const triton = `${s.server.url}/v2/models/default/generate`;
    const ex = s.server.ctx.model.executor;
    const stream = await post(`${triton}_stream`, { ...longTriton, max_tokens: 480 });
    assert.equal(stream.status, 200);
    const streamed = readStream(stream);
    const plain = post(triton, { ...longTriton, max_tokens: 480 });
    assert.ok(await until(() => ex.stats().numRunning === 2));
    const closing = s.server.close();
    const refused = await post(triton, { text_input: PROMPT, max_tokens: 2 });
    assert.equal(refused.status, 503);
    assert.match(((await refused.json()) as { error: string }).error, /shutting down/);

    const { chunks } = parseSse(await streamed);
    assert.ok(chunks.length > 1, "tokens streamed before the cancel");
    assert.match(String((chunks.at(-1) as { error?: string }).error), /shut down/);
    const answer = await plain;
    assert.equal(answer.status, 503);
    assert.match(((await answer.json()) as { error: string }).error, /shut down/);
    await closing;
    assert.equal(s.server.ctx.inFlight.numAdmitted, 0);
    await s.close();
  });
});
