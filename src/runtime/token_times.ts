// When each token of a streaming executor request arrived, for the benchmarks' latency figures
// (bench.ts, throughput_bench.ts).
import type { Executor } from "../executor/executor.ts";
import type { ResultEvent } from "../executor/request_results.ts";

/** The time of each token of streaming request `id` (a step's tokens share one): `at` of the result
 * event that carried it, by default the executor's clock at its emission. */
export async function tokenTimes(
  executor: Executor,
  id: number,
  at: (ev: ResultEvent) => number = (ev) => ev.timing.last as number,
): Promise<number[]> {
  const stamps: number[] = [];
  for await (const ev of executor.results(id)) {
    const t = at(ev);
    for (const _ of ev.tokenIds) stamps.push(t);
  }
  return stamps;
}
