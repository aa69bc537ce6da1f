// Base of every user-facing error. A KilnError is a failure the user can fix (bad input, bad file,
// missing hardware); the CLI prints its message as one line without a stack trace and exits with
// `exitCode`. Anything that is not a KilnError is a bug and is printed with its stack.
export class KilnError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 2;
  /** Supporting lines (every problem found, every place searched, a compiler log) that the CLI
   * prints only with --verbose; `message` stays one line that names the problem and the fix. */
  readonly details: readonly string[];
  constructor(message: string, options?: { cause?: unknown; details?: readonly string[] }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.details = options?.details ?? [];
  }
}

/** A command-line flag or API argument has a value that cannot be used. */
export class InvalidArgumentError extends KilnError {}

/** A KILN_* environment variable (a measurement or tuning switch) has a value that cannot be used; the
 * message names the variable, the value and the values it takes. */
export class InvalidEnvironmentError extends KilnError {}
