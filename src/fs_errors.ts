// Filesystem faults the user can fix (a read-only or full disk, a path through a file, a symlink
// loop) as named errors. Node reports them as plain `Error`s with an errno `code`; left alone they
// would reach the CLI as "internal error" exit 1, which is reserved for bugs in kiln.
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { KilnError } from "./errors.ts";

/** What a Node errno exception carries: `code` ("EACCES"), `syscall` ("mkdir"), `path` (absent
 * for calls on a file descriptor such as write). */
export interface ErrnoError extends Error {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
}

export function isErrnoError(e: unknown): e is ErrnoError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === "string" && "errno" in e;
}

/** Why the call failed, in words, and a fix that works for that cause. */
const CAUSES: Record<string, { reason: string; fix: string }> = {
  // The same code answers reads and writes: the fix names permissions, not one of the two.
  EACCES: {
    reason: "permission denied",
    fix: "fix its permissions (chmod, chown), or choose another location",
  },
  EPERM: {
    reason: "operation not permitted",
    fix: "fix its permissions (chmod, chown), or choose another location",
  },
  EROFS: { reason: "read-only file system", fix: "choose a location on a writable file system" },
  ENOSPC: { reason: "no space left on device", fix: "free some space, or choose another disk" },
  EDQUOT: { reason: "disk quota exceeded", fix: "free some space, or choose another disk" },
  EFBIG: { reason: "file too large for this file system", fix: "choose another disk" },
  ENOTDIR: {
    reason: "a part of the path is a file, not a directory",
    fix: "choose a path whose parents are directories",
  },
  EISDIR: { reason: "it is a directory, a file was expected", fix: "give the path of a file" },
  ELOOP: {
    reason: "too many levels of symbolic links (a symlink loop)",
    fix: "fix the symbolic link, or choose another path",
  },
  ENOENT: { reason: "no such file or directory", fix: "check the path" },
  ENAMETOOLONG: { reason: "file name too long", fix: "choose a shorter path" },
  EMFILE: { reason: "too many open files", fix: "raise the limit (ulimit -n) and retry" },
  ENFILE: { reason: "too many open files in the system", fix: "close other programs and retry" },
};

/** The errno codes that mean the user's filesystem refused, not that kiln is wrong. */
export const USER_FS_CODES: ReadonlySet<string> = new Set(Object.keys(CAUSES));

/** A filesystem call on a path the user chose (or their disk) failed for a reason they can fix. The
 * message is `problem; fix`: what failed on which path and why, then what to do. `code`, `syscall`
 * and `path` are Node's where an errno error is the cause. */
export class FileSystemError extends KilnError {
  readonly problem: string;
  readonly fix: string;
  readonly code: string | undefined;
  readonly syscall: string | undefined;
  readonly path: string | undefined;

  constructor(
    problem: string,
    fix: string,
    options: { cause?: unknown; code?: string; syscall?: string; path?: string } = {},
  ) {
    super(`${problem}; ${fix}`, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.problem = problem;
    this.fix = fix;
    this.code = options.code;
    this.syscall = options.syscall;
    this.path = options.path;
  }

  /** Names a Node errno error: `what` replaces its path in the message ("standard output"), `fix`
   * replaces the errno code's generic fix. */
  static fromErrno(cause: ErrnoError, options: { what?: string; fix?: string } = {}): FileSystemError {
    const where = cause.path ?? cause.dest;
    const target = options.what ?? where ?? "a file kiln was writing";
    const verb = VERBS[cause.syscall ?? ""] ?? "use";
    return new FileSystemError(
      `cannot ${verb} ${target}: ${errnoReason(cause)}`,
      options.fix ??
        (noNewDirectories(cause) ? "choose a directory on a disk" : CAUSES[cause.code]?.fix) ??
        "check the path",
      { cause, code: cause.code, syscall: cause.syscall, path: where },
    );
  }
}

/** "permission denied (EACCES, mkdir)": the cause in words, then Node's code and syscall. */
export function errnoReason(e: ErrnoError): string {
  const reason = noNewDirectories(e)
    ? "its file system does not allow creating directories there"
    : (CAUSES[e.code]?.reason ?? e.code.toLowerCase());
  return `${reason} (${e.code}${e.syscall ? `, ${e.syscall}` : ""})`;
}

/** mkdir answers ENOENT under a parent that exists when its file system (/proc, /sys) takes no new
 * directories; "no such file or directory" would send the user looking for a missing parent. */
function noNewDirectories(e: ErrnoError): boolean {
  return (
    (e.syscall === "mkdir" || e.syscall === "mkdtemp") &&
    e.code === "ENOENT" &&
    e.path !== undefined &&
    existsSync(dirname(e.path))
  );
}

/** The engine cache directory cannot be used (cannot be created, is not a directory, is not
 * writable when an engine must be built into it); the message names the directory and the fix. */
export class CacheDirError extends KilnError {}

/** Verbs for the syscalls kiln makes, so the message says what kiln was doing. */
const VERBS: Record<string, string> = {
  mkdir: "create directory",
  open: "open",
  read: "read",
  write: "write to",
  copyfile: "copy to",
  rename: "rename",
  rm: "remove",
  rmdir: "remove",
  unlink: "remove",
  stat: "look at",
  lstat: "look at",
  access: "use",
  scandir: "list",
  mkdtemp: "create a directory in",
  realpath: "resolve",
};
