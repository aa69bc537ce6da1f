// Unknown-key checks for the options objects of the public API: a misspelt key (`maxNewTokns`) is an
// UnknownOptionError that names the key and the nearest known ones, never silently ignored. Each
// options type keeps its keys in one place, a `KeySet<T>` object literal that TypeScript checks both
// ways (a key the type has but the set lacks, or one the type lacks, fails to compile).
import { closestNames } from "../checkpoint/closest_names.ts";
import { InvalidArgumentError, KilnError } from "../errors.ts";

/** Every key of T (optional ones included), each exactly once. */
export type KeySet<T> = Readonly<Record<keyof T, true>>;

/** Throws UnknownOptionError for the first key of `options` in none of `known`; `what` names the
 * options type in the message. Undefined options are fine (every option left at its default). */
export function rejectUnknownKeys(what: string, options: unknown, ...known: readonly KeySet<object>[]): void {
  if (options === undefined) return;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new InvalidArgumentError(
      `${what} must be an object of named options, got ${options === null ? "null" : Array.isArray(options) ? "an array" : typeof options}`,
    );
  }
  const names = known.flatMap((k) => Object.keys(k));
  const allowed = new Set(names);
  for (const key of Object.keys(options)) {
    if (!allowed.has(key)) throw new UnknownOptionError(what, key, closestNames(key, names), names);
  }
}

/** An options object of the public API has a key no option of that name exists for (a misspelling
 * would otherwise be ignored silently). */
export class UnknownOptionError extends KilnError {
  constructor(
    readonly what: string,
    readonly key: string,
    suggestions: readonly string[],
    known: readonly string[],
  ) {
    const quote = (names: readonly string[]) => names.map((s) => `"${s}"`);
    const hint = suggestions.length
      ? `did you mean ${quote(suggestions).join(" or ")}?`
      : known.length <= 10
        ? `its options are ${quote(known).join(", ")}`
        : `see the ${what} type for the options it takes`;
    super(`${what} has no option "${key}"; ${hint}`);
  }
}
