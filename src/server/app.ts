// The fastify application of `kiln serve`: the shared hooks (request id, bearer-token check, one log
// line per request), the JSON body parser (invalid UTF-8 and malformed JSON → 400, over the body limit
// → 413), errors in OpenAI's shape (Triton's `{"error": message}` under /v2/; unknown routes 404), and
// the server's own small routes. Routes are modules `(app, ctx) => void`; buildApp registers the ones
// it is given, in order. Every route needs the API key (when one is set) except OPEN_ROUTES.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from "fastify";
import { type Logger, pino } from "pino";
import { KilnError } from "../errors.ts";
import { errorAnswer, HttpError } from "./http_errors.ts";
import { registerChatCompletions } from "./openai/chat_completions.ts";
import { registerCompletions } from "./openai/completions.ts";
import { newRequestLog } from "./request_log.ts";
import type { ServerContext } from "./server_context.ts";

export type RouteModule = (app: FastifyInstance, ctx: ServerContext) => void;

/** Routes anyone may call without the API key: probes and scrapes. The one place that decides it. */
const OPEN_ROUTES = new Set(["/health", "/version", "/metrics", "/v2/health/live", "/v2/health/ready"]);

/** The routes of this file and of server/openai/, registered by every app. */
const CORE_ROUTES: RouteModule[] = [registerServerRoutes, registerCompletions, registerChatCompletions];

/** The app with the core routes and then `routes` (Triton, tokenize, ...). Logs through `logger`
 * (default: none). */
export function buildApp(
  ctx: ServerContext,
  routes: RouteModule[] = [],
  logger: Logger = pino({ level: "silent" }),
): FastifyInstance {
  const idPrefix = randomBytes(4).toString("hex");
  let nextId = 0;
  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "reqId" }),
    bodyLimit: ctx.settings.bodyLimit,
    genReqId: () => `${idPrefix}-${(nextId++).toString(36)}`,
    return503OnClosing: false,
  }) as unknown as FastifyInstance;

  app.decorateRequest("kiln", null as unknown as FastifyRequest["kiln"]);
  app.addHook("onRequest", async (request, reply) => {
    const started = performance.now();
    request.kiln = newRequestLog(request.routeOptions.url ?? request.url);
    reply.header("x-request-id", request.id);
    reply.raw.once("close", () => logLine(request, reply.raw.statusCode, performance.now() - started));
    if (ctx.settings.apiKey !== null && !OPEN_ROUTES.has(request.routeOptions.url ?? ""))
      checkBearer(request.headers.authorization, ctx.settings.apiKey);
  });

  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => {
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body as Buffer);
    } catch {
      return done(
        new HttpError(400, "the request body is not valid UTF-8; send UTF-8 encoded JSON"),
        undefined,
      );
    }
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(
        new HttpError(
          400,
          `the request body is not valid JSON (${(e as Error).message}); send a JSON object`,
        ),
      );
    }
  });

  app.setNotFoundHandler(async (request) => {
    throw new HttpError(404, `no route ${request.method} ${request.url.split("?")[0]}`, "not_found_error");
  });
  app.setErrorHandler(async (error, request, reply) => {
    const a = errorAnswer(asHttpError(error));
    if (a.isBug) request.log.error({ err: error }, "kiln bug");
    const triton = request.url.startsWith("/v2/");
    return reply
      .code(a.status)
      .headers(a.headers)
      .send(triton ? { error: a.body.error.message } : a.body);
  });

  for (const r of [...CORE_ROUTES, ...routes]) r(app, ctx);
  return app;
}

/** Fastify's own client errors (body too large, bad content type, empty body) as HttpErrors. */
function asHttpError(e: unknown): unknown {
  if (e instanceof KilnError) return e;
  const status = (e as { statusCode?: number }).statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const message =
      status === 413
        ? "the request body is over the server's size limit; send a smaller body"
        : (e as Error).message;
    return new HttpError(status, message, status === 404 ? "not_found_error" : "invalid_request_error");
  }
  return e;
}

/** 401 unless the header is `Bearer <key>`; compared in constant time (hashes of equal length). */
function checkBearer(header: string | undefined, key: string): void {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  const digest = (s: string) => createHash("sha256").update(s).digest();
  if (!m || !timingSafeEqual(digest(m[1].trim()), digest(key)))
    throw new HttpError(
      401,
      "missing or wrong API key; send the header Authorization: Bearer <key> with the key kiln serve was started with",
      "authentication_error",
    );
}

function logLine(request: FastifyRequest, status: number, durationMs: number): void {
  const k = request.kiln;
  request.log.info(
    {
      method: request.method,
      route: k.route,
      status,
      promptTokens: k.promptTokens,
      completionTokens: k.completionTokens,
      ttftMs: k.ttftMs,
      durationMs: Math.round(durationMs * 10) / 10,
      ...(k.streamError !== null ? { streamError: k.streamError } : {}),
    },
    "request",
  );
}

/** GET /health, /version, /metrics, /v1/models. */
function registerServerRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get("/health", async (_request, reply) => {
    if (ctx.shuttingDown) throw new HttpError(503, "the server is shutting down", "service_unavailable");
    if (!ctx.model.executor.alive)
      throw new HttpError(503, "the executor's loop is not running", "service_unavailable");
    return reply.code(200).send("");
  });
  app.get("/version", async () => ({ version: ctx.version }));
  app.get("/metrics", async (_request, reply) => {
    const m = await ctx.metrics.render();
    return reply.type(m.contentType).send(m.body);
  });
  const card = () => ({
    id: ctx.model.name,
    object: "model",
    created: ctx.model.created,
    owned_by: "kiln",
    max_model_len: ctx.model.maxModelLen,
  });
  app.get("/v1/models", async () => ({ object: "list", data: [card()] }));
  app.get<{ Params: { model: string } }>("/v1/models/:model", async (request) => {
    if (request.params.model !== ctx.model.name)
      throw new HttpError(
        404,
        `the model "${request.params.model}" does not exist; this server serves "${ctx.model.name}"`,
        "not_found_error",
        "model",
      );
    return card();
  });
}
