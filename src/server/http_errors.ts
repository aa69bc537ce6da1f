// Errors as HTTP answers. Every route answers a failure in OpenAI's JSON error shape
//   { "error": { "message", "type", "param", "code" } }
// with the status the error calls for: a request the caller can fix is 400 (its field named in
// `param`), a full queue 429, shutting down 503; 500 only for a bug in kiln (never a KilnError).
import { KilnError } from "../errors.ts";
import { ExecutorShutDownError, QueueFullError } from "../executor/errors.ts";

export type OpenAiErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "rate_limit_error"
  | "service_unavailable"
  | "timeout_error"
  | "server_error";

/** An answer a route gives on purpose: its status, OpenAI error type, and the field at fault. */
export class HttpError extends KilnError {
  constructor(
    readonly status: number,
    message: string,
    readonly type: OpenAiErrorType = "invalid_request_error",
    readonly param: string | null = null,
    /** Seconds for a Retry-After header (429, 503). */
    readonly retryAfterS: number | null = null,
  ) {
    super(message);
  }
}

/** 400 for the field `param` (its value and the allowed range belong in `message`). */
export function badField(param: string, message: string): HttpError {
  return new HttpError(400, message, "invalid_request_error", param);
}

export interface ErrorAnswer {
  status: number;
  body: { error: { message: string; type: OpenAiErrorType; param: string | null; code: number } };
  /** Extra headers (Retry-After). */
  headers: Record<string, string>;
  /** Whether the error is a bug in kiln (log it with its stack and the request id). */
  isBug: boolean;
}

/** The answer for any error a route threw. */
export function errorAnswer(e: unknown): ErrorAnswer {
  let status = 500;
  let type: OpenAiErrorType = "server_error";
  let param: string | null = null;
  let retryAfterS: number | null = null;
  if (e instanceof HttpError) {
    ({ status, type, param, retryAfterS } = e);
  } else if (e instanceof QueueFullError) {
    [status, type, retryAfterS] = [429, "rate_limit_error", 1];
  } else if (e instanceof ExecutorShutDownError) {
    [status, type] = [503, "service_unavailable"];
  } else if (e instanceof KilnError) {
    [status, type] = [400, "invalid_request_error"];
  }
  const isBug = status === 500;
  const message = isBug
    ? "internal error in kiln; the server log has its details under this request's id"
    : (e as Error).message;
  const headers: Record<string, string> = {};
  if (retryAfterS !== null) headers["retry-after"] = String(retryAfterS);
  return { status, body: { error: { message, type, param, code: status } }, headers, isBug };
}
