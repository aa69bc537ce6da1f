// kiln's command line. User errors (KilnError, and filesystem faults the user can fix) print one
// line and exit 2; details and a stack trace only with --verbose. Anything else is a bug: its
// stack, and exit 1. A closed stdout (`kiln run | head`) ends any command quietly.
import { Command, CommanderError } from "commander";
import { KILN_VERSION } from "../version.ts";
import { registerBench } from "./bench.ts";
import { registerBuild } from "./build.ts";
import { registerChat } from "./chat.ts";
import { handleClosedOutput } from "./closed_output.ts";
import { registerEval } from "./eval.ts";
import { reportError } from "./report_error.ts";
import { registerRun } from "./run.ts";
import { registerServe } from "./serve.ts";
import { registerTokenize } from "./tokenize.ts";
import { registerVerify } from "./verify.ts";

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes("--verbose");
  const program = new Command("kiln")
    .description("compile Hugging Face checkpoints into engines and run them")
    .version(KILN_VERSION)
    .option("--verbose", "print details and stack traces of errors")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerRun(program);
  registerChat(program);
  registerBuild(program);
  registerBench(program);
  registerServe(program);
  registerTokenize(program);
  registerVerify(program);
  registerEval(program);
  for (const c of program.commands)
    c.option("--verbose", "print details and stack traces of errors").exitOverride();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const report = reportError(e, verbose);
    process.stderr.write(report.text);
    return report.exitCode;
  }
}

handleClosedOutput();
// An error thrown outside the command's promise (an event handler, a timer, an unhandled rejection)
// is reported as one from inside it would be: one line and exit 2 for a user's fault, a stack and
// exit 1 for a bug; never Node's default dump.
process.on("uncaughtException", (e) => {
  const report = reportError(e, process.argv.includes("--verbose"));
  process.stderr.write(report.text);
  process.exit(report.exitCode);
});
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
