// `kiln bench --serve URL`: the CLI drives a server (a fake OpenAI streaming endpoint in this process)
// and prints its figures as JSON or a table; engine flags with --serve, --max-concurrency without it
// and an unreachable server are user errors by name.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { checkServeFlags } from "../../src/cli/bench_serve.ts";
import { BenchOptionError } from "../../src/runtime/bench.ts";
import { assertUserError, type CliResult, kiln } from "../helpers/cli.ts";
import { type FakeOpenAiServer, startFakeOpenAi } from "../helpers/fake_openai_server.ts";

const KILN = fileURLToPath(new URL("../../bin/kiln", import.meta.url));
let fake: FakeOpenAiServer;
before(async () => {
  // Chunks 20 ms apart: the client stamps the SSE events of one socket read alike, so on a loaded
  // machine chunks a few ms apart can arrive together and show ITL 0.
  fake = await startFakeOpenAi(10, 20);
});
after(() => fake.close());

/** ./bin/kiln without blocking this process's event loop (the fake server lives in it). */
function kilnAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(KILN, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => {
      stdout += d;
    });
    p.stderr.on("data", (d) => {
      stderr += d;
    });
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

test("kiln bench --serve URL --json and table: the server's figures", async () => {
  fake.reset();
  const args = ["bench", "--serve", fake.url, "--num-requests", "3", "--input-len", "4", "--output-len", "3"];
  const r = await kilnAsync([...args, "--max-concurrency", "2", "--seed", "5", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const o = JSON.parse(r.stdout);
  assert.equal(o.mode, "serve");
  assert.equal(o.model, "fake");
  assert.equal(o.numRequests, 3);
  assert.equal(o.completed, 3);
  assert.equal(o.maxConcurrency, 2);
  assert.equal(o.seed, 5);
  assert.equal(o.outputTokens, 9);
  assert.ok(o.ttftMs.median > 0 && o.itlMs.median > 0 && o.tpotMs.mean > 0);
  assert.equal(fake.seen.length, 4, "a warm-up and 3 requests");
  assert.equal(fake.maxInFlight, 2);
  const t = await kilnAsync([...args, "--request-rate", "50"]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /completed \/ failed\s+3 \/ 0\n/);
  assert.match(t.stdout, /arrivals\s+Poisson, 50 requests\/s/);
  assert.match(t.stdout, /output tokens\s+9\n/);
  assert.match(t.stdout, /ITL\s+mean [\d.]+, median [\d.]+, p99 [\d.]+ ms/);
});

test("engine flags with --serve, --max-concurrency without it, and no server are user errors", () => {
  const refuse = (given: string[], serve: string | undefined, message: RegExp) =>
    assert.throws(
      () => checkServeFlags({ serve }, (f) => given.includes(f)),
      (e: unknown) => e instanceof BenchOptionError && message.test(e.message),
    );
  for (const flag of [
    "--temperature",
    "--max-kv-tokens",
    "--kv-cache-dtype",
    "--policy",
    "--model",
    "--runs",
  ])
    refuse([flag], "http://x", new RegExp(`${flag} sets up kiln's own engine.*drop ${flag}`));
  refuse(["--max-concurrency"], undefined, /--max-concurrency .*give --serve URL with it/);
  checkServeFlags({ serve: "http://x" }, (f) => ["--num-requests", "--request-rate", "--seed"].includes(f));
  assertUserError(
    kiln(["bench", "--serve", "http://127.0.0.1:9", "--batch-size", "2"]),
    "BenchOptionError",
    /--batch-size sets up kiln's own engine/,
  );
  assertUserError(
    kiln(["bench", "--serve", "http://127.0.0.1:9", "--num-requests", "1"]),
    "ServeBenchError",
    /cannot reach http:\/\/127.0.0.1:9\/v1\/models/,
  );
});
