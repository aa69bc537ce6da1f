// The latency figures of a benchmark's requests, one computation for `kiln bench` (throughput_bench.ts:
// times on the executor's clock) and `kiln bench --serve` (server/serve_bench.ts: times as the client
// saw them). Per request, from when it started and when each piece of its output arrived:
//   TTFT = first − start      TPOT = (last − first) / (tokens − 1)      ITL = each − the one before
// each summarised over the requests as mean, median and p99 (numpy's interpolated percentiles).

export interface Summary {
  mean: number;
  median: number;
  p99: number;
}

/** One request's times (ms, one clock): when it started and when each token or text chunk arrived. */
export interface TimedRequest {
  start: number;
  /** In arrival order; empty when nothing arrived (it counts in no figure). */
  times: readonly number[];
  /** Output tokens over those times, TPOT's count (default: times.length; a text chunk may carry
   * several). */
  tokens?: number;
}

export interface LatencySummary {
  ttftMs: Summary;
  /** Over the requests with more than one token. */
  tpotMs: Summary;
  /** Over every gap between consecutive times of a request. */
  itlMs: Summary;
}

/** The value below which p% of xs lie, interpolated between ranks (numpy's default); NaN for none. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const r = (p / 100) * (s.length - 1);
  const lo = Math.floor(r);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (r - lo);
}

/** Mean, median and p99 of xs (NaN for none). */
export const summary = (xs: readonly number[]): Summary => ({
  mean: xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN,
  median: percentile(xs, 50),
  p99: percentile(xs, 99),
});

export function latencySummary(runs: readonly TimedRequest[]): LatencySummary {
  const timed = runs.filter((r) => r.times.length > 0);
  const ttfts = timed.map((r) => r.times[0] - r.start);
  const tpots = timed
    .map((r) => ({ times: r.times, tokens: r.tokens ?? r.times.length }))
    .filter((r) => r.tokens > 1)
    .map((r) => ((r.times.at(-1) as number) - r.times[0]) / (r.tokens - 1));
  const itls = timed.flatMap((r) => r.times.slice(1).map((t, i) => t - r.times[i]));
  return { ttftMs: summary(ttfts), tpotMs: summary(tpots), itlMs: summary(itls) };
}
