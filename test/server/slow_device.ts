// What serve_admission.test.ts and its executor thread's module (slow_device_entry.ts) share; the entry
// runs the executor when imported, so the test imports this instead.
import type { ExecutorStats } from "../../src/executor/executor.ts";

/** How long the slowed device takes a step. */
export const SLOW_STEP_MS = 100;

/** The executor's stats with what the test checks (the entry's stats() adds it). */
export interface SlowDeviceStats extends ExecutorStats {
  slow: { admittedAt: number[]; samplePolls: number; forwardPolls: number };
}
