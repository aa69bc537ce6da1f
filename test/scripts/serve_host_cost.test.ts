// scripts/serve_host_cost.ts: the PacedExecutor gives every running request one token an iteration,
// holds iterations while asked, and ends a cancelled request; the script, at a tiny size, counts every
// token of every stream, over HTTP with all streams at once, and in-process.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { PacedExecutor } from "../../scripts/serve_host_cost/paced_executor.ts";
import type { ResultEvent } from "../../src/executor/executor.ts";

async function read(events: AsyncIterable<ResultEvent>): Promise<ResultEvent[]> {
  const out: ResultEvent[] = [];
  for await (const ev of events) out.push(ev);
  return out;
}

test("one token per running request per iteration; held until released; a cancel ends the request", async () => {
  const ex = new PacedExecutor();
  ex.held = true;
  const a = ex.enqueue({ prompt: [1, 2], maxNewTokens: 3, streaming: true });
  const b = ex.enqueue({ prompt: [3], maxNewTokens: 2, streaming: true });
  const c = ex.enqueue({ prompt: [4], maxNewTokens: 5, streaming: true });
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(ex.iterations.length, 0, "an iteration ran while held");
  assert.ok(ex.cancel(c));
  ex.release();
  const [ea, eb, ec] = await Promise.all([read(ex.results(a)), read(ex.results(b)), read(ex.results(c))]);
  assert.deepEqual(
    ea.map((e) => [e.tokenIds.length, e.finishReason, e.isFinal]),
    [
      [1, null, false],
      [1, null, false],
      [1, "length", true],
    ],
  );
  assert.equal(eb.length, 2);
  assert.deepEqual(
    ec.map((e) => [e.tokenIds.length, e.finishReason]),
    [[0, "cancelled"]],
  );
  assert.deepEqual(
    ex.iterations.map((it) => it.running),
    [2, 2, 1],
  );
  assert.equal(ex.tokens, 5);
  await ex.shutdown();
  assert.equal(ex.alive, false);
});

const run = promisify(execFile);
const script = ["--import", "tsx", "scripts/serve_host_cost.ts", "--streams", "6", "--output-len", "4"];

test("the script over HTTP: every stream's tokens, all streams at once", async () => {
  const { stdout } = await run(process.execPath, [...script, "--json"]);
  const r = JSON.parse(stdout);
  assert.equal(r.server.tokens, 24);
  assert.equal(r.server.peakRunning, 6);
  assert.equal(r.client.completed, 6);
  assert.equal(r.client.failed, 0);
  assert.equal(r.client.outputTokens, 24);
  assert.ok(r.server.cpuMs > 0 && r.server.toUs > r.server.fromUs);
});

test("the script in-process: the same tokens without HTTP", async () => {
  const { stdout } = await run(process.execPath, [...script, "--in-process", "--json"]);
  const r = JSON.parse(stdout);
  assert.equal(r.mode, "in-process");
  assert.equal(r.tokens, 24);
  assert.equal(r.peakRunning, 6);
});
