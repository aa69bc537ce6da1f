// The cache's advisory build lock: held while its owner lives, taken over when the owner is gone or
// its pid was reused by another process.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { acquireBuildLock } from "../../src/engine/build_lock.ts";
import { tempCache } from "../helpers/tiny_model.ts";

describe("build lock", () => {
  const work = tempCache();
  after(work.cleanup);

  test("a held lock makes the next taker wait (here: until its short limit); release frees it", () => {
    const entry = join(work.dir, "a");
    const release = acquireBuildLock(entry);
    assert.match(readFileSync(`${entry}.lock`, "utf8"), new RegExp(`^${process.pid} `));
    const t0 = Date.now();
    const noLock = acquireBuildLock(entry, 200);
    assert.ok(Date.now() - t0 >= 190, "did not wait for the live owner");
    noLock(); // going on without the lock must not release the owner's
    assert.ok(existsSync(`${entry}.lock`));
    release();
    assert.ok(!existsSync(`${entry}.lock`));
    const t1 = Date.now();
    acquireBuildLock(entry, 5_000)();
    assert.ok(Date.now() - t1 < 1_000);
  });

  test("a lock of a dead process, or of a reused pid, is taken over at once", () => {
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    for (const content of [`${deadPid} 123`, `${process.pid} 1`]) {
      const entry = join(work.dir, `stale-${content.replace(" ", "-")}`);
      writeFileSync(`${entry}.lock`, content);
      const t0 = Date.now();
      const release = acquireBuildLock(entry, 5_000);
      assert.ok(Date.now() - t0 < 1_000, content);
      assert.match(readFileSync(`${entry}.lock`, "utf8"), new RegExp(`^${process.pid} \\d+$`));
      release();
    }
  });
});
