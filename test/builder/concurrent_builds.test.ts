// Eight processes building one checkpoint into one cache, and into one --output, all succeed: each
// writes its own temp dir and publishes with one rename that never deletes a complete engine, and
// the cache's build lock makes one of them build while the others wait for its entry.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { engineDamage } from "../../src/engine/verify.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const WORKER = fileURLToPath(new URL("./concurrent_build_worker.ts", import.meta.url));
const WORKERS = 8;
const ROUNDS = 20;

describe("concurrent builds", () => {
  const model = writeTinyModel("llama");
  const work = tempCache();
  after(() => {
    model.cleanup();
    work.cleanup();
  });

  test(`${WORKERS} processes × ${ROUNDS} rounds into one cache and one --output: zero failures`, async () => {
    mkdirSync(join(work.dir, "sync"));
    const runs = Array.from({ length: WORKERS }, () => {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", WORKER, model.dir, work.dir, String(ROUNDS), String(WORKERS)],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      child.stderr.on("data", (d) => {
        out += d;
      });
      return new Promise<{ code: number | null; out: string }>((resolve) =>
        child.on("exit", (code) => resolve({ code, out })),
      );
    });
    const results = await Promise.all(runs);
    for (const r of results) assert.equal(r.code, 0, r.out);
    // The build lock makes one process per round build; the others wait and hit.
    const built = results.flatMap((r) => r.out.match(/^round \d+ origin built$/gm) ?? []);
    assert.equal(built.length, ROUNDS, built.join("\n"));
    assert.equal(new Set(built).size, ROUNDS);
    for (let r = 0; r < ROUNDS; r++) {
      // One entry per round, complete, and no temp or moved-aside dirs left.
      const engines = join(work.dir, "cache", `r${r}`, "engines");
      const names = readdirSync(engines);
      assert.equal(names.length, 1, names.join(" "));
      assert.deepEqual(engineDamage(join(engines, names[0])), []);
      assert.deepEqual(
        readdirSync(join(work.dir, "out")).filter((n) => n.includes(".tmp-") || n.includes(".old-")),
        [],
      );
      assert.deepEqual(engineDamage(join(work.dir, "out", `r${r}`)), []);
    }
  });
});
