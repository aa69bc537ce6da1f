// An executor without a model, for measuring what `kiln serve` costs on the host per token: each
// iteration gives every running request one token through the real ResultChannel (as the Executor's
// output processor does), then yields one turn of the event loop (setImmediate, as the Executor's loop
// does between iterations). The "device step" is free, so an iteration lasts as long as the host work
// its tokens cause: the channel pushes and whatever consumes them (the server's routes and sockets, or
// an in-process reader).
//
//   iteration k:  for each running request r: push(token k of r)  →  setImmediate  →  iteration k+1
import { setImmediate as turn } from "node:timers/promises";
import { EventQueue } from "../../src/executor/event_queue.ts";
import type { ExecutorRequest, ExecutorStats } from "../../src/executor/executor.ts";
import { ResultChannel, type ResultEvent } from "../../src/executor/request_results.ts";
import type { ServedExecutor } from "../../src/server/server_context.ts";

/** One iteration as the loop saw it. */
export interface PacedIteration {
  /** performance.now() at its start. */
  start: number;
  /** Requests given a token. */
  running: number;
}

interface Running {
  channel: ResultChannel;
  generated: number;
  maxNewTokens: number;
}

/** A word-sized token's text, as a real tokenizer's delta for English text would be. */
const TOKEN_TEXT = " tok";
const TOKEN_ID = 42;

export class PacedExecutor implements ServedExecutor {
  readonly iterations: PacedIteration[] = [];
  /** Tokens pushed into channels. */
  tokens = 0;
  alive = true;
  /** While set, no iteration runs: requests queue up until every stream of the load is in. */
  held = false;
  private nextId = 1;
  private readonly running = new Map<number, Running>();
  private readonly untaken = new Map<number, EventQueue>();
  private wake: (() => void) | null = null;
  private closing = false;
  private readonly loop: Promise<void>;

  constructor() {
    this.loop = this.run();
  }

  enqueue(r: ExecutorRequest): number {
    const id = this.nextId++;
    const timing = { arrival: Date.now(), firstScheduled: null, firstToken: null, last: null };
    const queue = new EventQueue();
    const channel = new ResultChannel(id, r.streaming ?? false, timing, queue, r.clientId);
    this.running.set(id, { channel, generated: 0, maxNewTokens: r.maxNewTokens ?? 16 });
    this.untaken.set(id, queue);
    this.wake?.();
    return id;
  }

  results(id: number): AsyncIterable<ResultEvent> {
    const queue = this.untaken.get(id);
    if (!queue) throw new Error(`request ${id} has no results to take`);
    this.untaken.delete(id);
    return queue;
  }

  cancel(id: number): boolean {
    const r = this.running.get(id);
    if (!r) return false;
    this.running.delete(id);
    r.channel.push({
      sequenceIndex: 0,
      tokenIds: [],
      logProbs: [],
      text: "",
      finishReason: "cancelled",
      isFinal: true,
    });
    return true;
  }

  stats(): ExecutorStats {
    return {
      numQueued: 0,
      numRunning: this.running.size,
      numRunningSequences: this.running.size,
      numIterations: this.iterations.length,
      numContextTokens: 0,
      numGeneratedTokens: this.tokens,
      numPreemptions: 0,
      kv: {
        numBlocks: 1 << 20,
        tokensPerBlock: 16,
        numFree: 1 << 20,
        numCached: 0,
        numCachedFree: 0,
        numUsed: 0,
        usage: 0,
        prefixQueryTokens: 0,
        prefixHitTokens: 0,
        numEvictions: 0,
      },
    };
  }

  /** Lets iterations run again. */
  release(): void {
    this.held = false;
    this.wake?.();
  }

  async shutdown(): Promise<void> {
    this.closing = true;
    this.held = false;
    for (const id of [...this.running.keys()]) this.cancel(id);
    this.wake?.();
    await this.loop;
    this.alive = false;
  }

  private async run(): Promise<void> {
    while (!this.closing) {
      if (this.running.size === 0 || this.held) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = null;
        continue;
      }
      this.iterations.push({ start: performance.now(), running: this.running.size });
      const now = Date.now();
      for (const [id, r] of this.running) {
        const t = r.channel.timing;
        t.firstScheduled ??= now;
        t.firstToken ??= now;
        t.last = now;
        r.generated++;
        this.tokens++;
        const last = r.generated >= r.maxNewTokens;
        if (last) this.running.delete(id);
        r.channel.push({
          sequenceIndex: 0,
          tokenIds: [TOKEN_ID],
          logProbs: [-0.5],
          text: TOKEN_TEXT,
          finishReason: last ? "length" : null,
          isFinal: last,
        });
      }
      await turn();
    }
  }
}
