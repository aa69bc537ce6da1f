// `kiln serve` while the device computes. The executor runs on its own thread (executor/thread/), so
// the HTTP thread accepts clients whatever the device does; the executor's thread must still take their
// requests while it waits for a step, which it does by turning its event loop (executor.ts
// readWhenReady), not by blocking in the read: a loop that blocked for each step took one request per
// step (1,024 clients took 1,024 steps on the H200 when both shared one thread). The same holds while a
// beam request runs, whose steps are synchronous (host logits: enqueueForward, forwardReady).
// The bundled model on the CPU backend, its device made to need 100 ms a step on the executor's thread
// (slow_device_entry.ts: longer than the CPU's own step, which blocks that thread as host work does),
// and 48 clients at once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ExecutorThread } from "../../src/executor/thread/executor_thread.ts";
import { post } from "./load_run.ts";
import { type BundledServer, bundledServer, kvIdle, until } from "./server_helpers.ts";
import { SLOW_STEP_MS, type SlowDeviceStats } from "./slow_device.ts";

const CLIENTS = 48;

let s: BundledServer;
let ex: ExecutorThread;
before(async () => {
  s = await bundledServer({
    executor: { maxNumSeqs: 64 },
    executorEntry: new URL("./slow_device_entry.ts", import.meta.url),
  });
  ex = s.server.ctx.model.executor as ExecutorThread;
});
after(() => s.close());

const slow = () => (ex.stats() as SlowDeviceStats).slow;

/** Posts CLIENTS completions at once; returns the step (iteration) at which each reached the executor. */
async function burst(): Promise<number[]> {
  const before = slow().admittedAt.length;
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
  const admittedAt = slow().admittedAt.slice(before);
  assert.equal(admittedAt.length, CLIENTS);
  return admittedAt;
}

test(`${CLIENTS} clients at once are admitted within a few steps of a device that needs ${SLOW_STEP_MS} ms a step`, async () => {
  const polled = slow().samplePolls;
  const admittedAt = await burst();
  assert.ok(slow().samplePolls > polled, "the executor never polled the device: it blocks in the read");
  const spread = Math.max(...admittedAt) - Math.min(...admittedAt);
  assert.ok(
    spread <= 3,
    `admitting ${CLIENTS} clients took ${spread} steps (at steps ${admittedAt.join(" ")})`,
  );
  assert.ok(await until(() => kvIdle(s.server).idle), kvIdle(s.server).detail);
});

test(`with a beam request running (synchronous steps), ${CLIENTS} clients are still admitted within a few steps`, async () => {
  const polled = slow().forwardPolls;
  const beam = await ex.enqueue({ prompt: [21, 22, 23, 24], maxNewTokens: 400, beamWidth: 2, endId: [] });
  const beamEvents = (async () => {
    const events = [];
    for await (const e of ex.results(beam)) events.push(e);
    return events;
  })();
  assert.ok(await until(() => ex.stats().numIterations > 1 && ex.stats().numRunning === 1));
  const admittedAt = await burst();
  assert.ok(ex.cancel(beam), "the beam request ended before the clients: the test lost its point");
  assert.equal((await beamEvents).at(-1)?.finishReason, "cancelled");
  assert.ok(
    slow().forwardPolls > polled,
    "the executor never polled a synchronous step: it blocks in forward",
  );
  const spread = Math.max(...admittedAt) - Math.min(...admittedAt);
  assert.ok(
    spread <= 3,
    `admitting ${CLIENTS} clients beside a beam request took ${spread} steps (at steps ${admittedAt.join(" ")})`,
  );
  assert.ok(await until(() => kvIdle(s.server).idle), kvIdle(s.server).detail);
});
