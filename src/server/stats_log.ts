// `kiln serve`'s periodic stats line (vLLM logs the same every few seconds): over the last interval,
// prompt and generation tokens per second, executor iterations, and per iteration the step's latency,
// the host's own work and the time the loop waited for the device — a wait near zero means the host,
// not the device, sets the pace; then the requests running and waiting, KV cache usage and the prefix
// cache's hit rate. One pino line at info (msg "stats") per interval that saw an iteration; an idle
// server logs nothing.
import type { ExecutorStats, IterationStats } from "../executor/executor.ts";

/** What one stats line carries. */
export interface StatsLine {
  interval_s: number;
  prompt_tokens_per_s: number;
  generation_tokens_per_s: number;
  iterations: number;
  step_ms: number;
  host_ms: number;
  wait_ms: number;
  running: number;
  waiting: number;
  kv_cache_usage: number;
  prefix_cache_hit_rate: number | null;
}

interface Totals {
  contextTokens: number;
  generatedTokens: number;
  prefixQueries: number;
  prefixHits: number;
}

const totals = (s: ExecutorStats): Totals => ({
  contextTokens: s.numContextTokens,
  generatedTokens: s.numGeneratedTokens,
  prefixQueries: s.kv.prefixQueryTokens,
  prefixHits: s.kv.prefixHitTokens,
});

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

export class StatsLog {
  private iterations = 0;
  private stepMs = 0;
  private hostMs = 0;
  private waitMs = 0;
  private since: number;
  private base: Totals;

  constructor(
    private readonly stats: () => ExecutorStats,
    private readonly write: (line: StatsLine) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.since = now();
    this.base = totals(stats());
  }

  /** One executor iteration (ExecutorOptions.onIteration). */
  iteration(s: IterationStats): void {
    this.iterations++;
    this.stepMs += s.latencyMs;
    this.hostMs += s.hostMs;
    this.waitMs += s.hostWaitMs;
  }

  /** Writes the interval since the last flush, if it saw an iteration, and starts the next. */
  flush(): void {
    const t = this.now();
    const s = this.stats();
    const cur = totals(s);
    const n = this.iterations;
    const seconds = (t - this.since) / 1000;
    if (n > 0 && seconds > 0) {
      const queries = cur.prefixQueries - this.base.prefixQueries;
      this.write({
        interval_s: round(seconds, 1),
        prompt_tokens_per_s: round((cur.contextTokens - this.base.contextTokens) / seconds, 1),
        generation_tokens_per_s: round((cur.generatedTokens - this.base.generatedTokens) / seconds, 1),
        iterations: n,
        step_ms: round(this.stepMs / n, 2),
        host_ms: round(this.hostMs / n, 2),
        wait_ms: round(this.waitMs / n, 2),
        running: s.numRunning,
        waiting: s.numQueued,
        kv_cache_usage: round(s.kv.usage, 4),
        prefix_cache_hit_rate:
          queries > 0 ? round((cur.prefixHits - this.base.prefixHits) / queries, 4) : null,
      });
    }
    this.iterations = 0;
    this.stepMs = this.hostMs = this.waitMs = 0;
    this.since = t;
    this.base = cur;
  }
}
