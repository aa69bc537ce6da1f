// `kiln verify DIR`: checks an engine's files and weight regions against the checksums recorded when
// it was built, without running it.
import type { Command } from "commander";
import { EngineCorruptError } from "../engine/errors.ts";
import { isEngineDir } from "../engine/reader.ts";
import { engineDamage } from "../engine/verify.ts";
import { InvalidArgumentError } from "../errors.ts";

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description("check an engine directory against its recorded checksums, without running it")
    .argument("<dir>", "engine directory")
    .action((dir: string) => verifyCommand(dir));
}

/** Prints one OK line, or throws a named error listing every damaged file and region. */
export function verifyCommand(dir: string): void {
  if (!isEngineDir(dir)) {
    throw new InvalidArgumentError(
      `${dir} is not a kiln engine (it has no kiln-engine.json or rank0.engine); pass an engine directory written by kiln build`,
    );
  }
  const damage = engineDamage(dir);
  if (damage.length) {
    throw new EngineCorruptError(dir, damage.join(", "));
  }
  process.stdout.write(`kiln: engine ${dir} is intact (every file and weight matches its checksum)\n`);
}
