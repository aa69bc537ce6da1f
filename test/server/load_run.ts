// The load run of the fault tests, sized by its caller: concurrent streaming requests of which a
// share disconnects at random points, then short requests from a few workers in a loop. Every stream
// that stays must be well-formed (chunks, one finish reason at the end, [DONE]); every short request
// 200; at the end nothing is admitted and the KV cache is idle. Resident memory is sampled after the
// first and the last thousand short requests, each after a full garbage collection (so it shows what
// stays, not when the collector last ran).
import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { RunningServer } from "../../src/server/open_server.ts";
import { parseSse } from "./scripted_executor.ts";
import { kvIdle, until } from "./server_helpers.ts";

export interface LoadSize {
  streams: number;
  disconnectShare: number;
  shortRequests: number;
  shortConcurrency: number;
}

/** The size: 1,000 streams (4..11 tokens each), 10% leaving early, then 10,000 one-token
 * requests from 8 workers; a few minutes on the CPU backend on two cores. */
export const LOAD_FULL: LoadSize = {
  streams: 1000,
  disconnectShare: 0.1,
  shortRequests: 10000,
  shortConcurrency: 8,
};

/** Resident memory after a full collection (V8's gc() reached without --expose-gc on the command line). */
function rssAfterGc(): number {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
  return process.memoryUsage().rss;
}

export function post(url: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

/** Reads an SSE body; with `stopAfter`, aborts after that many chunks. */
export async function readStream(
  r: Response,
  stopAfter?: { n: number; abort: AbortController },
): Promise<string> {
  const reader = (r.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let text = "";
  let chunks = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return text;
      text += dec.decode(value, { stream: true });
      chunks = text.split("\n\n").length - 1;
      if (stopAfter && chunks >= stopAfter.n) {
        stopAfter.abort.abort();
        return text;
      }
    }
  } catch (e) {
    if (stopAfter?.abort.signal.aborted) return text;
    throw e;
  }
}

/** Runs the load; returns resident memory (bytes) after the first and the last thousand short requests
 * (null when there are fewer than two thousand). */
export async function runLoad(
  server: RunningServer,
  LOAD: LoadSize,
): Promise<{ rssFirst: number | null; rssLast: number | null }> {
  const url = `${server.url}/v1/completions`;
  const seeded = (i: number) => ((i * 2654435761) >>> 0) / 2 ** 32;
  const results = await Promise.all(
    Array.from({ length: LOAD.streams }, async (_, i) => {
      const leaves = seeded(i) < LOAD.disconnectShare;
      const abort = new AbortController();
      const body = {
        model: "default",
        prompt: `${i}: ROMEO:`,
        max_tokens: 4 + (i % 8),
        stream: true,
        stream_options: { include_usage: true },
        ignore_eos: true,
      };
      const r = await post(url, body, abort.signal);
      assert.equal(r.status, 200);
      const text = await readStream(r, leaves ? { n: 1 + Math.floor(seeded(i + 7) * 4), abort } : undefined);
      return { leaves, text, max: body.max_tokens };
    }),
  );
  for (const [i, r] of results.entries()) {
    if (r.leaves) continue;
    const { chunks, done } = parseSse(r.text);
    assert.ok(done, `stream ${i} has no [DONE]`);
    const usage = chunks.pop() as { choices: unknown[]; usage: { completion_tokens: number } };
    assert.deepEqual(usage.choices, [], `stream ${i}: the usage chunk is last`);
    assert.equal(usage.usage.completion_tokens, r.max, `stream ${i}: every token asked for`);
    const choices = chunks.map(
      (c) => (c as { choices: { finish_reason: string | null; text: string }[] }).choices[0],
    );
    assert.ok(
      choices.every((c) => c !== undefined),
      `stream ${i}: ${r.text.slice(-300)}`,
    );
    assert.equal(choices.at(-1)?.finish_reason, "length", `stream ${i}`);
    assert.ok(choices.slice(0, -1).every((c) => c.finish_reason === null));
  }
  let next = 0;
  let rssFirst: number | null = null;
  let rssLast: number | null = null;
  const worker = async () => {
    while (next < LOAD.shortRequests) {
      const i = next++;
      if (LOAD.shortRequests >= 2000 && i === 1000) rssFirst = rssAfterGc();
      if (LOAD.shortRequests >= 2000 && i === LOAD.shortRequests - 1000) rssLast = rssAfterGc();
      const r = await post(url, { model: "default", prompt: [1 + (i % 50), 7], max_tokens: 1 });
      assert.equal(r.status, 200, await r.clone().text());
      const b = (await r.json()) as { usage: { completion_tokens: number } };
      assert.ok(b.usage.completion_tokens >= 1);
    }
  };
  await Promise.all(Array.from({ length: LOAD.shortConcurrency }, worker));
  assert.ok(await until(() => kvIdle(server).idle, 2000), kvIdle(server).detail);
  assert.equal(server.ctx.inFlight.numAdmitted, 0);
  return { rssFirst, rssLast };
}
