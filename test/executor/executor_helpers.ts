// Shared by the executor tests: collect a request's results, wait a few loop iterations, check the
// idle invariant, and the tiny engine most of them run on.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { Executor, type ExecutorOptions, type ExecutorSession } from "../../src/executor/executor.ts";
import type { ResultEvent } from "../../src/executor/request_results.ts";
import type { KvCacheDtype } from "../../src/runtime/kv_cache_config.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { Session } from "../../src/runtime/session.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";

export interface Collected {
  tokens: number[];
  logProbs: number[];
  text: string;
  finishReason: string | null;
  events: ResultEvent[];
}

export async function collect(ex: Executor, id: number): Promise<Collected> {
  const out: Collected = { tokens: [], logProbs: [], text: "", finishReason: null, events: [] };
  for await (const ev of ex.results(id)) {
    assert.equal(out.finishReason, null, "an event after the last one");
    out.events.push(ev);
    out.tokens.push(...ev.tokenIds);
    out.logProbs.push(...ev.logProbs);
    out.text += ev.text;
    out.finishReason = ev.finishReason;
  }
  return out;
}

/** Lets the executor's loop run about n iterations. */
export async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Idle: nothing queued or running, every block free or cached and unreferenced. */
export function assertIdle(ex: Executor): void {
  ex.kv.audit();
  const s = ex.stats();
  assert.equal(s.numQueued, 0);
  assert.equal(s.numRunning, 0);
  assert.equal(s.kv.numFree + s.kv.numCachedFree, s.kv.numBlocks, "blocks leaked");
  assert.equal(s.kv.numUsed, 0);
}

/** Bounds a test puts on its executor's CPU backend (the CUDA backend's, made small). */
export interface BackendBounds {
  maxLogitRows?: number;
  /** false: the backend's step queues (enqueueSample, enqueueForward) are hidden, so the executor runs
   * every step synchronously, blocking in forward (or forwardSample). */
  queue?: false;
}

/** The executor tests' tiny Llama (seed 7, KV blocks of 4 tokens): its engine directory, a ModelRunner
 * over it (the reference), and `executor(options, bounds)`, whose executors are checked idle and shut
 * down after every test; every backend's KV cache is stored as `kvCacheDtype`. Registers its own
 * node:test hooks. */
export function tinyEngineExecutors(
  defaults: ExecutorOptions = {},
  kvCacheDtype: KvCacheDtype = "auto",
): {
  dir: string;
  runner: ModelRunner;
  executor(options?: ExecutorOptions, bounds?: BackendBounds): Executor;
} {
  const model = writeTinyModel("llama", 7);
  const dir = join(model.dir, "engine");
  buildEngine(model.dir, dir, { kvBlockSize: 4 });
  const runner = ModelRunner.fromEngine(dir, undefined, { dtype: kvCacheDtype });
  after(() => {
    runner.dispose();
    model.cleanup();
  });
  const open: Executor[] = [];
  afterEach(async () => {
    for (const ex of open.splice(0)) {
      assertIdle(ex);
      await ex.shutdown();
    }
  });
  const executor = (options: ExecutorOptions = {}, bounds: BackendBounds = {}) => {
    const session = Session.open(dir, { kvCacheDtype });
    const { queue, ...rest } = bounds;
    for (const [name, value] of Object.entries(rest)) Object.defineProperty(session.backend, name, { value });
    const ex = new Executor(queue === false ? withoutQueue(session) : session, { ...defaults, ...options });
    open.push(ex);
    return ex;
  };
  return { dir, runner, executor };
}

/** `s` over its backend with the step queues hidden (the backend itself still uses them inside): the
 * executor then runs every step synchronously, blocking in forward / forwardSample. */
export function withoutQueue(s: Session): ExecutorSession {
  const hidden = new Set<PropertyKey>(["enqueueSample", "collectSample", "enqueueForward", "collectForward"]);
  const backend = new Proxy(s.backend, {
    get(target, key) {
      if (hidden.has(key)) return undefined;
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return {
    backend,
    config: s.config,
    tokenizer: s.tokenizer,
    generationDefaults: s.generationDefaults,
    eosTokenIds: s.eosTokenIds,
    dispose: () => s.dispose(),
  };
}

/** Deterministic uniform draws in [0, 1). */
export function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
