// `kiln serve` while the device computes: the executor waits for a step by turning the event loop
// (executor.ts readWhenReady), not by blocking in the read, so the server accepts and admits a burst of
// clients at once. libuv accepts one connection per turn of the event loop: a loop that blocked for each
// step admitted one client per step (1,024 clients took 1,024 steps on the H200).
// The bundled model on the CPU backend, with a device that needs 100 ms a step (sampleReady says no
// until then; longer than the CPU's own step, which blocks the event loop as host work does), and 48
// clients at once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ExecutionBackend, SampleTicket } from "../../src/backends/backend.ts";
import type { Executor, ExecutorRequest } from "../../src/executor/executor.ts";
import { post } from "./load_run.ts";
import { type BundledServer, bundledServer, kvIdle, until } from "./server_helpers.ts";

const CLIENTS = 48;
const STEP_MS = 100;

let s: BundledServer;
before(async () => {
  s = await bundledServer({ executor: { maxNumSeqs: 64 } });
});
after(() => s.close());

test(`${CLIENTS} clients at once are admitted within a few steps of a device that needs ${STEP_MS} ms a step`, async () => {
  const ex = s.server.ctx.model.executor as Executor; // the served executor is the executor itself
  const b = ex.session.backend;
  const enqueue = (b.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>).bind(b);
  const queuedAt = new Map<number, number>();
  b.enqueueSample = (step, p, t, feed) => {
    const ticket = enqueue(step, p, t, feed);
    queuedAt.set(ticket.id, performance.now());
    return ticket;
  };
  let polls = 0;
  b.sampleReady = (ticket: SampleTicket) => {
    polls++;
    return performance.now() - (queuedAt.get(ticket.id) ?? 0) >= STEP_MS;
  };
  // The step (iteration) at which each request reached the executor.
  const admittedAt: number[] = [];
  const add = ex.enqueue.bind(ex);
  ex.enqueue = (r: ExecutorRequest) => {
    admittedAt.push(ex.stats().numIterations);
    return add(r);
  };

  const url = `${s.server.url}/v1/completions`;
  const replies = await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const r = await post(url, {
        model: "default",
        prompt: [11 + i, 12, 13, 14],
        max_tokens: 12,
        ignore_eos: true,
      });
      assert.equal(r.status, 200, await r.clone().text());
      return (await r.json()) as { usage: { completion_tokens: number } };
    }),
  );
  for (const r of replies) assert.equal(r.usage.completion_tokens, 12);
  assert.equal(admittedAt.length, CLIENTS);
  assert.ok(polls > 0, "the executor never polled the device: it blocks in the read");
  const spread = Math.max(...admittedAt) - Math.min(...admittedAt);
  assert.ok(
    spread <= 3,
    `admitting ${CLIENTS} clients took ${spread} steps (at steps ${admittedAt.join(" ")})`,
  );
  assert.ok(await until(() => kvIdle(s.server).idle), kvIdle(s.server).detail);
});
