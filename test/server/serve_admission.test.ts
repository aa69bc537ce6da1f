// `kiln serve` while the device computes: the executor waits for a step by turning the event loop
// (executor.ts readWhenReady), not by blocking in the read, so the server accepts and admits a burst of
// clients at once. libuv accepts one connection per turn of the event loop: a loop that blocked for each
// step admitted one client per step (1,024 clients took 1,024 steps on the H200). The same holds while
// a beam request runs, whose steps are synchronous (host logits: enqueueForward, forwardReady).
// The bundled model on the CPU backend, with a device that needs 100 ms a step (sampleReady and
// forwardReady say no until then; longer than the CPU's own step, which blocks the event loop as host
// work does), and 48 clients at once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ExecutionBackend, ForwardTicket, SampleTicket } from "../../src/backends/backend.ts";
import type { Executor, ExecutorRequest } from "../../src/executor/executor.ts";
import { post } from "./load_run.ts";
import { type BundledServer, bundledServer, kvIdle, until } from "./server_helpers.ts";

const CLIENTS = 48;
const STEP_MS = 100;

let s: BundledServer;
let polls: { samplePolls: number; forwardPolls: number };
before(async () => {
  s = await bundledServer({ executor: { maxNumSeqs: 64 } });
  polls = slowDevice(s.server.ctx.model.executor as Executor); // the served executor is the executor itself
});
after(() => s.close());

/** Makes both of the backend's queues answer STEP_MS after a step is queued; counts the polls. */
function slowDevice(ex: Executor): { samplePolls: number; forwardPolls: number } {
  const polls = { samplePolls: 0, forwardPolls: 0 };
  const b = ex.session.backend;
  const enqueue = (b.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>).bind(b);
  const enqueueForward = (b.enqueueForward as NonNullable<ExecutionBackend["enqueueForward"]>).bind(b);
  const queuedAt = new Map<string, number>();
  b.enqueueSample = (step, p, t, feed) => {
    const ticket = enqueue(step, p, t, feed);
    queuedAt.set(`s${ticket.id}`, performance.now());
    return ticket;
  };
  b.enqueueForward = (step) => {
    const ticket = enqueueForward(step);
    queuedAt.set(`f${ticket.id}`, performance.now());
    return ticket;
  };
  const ready = (key: string) => performance.now() - (queuedAt.get(key) ?? 0) >= STEP_MS;
  b.sampleReady = (ticket: SampleTicket) => {
    polls.samplePolls++;
    return ready(`s${ticket.id}`);
  };
  b.forwardReady = (ticket: ForwardTicket) => {
    polls.forwardPolls++;
    return ready(`f${ticket.id}`);
  };
  return polls;
}

/** Posts CLIENTS completions at once; returns the step (iteration) at which each reached the executor. */
async function burst(ex: Executor): Promise<number[]> {
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
  ex.enqueue = add;
  for (const r of replies) assert.equal(r.usage.completion_tokens, 12);
  assert.equal(admittedAt.length, CLIENTS);
  return admittedAt;
}

test(`${CLIENTS} clients at once are admitted within a few steps of a device that needs ${STEP_MS} ms a step`, async () => {
  const ex = s.server.ctx.model.executor as Executor;
  polls.samplePolls = 0;
  const admittedAt = await burst(ex);
  assert.ok(polls.samplePolls > 0, "the executor never polled the device: it blocks in the read");
  const spread = Math.max(...admittedAt) - Math.min(...admittedAt);
  assert.ok(
    spread <= 3,
    `admitting ${CLIENTS} clients took ${spread} steps (at steps ${admittedAt.join(" ")})`,
  );
  assert.ok(await until(() => kvIdle(s.server).idle), kvIdle(s.server).detail);
});

test(`with a beam request running (synchronous steps), ${CLIENTS} clients are still admitted within a few steps`, async () => {
  const ex = s.server.ctx.model.executor as Executor;
  polls.forwardPolls = 0;
  const beam = ex.enqueue({ prompt: [21, 22, 23, 24], maxNewTokens: 400, beamWidth: 2, endId: [] });
  const beamEvents = (async () => {
    const events = [];
    for await (const e of ex.results(beam)) events.push(e);
    return events;
  })();
  assert.ok(await until(() => ex.stats().numIterations > 1 && ex.stats().numRunning === 1));
  const admittedAt = await burst(ex);
  assert.ok(ex.cancel(beam), "the beam request ended before the clients: the test lost its point");
  assert.equal((await beamEvents).at(-1)?.finishReason, "cancelled");
  assert.ok(polls.forwardPolls > 0, "the executor never polled a synchronous step: it blocks in forward");
  const spread = Math.max(...admittedAt) - Math.min(...admittedAt);
  assert.ok(
    spread <= 3,
    `admitting ${CLIENTS} clients beside a beam request took ${spread} steps (at steps ${admittedAt.join(" ")})`,
  );
  assert.ok(await until(() => kvIdle(s.server).idle), kvIdle(s.server).detail);
});
