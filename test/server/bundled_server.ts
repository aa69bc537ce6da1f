// Shared by the server route tests: a fastify instance with the given route modules over a
// ServerContext on the bundled model (CPU executor, temp engine cache, prom-client metrics).
import Fastify, { type FastifyInstance } from "fastify";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import type { Executor, ExecutorOptions } from "../../src/executor/executor.ts";
import { ChatTemplate } from "../../src/runtime/chat_template.ts";
import { openExecutor } from "../../src/runtime/open_executor.ts";
import { InFlight } from "../../src/server/in_flight.ts";
import { createServerMetrics } from "../../src/server/metrics.ts";
import type { ServedModel, ServerContext, ServerSettings } from "../../src/server/server_context.ts";
import { tempCache } from "../helpers/tiny_model.ts";

export type RouteModule = (app: FastifyInstance, ctx: ServerContext) => void;

export interface BundledServer {
  app: FastifyInstance;
  /** Tests may swap ctx.inFlight (a shutting-down one, a smaller limit). */
  ctx: ServerContext;
  executor: Executor;
  close(): Promise<void>;
}

export async function bundledServer(
  routes: RouteModule[],
  o: { settings?: Partial<ServerSettings>; executor?: ExecutorOptions } = {},
): Promise<BundledServer> {
  const cache = tempCache();
  let ctx: BundledServer["ctx"] | null = null;
  const executor = openExecutor(BUNDLED_MODEL_DIR, {
    backend: "cpu",
    cacheDir: cache.dir,
    ...o.executor,
    onIteration: (s) => ctx?.metrics.iteration(s),
  });
  const { config, tokenizer, eosTokenIds } = executor.session;
  const model: ServedModel = {
    name: "default",
    executor,
    tokenizer,
    chatTemplate: ChatTemplate.fromDir(BUNDLED_MODEL_DIR),
    maxModelLen: config.maxSeqLen,
    vocabSize: config.model.vocabSize,
    eosTokenIds,
    created: Math.floor(Date.now() / 1000),
    backend: "cpu",
    kvCapacityTokens: executor.stats().kv.numBlocks * executor.stats().kv.tokensPerBlock,
  };
  const settings: ServerSettings = {
    apiKey: null,
    maxPromptTokens: config.maxSeqLen,
    maxConcurrent: Number.POSITIVE_INFINITY,
    requestTimeoutMs: Number.POSITIVE_INFINITY,
    bodyLimit: 1 << 20,
    ...o.settings,
  };
  ctx = {
    model,
    metrics: createServerMetrics(model),
    settings,
    version: "test",
    get shuttingDown() {
      return this.inFlight.shuttingDown;
    },
    inFlight: new InFlight(settings.maxConcurrent),
  };
  // forceCloseConnections: a socket fetch opened but never used must not hold up close().
  const app = Fastify({ logger: false, forceCloseConnections: true });
  for (const r of routes) r(app, ctx);
  await app.ready();
  return {
    app,
    ctx,
    executor,
    async close() {
      await app.close();
      await executor.shutdown({ drain: false });
      cache.cleanup();
    },
  };
}

/** The `data:` events of an SSE body, parsed. */
export function sseEvents(body: string): unknown[] {
  const out: unknown[] = [];
  for (const block of body.split("\n\n")) {
    if (block === "") continue;
    if (!block.startsWith("data: ")) throw new Error(`not an SSE data event: ${JSON.stringify(block)}`);
    out.push(JSON.parse(block.slice("data: ".length)));
  }
  return out;
}
