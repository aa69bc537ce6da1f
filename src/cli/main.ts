// kiln's command line. User errors (KilnError) print one line and exit non-zero; a stack trace is
// printed only with --verbose. Anything else is a bug and prints its stack.
import { Command, CommanderError } from "commander";
import { KilnError } from "../errors.ts";
import { KILN_VERSION } from "../version.ts";
import { registerBench } from "./bench.ts";
import { registerBuild } from "./build.ts";
import { registerChat } from "./chat.ts";
import { registerRun } from "./run.ts";
import { registerTokenize } from "./tokenize.ts";
import { registerVerify } from "./verify.ts";

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes("--verbose");
  const program = new Command("kiln")
    .description("compile Hugging Face checkpoints into engines and run them")
    .version(KILN_VERSION)
    .option("--verbose", "print stack traces of errors")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerRun(program);
  registerChat(program);
  registerBuild(program);
  registerBench(program);
  registerTokenize(program);
  registerVerify(program);
  for (const c of program.commands) c.option("--verbose", "print stack traces of errors").exitOverride();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof KilnError) {
      process.stderr.write(`kiln: ${e.name}: ${e.message}\n`);
      if (verbose && e.stack) process.stderr.write(`${e.stack}\n`);
      return e.exitCode;
    }
    process.stderr.write(
      `kiln: internal error (a bug; please report it):\n${(e as Error)?.stack ?? String(e)}\n`,
    );
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
