// Whether `kiln serve` keeps a GPU as busy as the in-process executor does, measured on a machine
// without one: the real Executor over a SimulatedDevice (serve_device_sim/simulated_device.ts: steps
// take the device time an H200 takes for the 8B, and compute nothing), driven twice with the same
// requests —
//   in-process  `kiln bench --num-requests N`'s own code (runThroughputBench) over the executor
//   http        the real app (routes, prom-client metrics bound to the executor's iterations, request
//               log at info, SSE) over the executor on its own thread, as `kiln serve` runs it
//               (serve_device_sim/sim_thread_entry.ts), and `kiln bench --serve`'s client
//               (server/serve_bench.ts) in a second Node process sending N streaming completions at once
// — and reports output tok/s of each, their ratio (issue 18: HTTP ≥ 95% of in-process), and how much
// of the run the device was busy. With the device's time modelled, what this machine's host does to
// that ratio shows here (the executor's and the server's threads share its cores). The model is the
// bundled one's config (serve_device_sim/sim_session.ts), its build limits raised to an 8B serving
// engine's.
//
//   node --import tsx scripts/serve_device_sim.ts [--streams 1024] [--input-len 128] [--output-len 128]
//        [--step-ms 2] [--seq-ms 0.03] [--token-ms 0.0225] [--host-ms 1] [--only in-process|http] [--json]
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ExecutorThread } from "../src/executor/thread/executor_thread.ts";
import { runThroughputBench, type ThroughputResult } from "../src/runtime/throughput_bench.ts";
import { runServeBench, type ServeBenchResult } from "../src/server/serve_bench.ts";
import type { ServedModel, ServerContext, ServerMetrics } from "../src/server/server_context.ts";
import {
  MAX_SEQS,
  type SimLoad,
  type SimSession,
  type SimThreadStats,
  simSessions,
} from "./serve_device_sim/sim_session.ts";
import {
  type DeviceLog,
  type DeviceModel,
  deviceStepMs,
  firstStepAfter,
  H200_8B,
  shiftedLog,
} from "./serve_device_sim/simulated_device.ts";
import { listenLoopback, runClient, unlimitedContext } from "./serve_harness.ts";

interface Args {
  streams: number;
  inputLen: number;
  outputLen: number;
  device: DeviceModel;
  only: "in-process" | "http" | undefined;
  json: boolean;
  client: string | undefined;
}

/** What the report reads of a device: its log, and the time model's step (SimulatedDevice is one). */
interface DeviceView {
  log: DeviceLog;
  stepMs(decodes: number, prompt: number): number;
}

interface ModeReport {
  mode: "in-process" | "http";
  outputTokensPerSec: number;
  durationS: number;
  ttftMedianMs: number;
  tpotMedianMs: number;
  tpotP99Ms: number;
  /** Device busy time over the run's duration. */
  deviceBusy: number;
  deviceSteps: number;
  /** Host ms blocked waiting for the device, in all. */
  hostWaitMs: number;
  /** From the first step queued to the last one's end: the device's span, its idle ms in all, and the
   * longest idle gaps (ms after the first step, gap ms, the next step's device ms). */
  deviceSpanMs: number;
  /** The first step's queueing on the process's monotonic clock, µs (tools/cpuprofile_top.py --window). */
  firstStepUs: number;
  idleMs: number;
  longestIdle: [number, number, number][];
  /** Idle ms in each tenth of the span. */
  idleByTenth: number[];
  /** Steps of full decodes (device ms from 60% of a full batch's): the device ms queued ahead of each
   * when it was queued — the host's margin — 10th percentile and median. */
  decodeSlackMs: { p10: number; median: number; steps: number };
  /** This process's CPU µs per output token (the whole run: the executor, and the server). */
  cpuUsPerToken: number;
  /** HTTP: most requests streaming at once, failures, and the client's CPU per token. */
  peakStreaming?: number;
  failed?: number;
  clientCpuUsPerToken?: number;
  /** HTTP: ms from the client's first send to the first step queued after it, and from the last step's
   * end to the client's last completion. */
  outsideDeviceMs?: [number, number];
}

async function inProcess(a: Args, open: () => SimSession): Promise<ModeReport> {
  const s = open();
  const cpu0 = process.cpuUsage();
  const r = await runThroughputBench(s, {
    numRequests: a.streams,
    inputLen: a.inputLen,
    outputLen: a.outputLen,
    kvCache: { freeGpuMemoryFraction: 0.9 },
  });
  const cpu = process.cpuUsage(cpu0);
  return { mode: "in-process", ...figures(r, s.device, cpu, a.streams) };
}

function idleReport(
  d: DeviceView,
  fullSeqs: number,
): Pick<
  ModeReport,
  "deviceSpanMs" | "firstStepUs" | "idleMs" | "longestIdle" | "idleByTenth" | "decodeSlackMs"
> {
  const { idle, firstAt, lastEnd } = d.log;
  const r1 = (x: number) => Math.round(10 * x) / 10;
  const tenths = new Array<number>(10).fill(0);
  for (const g of idle)
    tenths[Math.min(9, Math.floor((10 * (g.at - firstAt)) / (lastEnd - firstAt)))] += g.ms;
  const full = d.stepMs(fullSeqs, 0);
  const slack = d.log.slack
    .filter((x) => x.stepMs >= 0.6 * full && x.stepMs <= full)
    .map((x) => x.ms)
    .sort((x, y) => x - y);
  const at = (q: number) => r1(slack[Math.floor(q * (slack.length - 1))] ?? Number.NaN);
  return {
    decodeSlackMs: { p10: at(0.1), median: at(0.5), steps: slack.length },
    idleByTenth: tenths.map(r1),
    deviceSpanMs: r1(lastEnd - firstAt),
    firstStepUs: d.log.firstAtUs,
    idleMs: r1(idle.reduce((t, g) => t + g.ms, 0)),
    longestIdle: [...idle]
      .sort((x, y) => y.ms - x.ms)
      .slice(0, 6)
      .map((g): [number, number, number] => [r1(g.at - firstAt), r1(g.ms), r1(g.stepMs)]),
  };
}

function servedContext(ex: ExecutorThread): ServerContext {
  const { config } = ex.info;
  const kv = ex.stats().kv;
  const model: ServedModel = {
    name: "sim",
    executor: ex,
    tokenizer: null,
    chatTemplate: null,
    maxModelLen: config.maxSeqLen,
    vocabSize: config.model.vocabSize,
    eosTokenIds: [],
    created: Math.floor(Date.now() / 1000),
    backend: "cuda",
    kvCapacityTokens: kv.numBlocks * kv.tokensPerBlock,
  };
  return unlimitedContext(model, "device-sim");
}

/** What both modes report of a run over the simulated device: its throughput and latencies, the
 * device's share of it, and this process's CPU per output token. */
function figures(
  r: Pick<ThroughputResult, "outputTokensPerSec" | "durationS" | "outputTokens"> & {
    ttftMs: { median: number };
    tpotMs: { median: number; p99: number };
  },
  d: DeviceView,
  cpu: NodeJS.CpuUsage,
  streams: number,
): Omit<ModeReport, "mode"> {
  return {
    outputTokensPerSec: r.outputTokensPerSec,
    durationS: r.durationS,
    ttftMedianMs: r.ttftMs.median,
    tpotMedianMs: r.tpotMs.median,
    tpotP99Ms: r.tpotMs.p99,
    deviceBusy: d.log.busyMs / (1000 * r.durationS),
    deviceSteps: d.log.steps,
    hostWaitMs: d.log.waitMs,
    ...idleReport(d, Math.min(streams, MAX_SEQS)),
    cpuUsPerToken: (cpu.user + cpu.system) / Math.max(1, r.outputTokens),
  };
}

async function overHttp(a: Args): Promise<ModeReport> {
  let metrics: ServerMetrics | null = null;
  // As `kiln serve` runs it: the executor on its own thread, the KV cache for every request at full
  // length, the metrics fed each iteration.
  const load: SimLoad = {
    streams: a.streams,
    inputLen: a.inputLen,
    outputLen: a.outputLen,
    device: a.device,
  };
  const ex = await ExecutorThread.start({
    entry: new URL("./serve_device_sim/sim_thread_entry.ts", import.meta.url),
    args: load,
    onIteration: (it) => metrics?.iteration(it),
  });
  const ctx = servedContext(ex);
  metrics = ctx.metrics;
  const { app, url } = await listenLoopback(ctx);
  const cpu0 = process.cpuUsage();
  const r = await runClient<ServeBenchResult & { cpuMs: number; startEpochMs: number; endEpochMs: number }>(
    fileURLToPath(import.meta.url),
    url,
    a,
  );
  const cpu = process.cpuUsage(cpu0);
  await app.close();
  await ex.shutdown();
  const sim = (ex.stats() as SimThreadStats).sim;
  if (!sim) throw new Error("the executor thread stopped without its device log");
  const log = shiftedLog(sim.log, sim.timeOrigin - performance.timeOrigin);
  const device: DeviceView = { log, stepMs: (d, p) => deviceStepMs(a.device, d, p) };
  return {
    mode: "http",
    ...figures(r, device, cpu, a.streams),
    peakStreaming: r.peakStreaming,
    failed: r.failed,
    clientCpuUsPerToken: (1000 * r.cpuMs) / Math.max(1, r.outputTokens),
    // The client's window against the device's (epoch ms on both processes' clocks): its first send to
    // the first step queued after it, and the last step's end to its last completion.
    outsideDeviceMs: [
      Math.round(
        firstStepAfter(log, r.startEpochMs - performance.timeOrigin) -
          (r.startEpochMs - performance.timeOrigin),
      ),
      Math.round(r.endEpochMs - performance.timeOrigin - log.lastEnd),
    ],
  };
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
  const endEpochMs = performance.timeOrigin + performance.now();
  const startEpochMs = endEpochMs - 1000 * r.durationS;
  const report = { ...r, cpuMs: (cpu.user + cpu.system) / 1000, startEpochMs, endEpochMs };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

function readArgs(): Args {
  const { values } = parseArgs({
    options: {
      streams: { type: "string", default: "1024" },
      "input-len": { type: "string", default: "128" },
      "output-len": { type: "string", default: "128" },
      "step-ms": { type: "string", default: `${H200_8B.stepMs}` },
      "seq-ms": { type: "string", default: `${H200_8B.seqMs}` },
      "token-ms": { type: "string", default: `${H200_8B.tokenMs}` },
      "host-ms": { type: "string", default: `${H200_8B.hostMs}` },
      only: { type: "string" },
      json: { type: "boolean", default: false },
      client: { type: "string" },
    },
  });
  const num = (flag: string, v: string, int: boolean) => {
    const n = Number(v);
    if (!(Number.isFinite(n) && n >= 0 && (!int || (Number.isInteger(n) && n >= 1))))
      throw new Error(`--${flag} ${v} is not a ${int ? "positive integer" : "non-negative number"}`);
    return n;
  };
  if (values.only !== undefined && values.only !== "in-process" && values.only !== "http")
    throw new Error(`--only ${values.only}: give in-process or http`);
  return {
    streams: num("streams", values.streams, true),
    inputLen: num("input-len", values["input-len"], true),
    outputLen: num("output-len", values["output-len"], true),
    device: {
      stepMs: num("step-ms", values["step-ms"], false),
      seqMs: num("seq-ms", values["seq-ms"], false),
      tokenMs: num("token-ms", values["token-ms"], false),
      hostMs: num("host-ms", values["host-ms"], false),
    },
    only: values.only as Args["only"],
    json: values.json,
    client: values.client,
  };
}

function line(r: ModeReport): string {
  const http =
    r.mode === "http"
      ? `; peak streaming ${r.peakStreaming}, failed ${r.failed}, client CPU ${r.clientCpuUsPerToken?.toFixed(1)} µs/token; outside the device's span: ${r.outsideDeviceMs?.join(" ms before, ")} ms after`
      : "";
  return (
    `${r.mode.padEnd(10)} ${r.outputTokensPerSec.toFixed(0).padStart(6)} out tok/s in ${r.durationS.toFixed(2)} s; ` +
    `TTFT ${r.ttftMedianMs.toFixed(0)} ms, TPOT ${r.tpotMedianMs.toFixed(2)} / ${r.tpotP99Ms.toFixed(2)} ms ` +
    `(median / p99); device busy ${(100 * r.deviceBusy).toFixed(1)}% over ${r.deviceSteps} steps, ` +
    `host blocked ${r.hostWaitMs.toFixed(0)} ms; CPU ${r.cpuUsPerToken.toFixed(1)} µs/token${http}\n           device span ${r.deviceSpanMs} ms from ${r.firstStepUs} µs, idle ` +
    `${r.idleMs} ms (by tenth of the span: ${r.idleByTenth.join(" ")}); full-decode slack p10 ${r.decodeSlackMs.p10} / median ${r.decodeSlackMs.median} ms over ${r.decodeSlackMs.steps} steps; longest idle gaps [after ms, gap ms, next step ms]: ${JSON.stringify(r.longestIdle)}`
  );
}

const a = readArgs();
if (a.client !== undefined) await client(a.client, a);
else {
  const reports: ModeReport[] = [];
  if (a.only !== "http") reports.push(await inProcess(a, await simSessions(a)));
  if (a.only !== "in-process") reports.push(await overHttp(a));
  const [first, second] = reports;
  const ratio = second ? second.outputTokensPerSec / first.outputTokensPerSec : null;
  if (a.json)
    process.stdout.write(`${JSON.stringify({ device: a.device, reports, httpOverInProcess: ratio })}\n`);
  else {
    for (const r of reports) process.stdout.write(`${line(r)}\n`);
    if (ratio !== null) process.stdout.write(`http / in-process: ${(100 * ratio).toFixed(1)}%\n`);
  }
}
