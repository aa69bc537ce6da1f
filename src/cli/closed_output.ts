// What the CLI does when its output goes away. `kiln run | head` closes the pipe after a few lines:
// the reader has what it wanted, so kiln stops at once, quietly, with exit 0 (not 141, the shell's
// code for death by SIGPIPE: under `set -o pipefail` that would fail a script for doing what it
// asked). Any other failure to write stdout (`kiln run > /dev/full`) is the user's disk: one line
// on stderr and exit 2, never an unhandled 'error' event with a stack.
import { FileSystemError, isErrnoError } from "../fs_errors.ts";

export function handleClosedOutput(
  exit: (code: number) => never = (code) => process.exit(code),
  stdout: NodeJS.WriteStream = process.stdout,
  stderr: NodeJS.WriteStream = process.stderr,
): void {
  stdout.on("error", (e: Error) => {
    if (isErrnoError(e) && e.code === "EPIPE") exit(0);
    if (isErrnoError(e)) {
      const err = FileSystemError.fromErrno(e, {
        what: "standard output",
        fix: "send the output somewhere it can be written",
      });
      stderr.write(`kiln: ${err.name}: ${err.message}\n`);
      exit(err.exitCode);
    }
    stderr.write(`kiln: internal error (a bug; please report it):\n${e.stack ?? String(e)}\n`);
    exit(1);
  });
  // A failure of stderr itself (`kiln run 2>&1 | head`) has nowhere to be reported: ignore it, so
  // the command ends with the exit code it would have had.
  stderr.on("error", () => {});
}
