// Executor.alive: true while the loop runs, false once it ended — after shutdown, and when an error
// escapes the loop (here the session's dispose, which the loop calls on its way out, throws).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { Executor } from "../../src/executor/executor.ts";
import { Session } from "../../src/runtime/session.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";
import { collect } from "./executor_helpers.ts";

const model = writeTinyModel("llama", 7);
const dir = join(model.dir, "engine");
buildEngine(model.dir, dir, { kvBlockSize: 4 });
after(() => model.cleanup());

test("alive while serving, false once shutdown stopped the loop", async () => {
  const ex = new Executor(Session.open(dir));
  assert.equal(ex.alive, true);
  const got = await collect(ex, ex.enqueue({ prompt: [1, 2, 3], maxNewTokens: 3, greedy: true }));
  assert.equal(got.tokens.length, 3);
  assert.equal(ex.alive, true, "an idle loop waiting for work is alive");
  await ex.shutdown();
  assert.equal(ex.alive, false);
});

test("false when an error ends the loop (shutdown rejects with it)", async () => {
  const session = Session.open(dir);
  const dispose = session.dispose.bind(session);
  session.dispose = () => {
    dispose();
    throw new Error("device lost");
  };
  const ex = new Executor(session);
  assert.equal(ex.alive, true);
  await assert.rejects(ex.shutdown(), /device lost/);
  assert.equal(ex.alive, false);
});
