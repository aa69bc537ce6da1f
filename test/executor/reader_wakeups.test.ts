// ReaderWakeups resumes result readers a slice per turn of the event loop, in the order they were
// woken, so the executor's loop gets a turn between slices (reader_wakeups.ts); a ResultChannel given
// one resumes its reader through it and loses no event.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EventQueue } from "../../src/executor/event_queue.ts";
import { ReaderWakeups } from "../../src/executor/reader_wakeups.ts";
import { ResultChannel, type ResultEvent } from "../../src/executor/request_results.ts";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

test("resumes at most perTurn readers a turn, in the order woken, and every one of them", async () => {
  const w = new ReaderWakeups(4);
  const ran: number[] = [];
  for (let i = 0; i < 10; i++) w.wake(() => ran.push(i));
  assert.deepEqual(ran, [], "a reader resumed in the turn that woke it");
  const seen: number[][] = [];
  for (let t = 0; t < 4; t++) {
    await turn();
    seen.push([...ran]);
  }
  assert.deepEqual(seen[0], [0, 1, 2, 3]);
  assert.deepEqual(seen[1], [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(seen[2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(seen[3], seen[2]);
});

test("a reader woken while earlier slices wait runs after them", async () => {
  const w = new ReaderWakeups(2);
  const ran: string[] = [];
  for (const n of ["a", "b", "c"]) w.wake(() => ran.push(n));
  await turn();
  w.wake(() => ran.push("d"));
  await turn();
  await turn();
  assert.deepEqual(ran, ["a", "b", "c", "d"]);
});

test("a loop that takes a turn between reads gets one between every slice", async () => {
  const w = new ReaderWakeups(3);
  const order: string[] = [];
  for (let i = 0; i < 9; i++) w.wake(() => order.push(`r${i}`));
  // The executor's loop: queued after the wake-ups, it polls once a turn.
  for (let t = 0; t < 3; t++) {
    await turn();
    order.push("loop");
  }
  assert.deepEqual(order, ["r0", "r1", "r2", "loop", "r3", "r4", "r5", "loop", "r6", "r7", "r8", "loop"]);
});

test("a ResultChannel resumes its reader through the wake-ups and keeps every event in order", async () => {
  const w = new ReaderWakeups(1);
  const timing = { arrival: 0, firstScheduled: null, firstToken: null, last: null };
  const queues = [0, 1].map(() => new EventQueue(w));
  const channels = queues.map((q, id) => new ResultChannel(id, true, timing, q));
  const got: ResultEvent[][] = [[], []];
  const readers = queues.map(async (q, i) => {
    for await (const ev of q) got[i].push(ev);
  });
  await turn(); // both readers wait
  for (let k = 0; k < 3; k++)
    for (const ch of channels)
      ch.push({
        sequenceIndex: 0,
        tokenIds: [k],
        logProbs: [0],
        text: "",
        finishReason: k === 2 ? "length" : null,
        isFinal: k === 2,
      });
  assert.deepEqual(
    got.map((g) => g.length),
    [0, 0],
    "a reader resumed before the wake-ups ran it",
  );
  await turn();
  assert.deepEqual(
    got.map((g) => g.length),
    [3, 0],
    "one reader a turn: the first drains its three events, the second waits",
  );
  await Promise.all(readers);
  for (const g of got) {
    assert.deepEqual(
      g.map((e) => e.tokenIds[0]),
      [0, 1, 2],
    );
    assert.equal(g.at(-1)?.isFinal, true);
  }
});
