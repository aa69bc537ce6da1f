// Drives a step generator (a build) between event-loop turns so that SIGINT / SIGTERM handlers can
// run: on a signal the generator is closed (its `finally` blocks remove what it wrote) and the
// command fails with BuildInterruptedError (exit 130 / 143).
import { setImmediate as nextTurn } from "node:timers/promises";
import { BuildInterruptedError } from "../builder/errors.ts";

export async function runInterruptible<T>(steps: Generator<void, T>): Promise<T> {
  const got: { signal: NodeJS.Signals | null } = { signal: null };
  const onSignal = (s: NodeJS.Signals) => {
    got.signal = s;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    for (;;) {
      if (got.signal) {
        steps.return(undefined as T);
        throw new BuildInterruptedError(got.signal);
      }
      const r = steps.next();
      if (r.done) return r.value;
      await nextTurn();
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
