// What a generation route records about its request for the one log line app.ts writes when the
// response closes (fastify decorates every request with it as `request.kiln`).
export interface RequestLog {
  /** The route pattern ("/v1/completions"), or the URL for unknown routes. */
  route: string;
  promptTokens: number | null;
  completionTokens: number | null;
  /** Arrival → first token (ms, executor clock). */
  ttftMs: number | null;
  /** Set when the response went out as an event stream whose status says nothing of an error in it. */
  streamError: string | null;
}

declare module "fastify" {
  interface FastifyRequest {
    kiln: RequestLog;
  }
}

export function newRequestLog(route: string): RequestLog {
  return { route, promptTokens: null, completionTokens: null, ttftMs: null, streamError: null };
}
