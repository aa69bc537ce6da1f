// `kiln serve` as a function: opens the executor on a checkpoint or engine directory, on a thread of
// its own (runtime/open_executor_thread.ts: the executor's loop and this thread's HTTP work then run side
// by side), reads its tokenizer and chat template, builds the ServerContext (prom-client metrics on the
// served model) and
// the app with every route module (OpenAI, Triton, tokenize), starts the periodic stats line
// (stats_log.ts), listens, and gives back the URL and a graceful close:
//
//   close(): refuse new work (503) → wait for in-flight responses up to the shutdown timeout →
//            cancel what is left (each gets a 503 or an error event) → stop listening → stop the executor
import { basename, resolve } from "node:path";
import type { FastifyInstance } from "fastify";
import { type DestinationStream, destination, type Level, pino } from "pino";
import { BUNDLED_MODEL_DIR } from "../bundled_model.ts";
import { KilnError } from "../errors.ts";
import { ChatTemplate, NoChatTemplateError } from "../runtime/chat_template.ts";
import { openExecutorThread, type ThreadExecutorOptions } from "../runtime/open_executor_thread.ts";
import { KILN_VERSION } from "../version.ts";
import { buildApp, type RouteModule } from "./app.ts";
import { InFlight } from "./in_flight.ts";
import { createServerMetrics } from "./metrics.ts";
import type { ServedModel, ServerContext, ServerMetrics, ServerSettings } from "./server_context.ts";
import { StatsLog } from "./stats_log.ts";
import { tokenizeRoutes } from "./tokenize_routes.ts";
import { tritonRoutes } from "./triton.ts";

export interface ServeOptions {
  /** Checkpoint or engine directory (default: the bundled model). */
  model?: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  servedModelName?: string;
  apiKey?: string | null;
  /** Executor requests waiting at most (429 beyond). */
  maxQueue?: number;
  /** Executor requests running or waiting for HTTP requests at most (429 beyond). */
  maxConcurrent?: number;
  /** Seconds after arrival at which a request is cancelled (default: never). */
  requestTimeoutS?: number;
  maxPromptTokens?: number;
  /** A Jinja chat template file instead of the model's. */
  chatTemplate?: string;
  logLevel?: Level | "silent";
  /** Where the JSON log lines go (default stderr). */
  logDestination?: DestinationStream;
  /** Seconds in-flight requests get to finish at shutdown before they are cancelled (default 30). */
  shutdownTimeoutS?: number;
  /** Body size limit in bytes (default 4 MiB). */
  bodyLimit?: number;
  /** How the executor and its engine are opened (backend, dtype, KV cache, batch limits). */
  executor?: ThreadExecutorOptions;
  /** The executor thread's module (runtime/open_executor_thread.ts; default: openExecutor on `model`). */
  executorEntry?: URL;
  /** Where the routes report (default: createServerMetrics on the served model). */
  metrics?: ServerMetrics;
  /** Route modules after the built-in ones (OpenAI, Triton, tokenize). */
  routes?: RouteModule[];
  /** Seconds between the periodic stats lines (stats_log.ts; default 10); 0: none. */
  logStatsIntervalS?: number;
}

export interface RunningServer {
  /** http://host:port (the real port when 0 was asked). */
  url: string;
  port: number;
  ctx: ServerContext;
  app: FastifyInstance;
  /** The line `kiln serve` prints when ready. */
  readyLine: string;
  /** Graceful shutdown; resolves when the executor stopped. Idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_BODY_LIMIT = 4 * 2 ** 20;
export const DEFAULT_LOG_STATS_INTERVAL_S = 10;
export const DEFAULT_SHUTDOWN_TIMEOUT_S = 30;

/** The server cannot listen where it was asked to (the address is taken, not allowed or not here). */
export class ListenError extends KilnError {}

/** A listen failure the user can fix, as a ListenError naming the address and the fix; others as they are. */
function listenError(e: unknown, host: string, port: number): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  const where = `${host}:${port}`;
  if (code === "EADDRINUSE")
    return new ListenError(
      `${where} is already in use; stop what listens there, or pass --port with another port (0 picks a free one)`,
      { cause: e },
    );
  if (code === "EACCES")
    return new ListenError(
      `not allowed to listen on ${where}; use a port above 1023 or run with the right to bind it`,
      {
        cause: e,
      },
    );
  if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND")
    return new ListenError(
      `${host} is not an address of this machine; pass --host with one of its addresses (127.0.0.1, 0.0.0.0)`,
      { cause: e },
    );
  return e;
}
/** Connections the kernel may hold before they are accepted (Node's default is 511): a burst of
 * clients arriving while a long executor iteration holds the event loop waits there. */
const LISTEN_BACKLOG = 4096;

export async function openServer(o: ServeOptions = {}): Promise<RunningServer> {
  const dir = o.model ?? BUNDLED_MODEL_DIR;
  // The template is read before the build, so a broken --chat-template fails at once.
  let chatTemplate: ChatTemplate | null = null;
  try {
    chatTemplate = ChatTemplate.fromDir(
      dir,
      o.chatTemplate !== undefined ? { templateFile: o.chatTemplate } : {},
    );
  } catch (e) {
    if (!(e instanceof NoChatTemplateError)) throw e;
  }
  // The metrics and the stats line read the executor, which reports each iteration to them: bound
  // once both exist.
  let metrics: ServerMetrics | null = o.metrics ?? null;
  let statsLog: StatsLog | null = null;
  const { executor, tokenizer } = await openExecutorThread(
    dir,
    { ...o.executor, ...(o.maxQueue !== undefined ? { maxQueueSize: o.maxQueue } : {}) },
    (s) => {
      metrics?.iteration(s);
      statsLog?.iteration(s);
    },
    ...(o.executorEntry ? [o.executorEntry] : []),
  );
  const { config, eosTokenIds, kvCacheDtype } = executor.info;
  const kv = executor.stats().kv;
  const settings: ServerSettings = {
    apiKey: o.apiKey ?? null,
    maxPromptTokens: o.maxPromptTokens ?? config.maxSeqLen,
    maxConcurrent: o.maxConcurrent ?? Number.POSITIVE_INFINITY,
    requestTimeoutMs: o.requestTimeoutS !== undefined ? o.requestTimeoutS * 1000 : Number.POSITIVE_INFINITY,
    bodyLimit: o.bodyLimit ?? DEFAULT_BODY_LIMIT,
  };
  const inFlight = new InFlight(settings.maxConcurrent);
  const model: ServedModel = {
    name: o.servedModelName ?? basename(resolve(dir)),
    executor,
    tokenizer,
    chatTemplate,
    maxModelLen: config.maxSeqLen,
    vocabSize: config.model.vocabSize,
    eosTokenIds,
    created: Math.floor(Date.now() / 1000),
    backend: config.target.backend,
    kvCapacityTokens: kv.numBlocks * kv.tokensPerBlock,
  };
  metrics ??= createServerMetrics(model);
  const ctx: ServerContext = {
    model,
    metrics,
    settings,
    version: KILN_VERSION,
    get shuttingDown() {
      return inFlight.shuttingDown;
    },
    inFlight,
  };
  const logger = pino({ level: o.logLevel ?? "info" }, o.logDestination ?? destination(2));
  const app = buildApp(ctx, [tritonRoutes, tokenizeRoutes, ...(o.routes ?? [])], logger);
  const statsEveryS = o.logStatsIntervalS ?? DEFAULT_LOG_STATS_INTERVAL_S;
  let statsTimer: NodeJS.Timeout | null = null;
  if (statsEveryS > 0) {
    const log = new StatsLog(
      () => executor.stats(),
      (line) => logger.info(line, "stats"),
    );
    statsLog = log;
    statsTimer = setInterval(() => log.flush(), statsEveryS * 1000).unref();
  }
  try {
    await app.listen({ host: o.host ?? "127.0.0.1", port: o.port ?? 8000, backlog: LISTEN_BACKLOG });
  } catch (e) {
    if (statsTimer) clearInterval(statsTimer);
    await executor.shutdown({ drain: false });
    throw listenError(e, o.host ?? "127.0.0.1", o.port ?? 8000);
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : (o.port ?? 8000);
  const host = o.host ?? "127.0.0.1";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const kvDtype = kvCacheDtype === "fp8" ? " (fp8)" : "";
  const readyLine = `kiln serve: ${url}  model ${ctx.model.name}  backend ${ctx.model.backend}  KV capacity ${ctx.model.kvCapacityTokens} tokens${kvDtype}`;
  const graceMs = (o.shutdownTimeoutS ?? DEFAULT_SHUTDOWN_TIMEOUT_S) * 1000;
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      inFlight.beginShutdown();
      const timer = setTimeout(() => inFlight.cancelAll(executor, "shutdown"), graceMs);
      await inFlight.idle();
      clearTimeout(timer);
      if (statsTimer) clearInterval(statsTimer);
      statsLog?.flush();
      await app.close();
      await executor.shutdown({ drain: false });
    })();
    return closing;
  };
  return { url, port, ctx, app, readyLine, close };
}
