// A ServedExecutor that answers from a script instead of a model: tests of the routes' mapping (n > 1,
// beams, errors) and of admission run without an engine. Each request's events come from
// `script(request, id)`; `gate` (when given) holds every event until it resolves.
import type { ExecutorRequest, ExecutorStats, ResultEvent } from "../../src/executor/executor.ts";
import type { RequestFinishReason } from "../../src/executor/request.ts";
import { buildApp } from "../../src/server/app.ts";
import { InFlight } from "../../src/server/in_flight.ts";
import type {
  FinishedRequest,
  ServedExecutor,
  ServerContext,
  ServerMetrics,
} from "../../src/server/server_context.ts";

export type ScriptedEvent = Partial<ResultEvent> & {
  sequenceIndex?: number;
  isFinal?: boolean;
  tokenIds: number[];
  text: string;
  finishReason: RequestFinishReason | null;
};

/** An idle executor's stats: nothing queued or running, one free KV block of 16 tokens. */
export function idleStats(): ExecutorStats {
  return {
    numQueued: 0,
    numRunning: 0,
    numRunningSequences: 0,
    numIterations: 0,
    numContextTokens: 0,
    numGeneratedTokens: 0,
    numPreemptions: 0,
    kv: {
      numBlocks: 1,
      tokensPerBlock: 16,
      numFree: 1,
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

export class ScriptedExecutor implements ServedExecutor {
  readonly requests: ExecutorRequest[] = [];
  readonly cancelled: number[] = [];
  private readonly queues = new Map<number, { events: ScriptedEvent[]; cancelled: boolean; done: boolean }>();
  /** Every request ever enqueued (queues: those whose results were not taken yet). */
  private readonly live = new Map<number, { events: ScriptedEvent[]; cancelled: boolean; done: boolean }>();
  private nextId = 1;
  alive = true;

  constructor(
    private readonly script: (r: ExecutorRequest, id: number) => ScriptedEvent[],
    /** Resolves when events may flow (default: at once). */
    private readonly gate: () => Promise<void> = async () => {},
  ) {}

  enqueue(r: ExecutorRequest): number {
    const id = this.nextId++;
    this.requests.push(r);
    const q = { events: this.script(r, id), cancelled: false, done: false };
    this.queues.set(id, q);
    this.live.set(id, q);
    return id;
  }

  /** As the Executor's: once per request, before or after it finished or was cancelled. */
  results(id: number): AsyncIterable<ResultEvent> {
    const q = this.queues.get(id);
    if (!q) throw new Error(`no results for ${id}`);
    this.queues.delete(id);
    const gate = this.gate;
    return (async function* () {
      const timing = { arrival: 0, firstScheduled: 0, firstToken: 1, last: 1 };
      for (const e of q.events) {
        if (!q.cancelled) await gate();
        if (q.cancelled) {
          yield {
            requestId: id,
            tokenIds: [],
            logProbs: [],
            cumLogProb: 0,
            text: "",
            finishReason: "cancelled",
            sequenceIndex: 0,
            isFinal: true,
            timing,
          };
          return;
        }
        yield {
          requestId: id,
          logProbs: e.tokenIds.map(() => -0.5),
          cumLogProb: 0,
          sequenceIndex: 0,
          isFinal: e.finishReason !== null,
          timing,
          ...e,
        } as ResultEvent;
      }
      q.done = true;
    })();
  }

  cancel(id: number): boolean {
    const q = this.live.get(id);
    if (!q || q.cancelled || q.done) return false;
    this.cancelled.push(id);
    q.cancelled = true;
    return true;
  }

  stats(): ExecutorStats {
    return idleStats();
  }

  async shutdown(): Promise<void> {}
}

/** Metrics that keep the finished requests they were told of (and render nothing). */
export class RecordingMetrics implements ServerMetrics {
  readonly finished: FinishedRequest[] = [];
  requestFinished(r: FinishedRequest): void {
    this.finished.push(r);
  }
  iteration(): void {}
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "" };
  }
}

/** A context over `executor` with a model of 100 ids, no tokenizer or template unless given. */
export function scriptedContext(
  executor: ServedExecutor,
  over: {
    maxConcurrent?: number;
    apiKey?: string | null;
    bodyLimit?: number;
    requestTimeoutMs?: number;
  } = {},
): ServerContext & { metrics: RecordingMetrics } {
  const inFlight = new InFlight(over.maxConcurrent ?? Number.POSITIVE_INFINITY);
  return {
    model: {
      name: "scripted",
      executor,
      tokenizer: null,
      chatTemplate: null,
      maxModelLen: 64,
      vocabSize: 100,
      eosTokenIds: [2],
      created: 1,
      backend: "cpu",
      kvCapacityTokens: 1024,
    },
    metrics: new RecordingMetrics(),
    settings: {
      apiKey: over.apiKey ?? null,
      maxPromptTokens: 64,
      maxConcurrent: over.maxConcurrent ?? Number.POSITIVE_INFINITY,
      requestTimeoutMs: over.requestTimeoutMs ?? Number.POSITIVE_INFINITY,
      bodyLimit: over.bodyLimit ?? 1024 * 1024,
    },
    version: "test",
    get shuttingDown() {
      return inFlight.shuttingDown;
    },
    inFlight,
  };
}

export function scriptedApp(executor: ServedExecutor, over: Parameters<typeof scriptedContext>[1] = {}) {
  const ctx = scriptedContext(executor, over);
  return { ctx, app: buildApp(ctx) };
}

/** The JSON chunks of an SSE body, and whether it ended with [DONE]. */
export function parseSse(body: string): { chunks: Record<string, unknown>[]; done: boolean } {
  const events = body.split("\n\n").filter((e) => e !== "");
  const chunks: Record<string, unknown>[] = [];
  let done = false;
  for (const e of events) {
    if (!e.startsWith("data: ")) throw new Error(`not an SSE data event: ${JSON.stringify(e)}`);
    const data = e.slice(6);
    if (done) throw new Error("an event after [DONE]");
    if (data === "[DONE]") done = true;
    else chunks.push(JSON.parse(data));
  }
  return { chunks, done };
}
