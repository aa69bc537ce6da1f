// A ServerMetrics that records nothing: what `kiln serve` uses until server/metrics.ts (prom-client)
// takes its place. render() is a valid, empty Prometheus text exposition.
import type { ServerMetrics } from "./server_context.ts";

export class NullMetrics implements ServerMetrics {
  requestFinished(): void {}
  iteration(): void {}
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "" };
  }
}
