// Run by executor_thread.test.ts as a process of its own: one request through an executor thread,
// then nothing — no shutdown. The process must end by itself (an idle executor thread keeps no process
// alive, as an idle in-process executor keeps none), printing the request's text.
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { openExecutorThread } from "../../src/runtime/open_executor_thread.ts";

const { executor } = await openExecutorThread(BUNDLED_MODEL_DIR, {
  backend: "cpu",
  ...(process.env.KILN_TEST_CACHE ? { cacheDir: process.env.KILN_TEST_CACHE } : {}),
});
const id = await executor.enqueue({ prompt: "ROMEO:", maxNewTokens: 6, greedy: true });
let text = "";
for await (const ev of executor.results(id)) text += ev.text;
process.stdout.write(`${JSON.stringify(text)}\n`);
