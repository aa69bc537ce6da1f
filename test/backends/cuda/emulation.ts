// What the CPU-emulator suites (*_emulated.test.ts) share: paths under kernels/, and whether g++ is here
// to build the emulator's checks (the suites skip without it).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The path of `rel` under kernels/: a kernel source, or an emulation/ script. */
export const kernelsPath = (rel: string): string =>
  fileURLToPath(new URL(`../../../kernels/${rel}`, import.meta.url));

/** An emulated suite's skip: "g++ not found" where the compiler is missing, else false (run). */
export const noGxx: string | false =
  spawnSync("g++", ["--version"], { encoding: "utf8" }).status !== 0 ? "g++ not found" : false;
