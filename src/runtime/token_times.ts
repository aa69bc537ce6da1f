// When the executor produced each token of a streaming request, for the benchmarks' latency figures
// (bench.ts, throughput_bench.ts).
import type { Executor } from "../executor/executor.ts";

/** The time of each token of streaming request `id` (a step's tokens share one): the executor's clock
 * when it read the step that sampled the token (the event's timing.last). Not the time this loop
 * takes the event: the executor resumes readers a few per turn of the event loop
 * (executor/reader_wakeups.ts), so with many requests a reader takes several steps' events at once. */
export async function tokenTimes(executor: Executor, id: number): Promise<number[]> {
  const stamps: number[] = [];
  for await (const ev of executor.results(id)) {
    const t = ev.timing.last as number;
    for (const _ of ev.tokenIds) stamps.push(t);
  }
  return stamps;
}
