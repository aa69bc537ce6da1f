// One of several processes building the same checkpoint at once (spawned by
// concurrent_builds.test.ts): each round, resolve it through a shared cache and build it into a
// shared --output, after a barrier so that all processes race. Prints each failure; exits 1 on any.
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildEngine } from "../../src/builder/builder.ts";
import { resolveEngine } from "../../src/builder/engine_cache.ts";
import { engineDamage } from "../../src/engine/verify.ts";

const [model, work, rounds, workers] = process.argv.slice(2);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Waits until every worker has reached `name`. */
function barrier(name: string): void {
  writeFileSync(join(work, "sync", `${name}-${process.pid}`), "");
  const deadline = Date.now() + 60_000;
  while (readdirSync(join(work, "sync")).filter((n) => n.startsWith(`${name}-`)).length < Number(workers)) {
    if (Date.now() > deadline) throw new Error(`barrier ${name} timed out`);
    Atomics.wait(sleeper, 0, 0, 2);
  }
}

let failures = 0;
for (let r = 0; r < Number(rounds); r++) {
  barrier(`cache${r}`);
  try {
    const e = resolveEngine(model, {}, join(work, "cache", `r${r}`));
    process.stdout.write(`round ${r} origin ${e.origin}\n`);
    const damage = engineDamage(e.dir);
    if (damage.length) throw new Error(`cache entry ${e.dir} damaged: ${damage.join(", ")}`);
  } catch (e) {
    failures++;
    process.stdout.write(`round ${r} cache: ${(e as Error).stack}\n`);
  }
  barrier(`output${r}`);
  try {
    // Last writer wins; the parent checks that what is left is a complete engine.
    buildEngine(model, join(work, "out", `r${r}`));
  } catch (e) {
    failures++;
    process.stdout.write(`round ${r} output: ${(e as Error).stack}\n`);
  }
}
process.exitCode = failures ? 1 : 0;
