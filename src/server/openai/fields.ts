// Reading one JSON request body field by field. Every reader marks its field as read; what is left
// unread at the end is a field kiln does not support, refused with 400 and its name (never ignored).
// A field sent as null counts as absent, as OpenAI's own server treats it.
import { badField } from "../http_errors.ts";

/** Fields that OpenAI defines but kiln does not serve, with the reason given in the 400. */
const UNSUPPORTED: Record<string, string> = {
  tools: "kiln does not run tool calls; leave tools out",
  tool_choice: "kiln does not run tool calls; leave tool_choice out",
  functions: "kiln does not run function calls; leave functions out",
  function_call: "kiln does not run function calls; leave function_call out",
  suffix: "kiln does not insert text (no fill-in-the-middle); leave suffix out",
  audio: "kiln serves text only; leave audio out",
  modalities: "kiln serves text only; leave modalities out",
};

export interface NumberRange {
  min: number;
  max: number;
  /** Whether min itself is excluded: (min, max]. */
  minExclusive?: boolean;
  integer?: boolean;
}

export function rangeText(r: NumberRange): string {
  if (r.integer) return `an integer in ${r.min}..${r.max}`;
  return `a number in ${r.minExclusive ? "(" : "["}${r.min}, ${r.max}]`;
}

export function inRange(v: unknown, r: NumberRange): v is number {
  if (typeof v !== "number" || !Number.isFinite(v)) return false;
  if (r.integer && !Number.isSafeInteger(v)) return false;
  return (r.minExclusive ? v > r.min : v >= r.min) && v <= r.max;
}

/** JSON for a message: short, whatever the value is. */
export function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export class Fields {
  private readonly read = new Set<string>();

  /** `prefix` names nested objects in messages ("stream_options."). */
  constructor(
    private readonly body: Record<string, unknown>,
    private readonly prefix = "",
  ) {}

  private name(key: string): string {
    return `${this.prefix}${key}`;
  }

  /** The raw value, undefined when absent or null. */
  raw(key: string): unknown {
    this.read.add(key);
    const v = Object.hasOwn(this.body, key) ? this.body[key] : undefined;
    return v === null ? undefined : v;
  }

  number(key: string, range: NumberRange): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (!inRange(v, range))
      throw badField(this.name(key), `${this.name(key)} must be ${rangeText(range)}, got ${shown(v)}`);
    return v;
  }

  bool(key: string): boolean | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== "boolean")
      throw badField(this.name(key), `${this.name(key)} must be true or false, got ${shown(v)}`);
    return v;
  }

  string(key: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== "string")
      throw badField(this.name(key), `${this.name(key)} must be a string, got ${shown(v)}`);
    return v;
  }

  /** A nested object's fields (e.g. stream_options), or undefined. */
  object(key: string): Fields | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (!isPlainObject(v))
      throw badField(this.name(key), `${this.name(key)} must be a JSON object, got ${shown(v)}`);
    return new Fields(v, `${this.name(key)}.`);
  }

  /** 400 for the first field no reader asked for. */
  rejectUnread(): void {
    for (const key of Object.keys(this.body)) {
      if (this.read.has(key)) continue;
      const why =
        UNSUPPORTED[key] ?? "kiln does not know this field; remove it (see docs/SERVER.md for the fields)";
      throw badField(this.name(key), `unsupported field ${this.name(key)}: ${why}`);
    }
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
