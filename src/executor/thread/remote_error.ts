// Errors across the executor's thread boundary. A structured clone keeps an Error's message but not
// its class, and the serving thread decides by class (a QueueFullError is a 429, a KilnError a 400,
// anything else a kiln bug: 500), and the CLI prints a KilnError's name as its one line. So an error
// travels as a record (class name, message, stack, its own plain fields) and is revived as the class
// of that name where this side knows it — the executor's and the sampling config's errors, what a
// request can meet — else as a RemoteKilnError bearing the name (a KilnError stays a user error) or a
// plain Error (a bug stays a bug, with the executor thread's stack).
import { KilnError } from "../../errors.ts";
import { InvalidSamplingConfigError } from "../../sampling/sampling_config.ts";
import * as executorErrors from "../errors.ts";

export interface ErrorRecord {
  name: string;
  message: string;
  stack: string | undefined;
  /** Whether it was a KilnError (a user error) where it was thrown. */
  kiln: boolean;
  /** Its own fields of plain values (exitCode, details, a RequestTooLargeError's sizes, errno's code). */
  fields: Record<string, unknown>;
}

/** A KilnError thrown on the executor's thread whose class this thread does not know: its name and
 * message as thrown there. */
export class RemoteKilnError extends KilnError {}

type ErrorClass = abstract new (...args: never[]) => Error;

/** Every error class of executor/errors.ts, and the sampling config's, by name. */
const KNOWN: Record<string, ErrorClass> = Object.fromEntries(
  ([...Object.values(executorErrors), InvalidSamplingConfigError] as unknown[])
    .filter((v): v is ErrorClass => typeof v === "function" && v.prototype instanceof Error)
    .map((c) => [c.name, c]),
);

const isPlain = (v: unknown): boolean =>
  v === null ||
  ["string", "number", "boolean"].includes(typeof v) ||
  (Array.isArray(v) && v.every((x) => x === null || ["string", "number", "boolean"].includes(typeof x)));

export function errorRecord(e: unknown): ErrorRecord {
  if (!(e instanceof Error))
    return { name: "Error", message: String(e), stack: undefined, kiln: false, fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (k !== "name" && k !== "message" && isPlain(v)) fields[k] = v;
  return { name: e.name, message: e.message, stack: e.stack, kiln: e instanceof KilnError, fields };
}

/** The error `r` records, as the class of its name where known (instanceof holds, fields set). */
export function reviveError(r: ErrorRecord): Error {
  const e: Error = r.kiln ? new RemoteKilnError(r.message) : new Error(r.message);
  const known = KNOWN[r.name];
  if (known && (r.kiln || !(known.prototype instanceof KilnError))) Object.setPrototypeOf(e, known.prototype);
  Object.assign(e, r.fields);
  e.name = r.name;
  if (r.stack !== undefined) e.stack = r.stack;
  return e;
}
