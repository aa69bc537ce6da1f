// A real `kiln serve` on the bundled model (CPU, loopback, port 0) for the end-to-end tests, with a
// ModelRunner on the same engine as the reference the server's answers must equal.
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { openServer, type RunningServer, type ServeOptions } from "../../src/server/open_server.ts";
import { tempCache } from "../helpers/tiny_model.ts";

export interface BundledServer {
  server: RunningServer;
  runner: ModelRunner;
  close(): Promise<void>;
}

export async function bundledServer(options: ServeOptions = {}): Promise<BundledServer> {
  const cache = tempCache();
  const runner = ModelRunner.fromDir(BUNDLED_MODEL_DIR, { backend: "cpu", cacheDir: cache.dir });
  let server: RunningServer;
  try {
    server = await openServer({
      port: 0,
      logLevel: "silent",
      ...options,
      executor: { backend: "cpu", cacheDir: cache.dir, ...options.executor },
    });
  } catch (e) {
    runner.dispose();
    cache.cleanup();
    throw e;
  }
  return {
    server,
    runner,
    async close() {
      await server.close();
      runner.dispose();
      cache.cleanup();
    },
  };
}

/** Idle executor: nothing queued or running, every KV block free or cached and unreferenced. */
export function kvIdle(s: RunningServer): { idle: boolean; detail: string } {
  const st = s.ctx.model.executor.stats();
  const kv = st.kv;
  const idle =
    st.numQueued === 0 &&
    st.numRunning === 0 &&
    kv.numUsed === 0 &&
    kv.numFree + kv.numCachedFree === kv.numBlocks;
  return { idle, detail: JSON.stringify({ queued: st.numQueued, running: st.numRunning, ...kv }) };
}

/** Waits until `cond` holds (polling every few ms), at most `ms`. */
export async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}
