// How the CLI reports a failure: a user error (KilnError) is one line, `kiln: Name: message`, and
// exit 2; its details and stack only with --verbose. An errno error of a kind the user causes (a
// read-only or full disk, a path through a file) that reached here unnamed is named here, so it can
// never be reported as a bug. Everything else is a bug: its stack, and exit 1.
import { isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { KilnError } from "../errors.ts";
import { FileSystemError, isErrnoError, USER_FS_CODES } from "../fs_errors.ts";

/** kiln's own files: a missing file under these is a broken install (a bug), not the user's path. */
const KILN_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const KILN_OWN_DIRS = ["src", "dist", "kernels", "node_modules", "bin", "models"].map((d) =>
  resolve(KILN_ROOT, d),
);

export interface ErrorReport {
  text: string;
  exitCode: number;
}

export function reportError(e: unknown, verbose: boolean): ErrorReport {
  const user = e instanceof KilnError ? e : userFileSystemError(e);
  if (!user) {
    return {
      text: `kiln: internal error (a bug; please report it):\n${(e as Error)?.stack ?? String(e)}\n`,
      exitCode: 1,
    };
  }
  // One line whatever the message holds: a stray newline in a message must not break the contract.
  const line = user.message
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .join("; ");
  let text = `kiln: ${user.name}: ${line}\n`;
  if (verbose) {
    for (const d of user.details) text += `  ${d}\n`;
    if (user.stack) text += `${user.stack}\n`;
  }
  return { text, exitCode: user.exitCode };
}

/** An errno error the user's filesystem caused, named; null for anything else (a bug). */
export function userFileSystemError(e: unknown): FileSystemError | null {
  if (!isErrnoError(e) || !USER_FS_CODES.has(e.code)) return null;
  const path = e.path ?? e.dest;
  if (e.code === "ENOENT" && (path === undefined || isKilnOwnPath(path))) return null;
  return FileSystemError.fromErrno(e);
}

function isKilnOwnPath(path: string): boolean {
  const abs = resolve(path);
  return KILN_OWN_DIRS.some((d) => {
    const r = relative(d, abs);
    return r === "" || (!r.startsWith("..") && !isAbsolute(r));
  });
}
