// The HTTP server's own cost per streamed token (issue 18: "server overhead per streamed token (JSON +
// SSE)"), without a model: `kiln serve`'s app (src/server/app.ts) over an executor that answers every
// request from a script (test/server/scripted_executor.ts), one token and one character of text an
// event, each on its own turn of the event loop, in a child process whose CPU time (process.cpuUsage) is read before and after the
// load; the client (this process) streams /v1/completions over loopback and counts the chunks.
//   npx tsx scripts/serve_overhead.ts [--streams 64] [--requests 640] [--tokens 60]
// Prints JSON: server CPU µs per streamed token and per request, client-seen tokens/s. The figure is the
// host CPU's (the device's host CPU differs): what the server adds to each token besides the model.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ScriptedExecutor, scriptedApp } from "../test/server/scripted_executor.ts";

const here = fileURLToPath(import.meta.url);
/** Each event waits for the event loop's next turn, as the executor delivers one token an iteration:
 * the server then writes every chunk on its own, as it does in service. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function serve(tokens: number): Promise<void> {
  const executor = new ScriptedExecutor(
    () => [
      ...Array.from({ length: tokens - 1 }, (_, i) => ({
        tokenIds: [10 + (i % 50)],
        text: String.fromCharCode(97 + (i % 26)),
        finishReason: null,
      })),
      { tokenIds: [11], text: "z", finishReason: "length" as const },
    ],
    nextTurn,
  );
  const { app } = scriptedApp(executor);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  let start = process.cpuUsage();
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (line: string) => {
    if (line.startsWith("start")) start = process.cpuUsage();
    if (line.startsWith("stop")) {
      const used = process.cpuUsage(start);
      process.stdout.write(`${JSON.stringify({ cpuUs: used.user + used.system })}\n`);
      void app.close().then(() => process.exit(0));
    }
  });
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
}

async function drive(streams: number, requests: number, tokens: number): Promise<void> {
  const child = spawn(process.execPath, ["--import", "tsx", here, "--server", "--tokens", String(tokens)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let waiting: ((l: string) => void) | null = null;
  let buf = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (d: string) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (waiting) {
        const w = waiting;
        waiting = null;
        w(line);
      } else lines.push(line);
    }
  });
  const next = () =>
    new Promise<string>((resolve) => {
      const l = lines.shift();
      if (l !== undefined) resolve(l);
      else waiting = resolve;
    });
  const { port } = JSON.parse(await next()) as { port: number };
  const url = `http://127.0.0.1:${port}/v1/completions`;
  const one = async (): Promise<number> => {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "scripted", prompt: [1, 2, 3], max_tokens: tokens, stream: true }),
    });
    const body = await res.text();
    return body.split("\n\n").filter((e) => e.startsWith("data: {")).length;
  };
  for (let i = 0; i < streams; i++) await one(); // warm-up: JIT, connections
  child.stdin.write("start\n");
  const t0 = performance.now();
  let chunks = 0;
  let left = requests;
  await Promise.all(
    Array.from({ length: streams }, async () => {
      while (left-- > 0) {
        const n = await one(); // not `chunks += await one()`: that reads chunks before the await
        chunks += n;
      }
    }),
  );
  const wallS = (performance.now() - t0) / 1000;
  child.stdin.write("stop\n");
  const { cpuUs } = JSON.parse(await next()) as { cpuUs: number };
  await once(child, "exit");
  process.stdout.write(
    `${JSON.stringify({
      streams,
      requests,
      tokensPerRequest: tokens,
      chunks,
      serverCpuUsPerToken: cpuUs / chunks,
      serverCpuUsPerRequest: cpuUs / requests,
      tokensPerSec: chunks / wallS,
    })}\n`,
  );
}

const { values } = parseArgs({
  options: {
    server: { type: "boolean", default: false },
    streams: { type: "string", default: "64" },
    requests: { type: "string", default: "640" },
    tokens: { type: "string", default: "60" },
  },
});
if (values.server) await serve(Number(values.tokens));
else await drive(Number(values.streams), Number(values.requests), Number(values.tokens));
