// Ctrl-C and SIGTERM during a command's build: an AbortSignal that aborts with BuildInterruptedError
// (exit 130 / 143), so the build stops between two weights and removes its partial engine. The
// handlers are removed once the build is over: a signal after it ends the process as usual.
import { BuildInterruptedError } from "../builder/errors.ts";

export async function whileInterruptible<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (s: NodeJS.Signals) => controller.abort(new BuildInterruptedError(s));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await work(controller.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
