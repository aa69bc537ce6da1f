// Small helpers for declaring C functions with koffi and passing out-parameters.
import type { LibraryHandle } from "koffi";

/** A koffi-declared C function. */
export type CFunction = (...args: unknown[]) => unknown;

/**
 * Declares the first of `names` the library exports (newer versioned entry points first, e.g.
 * cuEventElapsedTime_v2 then cuEventElapsedTime). Returns the function and the name bound.
 */
export function bindFirst(
  lib: LibraryHandle,
  names: readonly string[],
  result: string,
  params: readonly string[],
): { fn: CFunction; name: string } {
  let last: unknown;
  for (const name of names) {
    try {
      return { fn: lib.func(name, result, [...params]) as CFunction, name };
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`none of ${names.join(", ")} is exported: ${last instanceof Error ? last.message : last}`);
}

/** One 64-bit out slot (handles, pointers, size_t). koffi passes typed arrays as pointers to their data. */
export function out64(): BigUint64Array {
  return new BigUint64Array(1);
}

/** One 32-bit signed out slot (int, enums). */
export function outI32(): Int32Array {
  return new Int32Array(1);
}
