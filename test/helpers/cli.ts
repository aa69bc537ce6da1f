// Runs ./bin/kiln as a user would, with a private engine cache.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const KILN = fileURLToPath(new URL("../../bin/kiln", import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `input` is written to the command's stdin (a pipe, so not a TTY); without it stdin is empty. */
export function kiln(
  args: string[],
  env: Record<string, string> = {},
  opts: { input?: string } = {},
): CliResult {
  // A timeout turns a hang into a failing test instead of a stuck suite.
  const r = spawnSync(KILN, args, {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, ...env },
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A user error: exit code 2 (1 means a bug in kiln), the named error class in one line, and no
 * stack trace. */
export function assertUserError(r: CliResult, errorClass: string, message: RegExp): void {
  const detail = `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  if (r.code !== 2) throw new Error(`expected a user error (exit 2), ${detail}`);
  if (!r.stderr.includes(errorClass)) throw new Error(`expected ${errorClass}, ${detail}`);
  if (!message.test(r.stderr)) throw new Error(`expected message ${message}, ${detail}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace printed without --verbose, ${detail}`);
}
