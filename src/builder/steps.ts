// A build is a generator that yields between units of work (one weight written), so it can be driven
// two ways: to the end on this thread (the library's synchronous calls), or between event-loop turns
// (the CLI), where an abort (Ctrl-C) closes the generator and its `finally` blocks remove what it wrote.
import { setImmediate as nextTurn } from "node:timers/promises";

/** A build's steps: each `next()` does one unit of work; the return value is the result. */
export type Steps<T> = Generator<void, T>;

/** Runs `steps` to the end on this thread. */
export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs `steps` between event-loop turns. When `signal` aborts, the generator is closed (cleaning up)
 * and the signal's reason is thrown. */
export async function runStepsUntil<T>(steps: Steps<T>, signal?: AbortSignal): Promise<T> {
  for (;;) {
    if (signal?.aborted) {
      steps.return(undefined as T);
      throw signal.reason;
    }
    const r = steps.next();
    if (r.done) return r.value;
    await nextTurn();
  }
}
