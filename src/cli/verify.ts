// `kiln verify DIR`: checks an engine's files and weight regions against the checksums recorded when
// it was built, without running it.
import type { Command } from "commander";
import { EngineCorruptError } from "../engine/errors.ts";
import { engineDamage } from "../engine/verify.ts";

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description("check an engine directory against its recorded checksums, without running it")
    .argument("<dir>", "engine directory")
    .action((dir: string) => verifyCommand(dir));
}

/** Prints one OK line, or throws a named error listing every damaged file and region. */
export function verifyCommand(dir: string): void {
  const damage = engineDamage(dir);
  if (damage.length) {
    throw new EngineCorruptError(dir, damage.join(", "));
  }
  process.stdout.write(`kiln: engine ${dir} is intact (every file and weight matches its checksum)\n`);
}
