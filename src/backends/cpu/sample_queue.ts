// The CPU backend's queue of sampled steps (ExecutionBackend.enqueueSample / collectSample): a step
// runs eagerly when it is queued and its tokens wait in the queue until collected. It keeps the CUDA
// sampler's rules (cuda/device_sampler.ts) so a caller that breaks them fails here, in CI, too:
// tickets are collected once, in queue order; a step is fed only from the last queued ticket (whose
// tokens stay after it is collected, as the device's output slot does); queuing a third ticket while
// two are uncollected drops them (an abandoned generation).
import type { SampleTicket } from "../backend.ts";

export type Sampled = { tokens: Int32Array; logProbs: Float32Array };

export class SampleQueue {
  private tickets = 0;
  private collected = 0;
  /** Results of the uncollected tickets, by id. */
  private readonly pending = new Map<number, Sampled>();
  /** The last queued ticket's tokens: what the next step may be fed. */
  private lastTokens: Int32Array | null = null;

  /** The last queued ticket's id (−1 before any). */
  get lastTicket(): number {
    return this.tickets - 1;
  }

  /** The tokens a step fed from `from` reads (checkFeed has made it the last queued ticket). */
  tokensOf(from: SampleTicket): Int32Array {
    if (from.id !== this.lastTicket || !this.lastTokens)
      throw new Error(`internal: ticket ${from.id} is not the last queued one`);
    return this.lastTokens;
  }

  /** Stores a step's result under the next ticket. */
  push(result: Sampled): SampleTicket {
    if (this.tickets - this.collected >= 2) {
      this.pending.clear();
      this.collected = this.tickets;
    }
    const id = this.tickets++;
    this.pending.set(id, result);
    this.lastTokens = result.tokens;
    return { id, rows: result.tokens.length };
  }

  /** The queued result of `ticket`, which must be the next to collect. */
  collect(ticket: SampleTicket): Sampled {
    const r = this.pending.get(ticket.id);
    if (ticket.id !== this.collected || !r)
      throw new Error(`internal: collecting ticket ${ticket.id}, but ${this.collected} is next`);
    this.pending.delete(ticket.id);
    this.collected++;
    return { tokens: r.tokens.slice(), logProbs: r.logProbs.slice() };
  }
}
