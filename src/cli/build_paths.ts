// Checks `kiln build`'s --model and --output before anything is written: the model must be a
// checkpoint (not an engine), and the output must not overlap it and must be a place kiln may write.
import { existsSync, mkdtempSync, realpathSync, rmdirSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { assertCheckpointNotEngine } from "../builder/builder.ts";
import { OutputNotWritableError } from "../builder/errors.ts";
import { OutputOverlapsModelError } from "../engine/errors.ts";

export function checkBuildPaths(model: string, output: string): void {
  assertCheckpointNotEngine(model);
  const m = realpathSync(model);
  const o = realOutput(output);
  const inside = (a: string, b: string) => {
    const rel = relative(b, a);
    return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
  };
  if (inside(o, m) || inside(m, o)) {
    const how = o === m ? "is" : inside(o, m) ? "is inside" : "contains";
    throw new OutputOverlapsModelError(
      `--output ${output} ${how} the checkpoint --model ${model}; write the engine to a directory outside the checkpoint`,
    );
  }
  const parent = existingAncestor(dirname(o));
  if (!statSync(parent).isDirectory())
    throw new OutputNotWritableError(
      `--output ${output}: ${parent} is a file, not a directory; choose another path`,
    );
  // Probe by creating a directory where the build will (permissions, read-only mounts, /proc).
  try {
    rmdirSync(mkdtempSync(join(parent, ".kiln-probe-")));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new OutputNotWritableError(
      `--output ${output}: cannot create a directory in ${parent} (${err.code ?? err.message}); choose a directory you can write`,
    );
  }
}

/** `output` resolved through its existing part, so symlinks cannot hide an overlap. */
function realOutput(output: string): string {
  const abs = resolve(output);
  const base = existingAncestor(abs);
  return join(realpathSync(base), relative(base, abs));
}

function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}
