// What the scripts that load `kiln serve` on the CPU share (serve_host_cost.ts, serve_device_sim.ts):
// the server's context around a served model, with no limits (no API key, queue, concurrency or
// timeout), and `kiln bench --serve`'s client in a second Node process, which runs the calling script
// again with --client URL and prints its report as one JSON line.
import { spawn } from "node:child_process";
import type { FastifyInstance } from "fastify";
import { destination, pino } from "pino";
import { buildApp } from "../src/server/app.ts";
import { InFlight } from "../src/server/in_flight.ts";
import { createServerMetrics } from "../src/server/metrics.ts";
import type { ServedModel, ServerContext } from "../src/server/server_context.ts";
import { tokenizeRoutes } from "../src/server/tokenize_routes.ts";
import { tritonRoutes } from "../src/server/triton.ts";

/** The flags that size a load: N streams of I prompt tokens and O output tokens. */
export interface LoadSize {
  streams: number;
  inputLen: number;
  outputLen: number;
}

export function sizeArgs(a: LoadSize): string[] {
  return ["--streams", `${a.streams}`, "--input-len", `${a.inputLen}`, "--output-len", `${a.outputLen}`];
}

/** A ServerContext for `model` with every limit off; `version` names the script. */
export function unlimitedContext(model: ServedModel, version: string): ServerContext {
  const inFlight = new InFlight(Number.POSITIVE_INFINITY);
  return {
    model,
    metrics: createServerMetrics(model),
    settings: {
      apiKey: null,
      maxPromptTokens: model.maxModelLen,
      maxConcurrent: Number.POSITIVE_INFINITY,
      requestTimeoutMs: Number.POSITIVE_INFINITY,
      bodyLimit: 4 * 2 ** 20,
    },
    version,
    get shuttingDown() {
      return inFlight.shuttingDown;
    },
    inFlight,
  };
}

/** `kiln serve`'s app over `ctx` (every route module; a request log line at info, as `kiln serve`
 * writes it, to /dev/null) listening on a free loopback port; resolves with it and its base URL. */
export async function listenLoopback(ctx: ServerContext): Promise<{ app: FastifyInstance; url: string }> {
  const logger = pino({ level: "info" }, destination({ dest: "/dev/null", sync: false }));
  const app = buildApp(ctx, [tritonRoutes, tokenizeRoutes], logger);
  await app.listen({ host: "127.0.0.1", port: 0, backlog: 4096 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { app, url: `http://127.0.0.1:${port}` };
}

/** Runs `script --client url …size` in a second Node process (nodeArgs first, e.g. --cpu-prof);
 * resolves with the JSON line it prints. */
export function runClient<T>(
  script: string,
  url: string,
  size: LoadSize,
  nodeArgs: string[] = [],
): Promise<T> {
  const args = [...nodeArgs, "--import", "tsx", script, "--client", url, ...sizeArgs(size)];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString();
  });
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => {
      if (code !== 0) reject(new Error(`the client exited with ${code}`));
      else resolve(JSON.parse(out) as T);
    });
  });
}
