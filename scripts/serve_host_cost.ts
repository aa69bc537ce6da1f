// What `kiln serve` costs on the host per streamed token, on the CPU: the real app (routes, metrics,
// request log, SSE) over a PacedExecutor (no model: each iteration gives every running request one
// token, then yields the event loop), with `kiln bench --serve`'s client (server/serve_bench.ts) in a
// second Node process sending N streaming /v1/completions at once. With the model step free, an
// iteration lasts as long as its host work, so
//   ms per iteration (N streams)  = what one executor iteration costs the event loop
//   server CPU µs per token       = process CPU time over the run / tokens delivered
// --in-process runs the same executor read by N in-process consumers instead (no HTTP): the
// difference is the server's own cost. Run under `node --cpu-prof` to see where it goes.
//
//   node [--cpu-prof] --import tsx scripts/serve_host_cost.ts [--streams 1024] [--input-len 128]
//        [--output-len 128] [--in-process] [--client-prof DIR] [--json]
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runServeBench } from "../src/server/serve_bench.ts";
import type { ServedModel, ServerContext } from "../src/server/server_context.ts";
import { listenLoopback, runClient, unlimitedContext } from "./serve_harness.ts";
import { PacedExecutor, type PacedIteration } from "./serve_host_cost/paced_executor.ts";

interface Window {
  /** The window's ends in µs on the process's monotonic clock (a --cpu-prof profile's clock:
   * tools/cpuprofile_top.py --window FROM,TO). */
  fromUs: number;
  toUs: number;
  wallMs: number;
  cpuMs: number;
  /** Event-loop utilization over the window (0..1). */
  elu: number;
  tokens: number;
  /** The most requests one iteration gave a token (below N when the server admits them slower than
   * they finish). */
  peakRunning: number;
  /** Mean ms from the start of an iteration that gave at least 90% of peakRunning a token to the
   * next one's. */
  msPerFullIteration: number;
  fullIterations: number;
}

interface ClientReport {
  completed: number;
  failed: number;
  errors: string[];
  outputTokens: number;
  tpotMedianMs: number;
  cpuMs: number;
}

/** Starts counting now; the returned function closes the window. */
function openWindow(ex: PacedExecutor): () => Window {
  const t0 = performance.now();
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const tokens0 = ex.tokens;
  const iter0 = ex.iterations.length;
  return () => {
    const cpu = process.cpuUsage(cpu0);
    const its = ex.iterations.slice(iter0);
    return {
      fromUs,
      toUs: Number(process.hrtime.bigint() / 1000n),
      wallMs: performance.now() - t0,
      cpuMs: (cpu.user + cpu.system) / 1000,
      elu: performance.eventLoopUtilization(elu0).utilization,
      tokens: ex.tokens - tokens0,
      ...fullIterations(its),
    };
  };
}

function fullIterations(its: PacedIteration[]) {
  const peakRunning = its.reduce((m, it) => Math.max(m, it.running), 0);
  let sum = 0;
  let n = 0;
  for (let i = 0; i + 1 < its.length; i++)
    if (its[i].running >= 0.9 * peakRunning) {
      sum += its[i + 1].start - its[i].start;
      n++;
    }
  return { peakRunning, msPerFullIteration: n > 0 ? sum / n : Number.NaN, fullIterations: n };
}

function servedContext(ex: PacedExecutor): ServerContext {
  const model: ServedModel = {
    name: "paced",
    executor: ex,
    tokenizer: null,
    chatTemplate: null,
    maxModelLen: 1 << 16,
    vocabSize: 32000,
    eosTokenIds: [2],
    created: Math.floor(Date.now() / 1000),
    backend: "cpu",
    kvCapacityTokens: 1 << 24,
  };
  return unlimitedContext(model, "host-cost");
}

async function overHttp(a: Args): Promise<{ server: Window; client: ClientReport }> {
  const ex = new PacedExecutor();
  const ctx = servedContext(ex);
  const { app, url } = await listenLoopback(ctx);
  // Request 1 is the client's warm-up. Requests 2 … N+1 are held until the last is in, so all N stream
  // at once (as on the device, where admission outpaces the steps); the window runs from then until
  // every response closed: the streaming and the responses' ends, not the requests' arrival.
  let measured: Promise<Window> | null = null;
  const enqueue = ex.enqueue.bind(ex);
  ex.enqueue = (r) => {
    const id = enqueue(r);
    if (id === 2) ex.held = true;
    if (id === a.streams + 1) {
      const close = openWindow(ex);
      measured = ctx.inFlight.idle().then(close);
      ex.release();
    }
    return id;
  };
  const prof = a.clientProf ? ["--cpu-prof", `--cpu-prof-dir=${a.clientProf}`] : [];
  const self = fileURLToPath(import.meta.url);
  const client = await runClient<ClientReport>(self, url, a, prof);
  const server = await (measured as Promise<Window> | null);
  await app.close();
  await ex.shutdown();
  if (!server) throw new Error(`the server saw fewer than ${a.streams + 1} requests`);
  return { server, client };
}

async function inProcess(a: Args): Promise<Window> {
  const ex = new PacedExecutor();
  const prompt = Array.from({ length: a.inputLen }, (_, i) => 10 + (i % 900));
  ex.held = true;
  const close = openWindow(ex);
  const read = Promise.all(
    Array.from({ length: a.streams }, async () => {
      const id = ex.enqueue({ prompt, maxNewTokens: a.outputLen, streaming: true });
      let n = 0;
      for await (const ev of ex.results(id)) n += ev.tokenIds.length;
      return n;
    }),
  );
  ex.release();
  await read;
  const w = close();
  await ex.shutdown();
  return w;
}

async function client(url: string, a: Args): Promise<void> {
  const cpu0 = process.cpuUsage();
  const r = await runServeBench({
    url,
    numRequests: a.streams,
    inputLen: a.inputLen,
    outputLen: a.outputLen,
  });
  const cpu = process.cpuUsage(cpu0);
  const report: ClientReport = {
    completed: r.completed,
    failed: r.failed,
    errors: r.errors,
    outputTokens: r.outputTokens,
    tpotMedianMs: r.tpotMs.median,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

interface Args {
  streams: number;
  inputLen: number;
  outputLen: number;
  inProcess: boolean;
  clientProf: string | undefined;
  json: boolean;
  client: string | undefined;
}

function readArgs(): Args {
  const { values } = parseArgs({
    options: {
      streams: { type: "string", default: "1024" },
      "input-len": { type: "string", default: "128" },
      "output-len": { type: "string", default: "128" },
      "in-process": { type: "boolean", default: false },
      "client-prof": { type: "string" },
      json: { type: "boolean", default: false },
      client: { type: "string" },
    },
  });
  const int = (flag: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} ${v} is not a positive integer`);
    return n;
  };
  return {
    streams: int("streams", values.streams),
    inputLen: int("input-len", values["input-len"]),
    outputLen: int("output-len", values["output-len"]),
    inProcess: values["in-process"],
    clientProf: values["client-prof"],
    json: values.json,
    client: values.client,
  };
}

function line(label: string, w: Window): string {
  return (
    `${label}: ${w.tokens} tokens in ${w.wallMs.toFixed(0)} ms; ${w.msPerFullIteration.toFixed(2)} ms per ` +
    `iteration of ≥ 90% of the peak ${w.peakRunning} streams (${w.fullIterations} such); CPU ${w.cpuMs.toFixed(0)} ms = ` +
    `${((1000 * w.cpuMs) / w.tokens).toFixed(2)} µs/token; event loop ${(100 * w.elu).toFixed(0)}% busy; ` +
    `window ${w.fromUs},${w.toUs} µs`
  );
}

const a = readArgs();
if (a.client !== undefined) await client(a.client, a);
else if (a.inProcess) {
  const w = await inProcess(a);
  process.stdout.write(
    a.json ? `${JSON.stringify({ mode: "in-process", ...w })}\n` : `${line("in-process", w)}\n`,
  );
} else {
  const { server, client: c } = await overHttp(a);
  if (a.json) process.stdout.write(`${JSON.stringify({ mode: "http", server, client: c })}\n`);
  else
    process.stdout.write(
      `${line("server", server)}\nclient: ${c.completed} completed, ${c.failed} failed, ` +
        `${c.outputTokens} tokens, TPOT median ${c.tpotMedianMs.toFixed(2)} ms; CPU ${c.cpuMs.toFixed(0)} ms = ` +
        `${((1000 * c.cpuMs) / Math.max(1, c.outputTokens)).toFixed(2)} µs/token\n` +
        (c.errors.length > 0 ? `client errors: ${c.errors.join(" | ")}\n` : ""),
    );
}
