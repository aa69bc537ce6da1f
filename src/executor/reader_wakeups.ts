// Wakes the readers of result channels a slice at a time, one slice per turn of the event loop, instead
// of all at once. A step's tokens reach every running request's channel in one synchronous burst; each
// woken reader then does its own work (a server writes an SSE chunk to its socket: a syscall per
// stream). Woken together, 1,024 readers run back to back before the executor's loop can queue the
// next step, so the host's delivery of step N sits between the device finishing step N + 1 and the
// host queuing step N + 2. In slices, the loop's next turn (read the step that finished, schedule and
// queue the next) comes after at most one slice, and delivery fills the time the device computes.
// Each channel's events keep their order; a slice's readers run in the order they were woken. Behind an
// executor thread (thread/executor_thread.ts) the serving thread's queues wake the same way, so the
// server accepts and parses new requests between slices of a step's delivery.
//
//   step N read → wake(r1 … r1024) → [slice 1: r1 … r8] → loop: queue step N + 2 → [slice 2] → poll → …

/** Readers woken per turn of the event loop: small, so the loop's next poll waits for little; a turn
 * costs far less than a reader's socket write (scripts/serve_device_sim.ts compared 4 … 256 and
 * none; docs/PERFORMANCE.md). */
export const READERS_PER_TURN = 8;

export class ReaderWakeups {
  /** Readers to resume, from `head` on (those before it ran). */
  private pending: (() => void)[] = [];
  private head = 0;
  private scheduled = false;

  constructor(private readonly perTurn = READERS_PER_TURN) {}

  /** Runs `resume` in a later turn of the event loop, after those woken before it. */
  wake(resume: () => void): void {
    this.pending.push(resume);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    const end = Math.min(this.head + this.perTurn, this.pending.length);
    const now = this.pending;
    for (let i = this.head; i < end; i++) now[i]();
    this.head = end;
    if (this.head < this.pending.length) {
      setImmediate(this.flush);
      return;
    }
    this.pending = [];
    this.head = 0;
    this.scheduled = false;
  };
}
