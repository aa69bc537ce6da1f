// A ServerMetrics that records nothing: what `kiln serve` uses until server/metrics.ts (prom-client)
// takes its place. render() is a valid, empty Prometheus text exposition.

import type { IterationStats } from "../executor/executor.ts";
import type { FinishedRequest, ServerMetrics } from "./server_context.ts";

export class NullMetrics implements ServerMetrics {
  requestFinished(_r: FinishedRequest): void {}
  iteration(_s: IterationStats): void {}
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "" };
  }
}
