// Typed access to the fields of a JSON config object, each failure a ConfigError that names the field
// (dotted, e.g. "rope_scaling.factor"), the file, the offending value and the fix. As in Hugging Face
// configs, a field set to null counts as not set: optional fields then take their default.
import { ConfigError, showValue } from "./errors.ts";

export class ConfigFields {
  constructor(
    /** The JSON object being read. */
    readonly obj: Record<string, unknown>,
    /** File the object came from, for messages. */
    readonly source: string,
    /** Dotted path of `obj` inside the file ("" at the top, "rope_scaling." inside it). */
    readonly prefix = "",
  ) {}

  /** The field is present and not null. */
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  /** A ConfigError about `key`. */
  error(key: string, problem: string, fix: string): ConfigError {
    return new ConfigError(this.source, this.prefix + key, problem, fix);
  }

  /** An integer > 0; `fallback` when unset, or required when `fallback` is undefined. */
  positiveInt(key: string, fallback?: number): number {
    const v = this.value(key, fallback, "a positive integer");
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0)
      throw this.wrong(key, v, "a positive integer");
    return v;
  }

  /** An integer ≥ 0 or null. Here null is a value (no such token): only an absent key takes `fallback`. */
  tokenId(key: string, fallback: number | null): number | null {
    const v = this.obj[key];
    if (v === undefined) return fallback;
    if (v === null) return null;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw this.wrong(key, v, "a token id (integer ≥ 0)");
    return v;
  }

  /** A finite number > 0. */
  positiveNumber(key: string, fallback?: number): number {
    const v = this.value(key, fallback, "a positive number");
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw this.wrong(key, v, "a positive number");
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.value(key, fallback, "true or false");
    if (typeof v !== "boolean") throw this.wrong(key, v, "true or false");
    return v;
  }

  string(key: string, fallback?: string): string {
    const v = this.value(key, fallback, "a string");
    if (typeof v !== "string") throw this.wrong(key, v, "a string");
    return v;
  }

  /** A nested object as its own ConfigFields, or null when unset. */
  nested(key: string): ConfigFields | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    if (typeof v !== "object" || v === null || Array.isArray(v))
      throw this.wrong(key, v, "an object or null");
    return new ConfigFields(v as Record<string, unknown>, this.source, `${this.prefix}${key}.`);
  }

  /** "must be X, got V" with the value's JSON and type. */
  wrong(key: string, value: unknown, expected: string): ConfigError {
    const type = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
    return this.error(
      key,
      `must be ${expected}, got ${showValue(value)} (${type})`,
      `set "${this.prefix}${key}" to ${expected} in the config`,
    );
  }

  private value(key: string, fallback: unknown, expected: string): unknown {
    if (this.has(key)) return this.obj[key];
    if (fallback !== undefined) return fallback;
    const state = this.obj[key] === null ? "is null" : "is missing";
    throw this.error(
      key,
      `required field ${state}`,
      `add "${this.prefix}${key}" (${expected}) to the config; a complete Hugging Face config.json has it`,
    );
  }
}
