// kiln serve's periodic stats line (src/server/stats_log.ts): the interval's rates and per-iteration
// means from the executor's iterations and stats, nothing for an idle interval; and a real server on
// the bundled model writes it at --log-stats-interval (and never at 0).
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import type { ExecutorStats, IterationStats } from "../../src/executor/executor.ts";
import { type StatsLine, StatsLog } from "../../src/server/stats_log.ts";
import { post } from "./load_run.ts";
import { bundledServer, until } from "./server_helpers.ts";

function executorStats(over: Partial<ExecutorStats> & { hits?: number; queries?: number }): ExecutorStats {
  return {
    numQueued: over.numQueued ?? 0,
    numRunning: over.numRunning ?? 0,
    numRunningSequences: over.numRunning ?? 0,
    numIterations: 0,
    numContextTokens: over.numContextTokens ?? 0,
    numGeneratedTokens: over.numGeneratedTokens ?? 0,
    numPreemptions: 0,
    kv: {
      numBlocks: 100,
      tokensPerBlock: 16,
      numFree: 0,
      numCached: 0,
      numCachedFree: 0,
      numUsed: 0,
      usage: over.kv?.usage ?? 0,
      prefixQueryTokens: over.queries ?? 0,
      prefixHitTokens: over.hits ?? 0,
      numEvictions: 0,
    },
  };
}

const iteration = (latencyMs: number, hostMs: number, hostWaitMs: number) =>
  ({ latencyMs, hostMs, hostWaitMs }) as IterationStats;

test("a line per interval: token rates over its seconds, per-iteration means, the queue and KV now", () => {
  let t = 1000;
  let stats = executorStats({ numContextTokens: 500, numGeneratedTokens: 40, queries: 64, hits: 0 });
  const lines: StatsLine[] = [];
  const log = new StatsLog(
    () => stats,
    (l) => lines.push(l),
    () => t,
  );
  log.iteration(iteration(30, 4, 20));
  log.iteration(iteration(50, 6, 40));
  t += 2000;
  stats = executorStats({
    numContextTokens: 800,
    numGeneratedTokens: 70,
    numRunning: 3,
    numQueued: 2,
    kv: { usage: 0.25 } as ExecutorStats["kv"],
    queries: 64 + 200,
    hits: 50,
  });
  log.flush();
  assert.deepEqual(lines, [
    {
      interval_s: 2,
      prompt_tokens_per_s: 150,
      generation_tokens_per_s: 15,
      iterations: 2,
      step_ms: 40,
      host_ms: 5,
      wait_ms: 30,
      running: 3,
      waiting: 2,
      kv_cache_usage: 0.25,
      prefix_cache_hit_rate: 0.25,
    },
  ]);
  // The next interval starts from the flush: an idle one writes nothing, and a busy one counts only
  // its own tokens and iterations.
  t += 5000;
  log.flush();
  assert.equal(lines.length, 1, "an interval without an iteration wrote a line");
  log.iteration(iteration(10, 1, 8));
  t += 1000;
  stats = executorStats({ numContextTokens: 800, numGeneratedTokens: 80, queries: 264, hits: 50 });
  log.flush();
  assert.equal(lines.length, 2);
  assert.equal(lines[1].generation_tokens_per_s, 10);
  assert.equal(lines[1].prompt_tokens_per_s, 0);
  assert.equal(lines[1].iterations, 1);
  assert.equal(lines[1].prefix_cache_hit_rate, null, "no prompt tokens looked up: no hit rate");
});

/** A pino destination that keeps the JSON lines with msg "stats". */
function statsSink(): { lines: StatsLine[]; stream: Writable } {
  const lines: StatsLine[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n"))
        if (l.includes('"msg":"stats"')) lines.push(JSON.parse(l) as StatsLine);
      done();
    },
  });
  return { lines, stream };
}

test("kiln serve writes the stats line at its interval while it generates, and never with 0", async () => {
  for (const every of [0.05, 0]) {
    const sink = statsSink();
    const s = await bundledServer({
      logLevel: "info",
      logDestination: sink.stream,
      logStatsIntervalS: every,
    });
    try {
      const r = await post(`${s.server.url}/v1/completions`, {
        model: "default",
        prompt: "ROMEO:",
        max_tokens: 40,
        ignore_eos: true,
      });
      assert.equal(r.status, 200);
      if (every > 0) {
        assert.ok(
          await until(() => sink.lines.some((l) => l.generation_tokens_per_s > 0), 3000),
          "no stats line with generated tokens",
        );
        const l = sink.lines.find((x) => x.generation_tokens_per_s > 0) as StatsLine;
        assert.ok(l.iterations > 0 && l.step_ms > 0, JSON.stringify(l));
      } else {
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.deepEqual(sink.lines, [], "--log-stats-interval 0 wrote stats lines");
      }
    } finally {
      await s.close();
    }
  }
});
