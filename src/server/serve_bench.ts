// Serving benchmark (vLLM's benchmark_serving against /v1/completions): N requests of I random prompt
// token ids (seeded) and exactly O output tokens each (ignore_eos, greedy), streamed, sent to any
// OpenAI-compatible server at Poisson arrivals of R requests/s (seeded; default all at once) with at
// most C in flight (default no cap). Times are this client's, as a user sees them:
//   TTFT = first token chunk − send   TPOT = (last chunk − first chunk) / (tokens − 1)
//   ITL  = chunk − previous chunk     tokens = usage.completion_tokens (else the token chunks)
// A token chunk carries text, or empty text without a finish_reason (a server without a tokenizer
// streams its tokens so); a chunk that only finishes is no token.
// (runtime/latency_summary.ts, as `kiln bench` computes them).
// A request that fails counts in `failed` and in no figure.
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { KilnError } from "../errors.ts";
import { latencySummary, type Summary } from "../runtime/latency_summary.ts";
import { poissonArrivals, seededUniform } from "../runtime/throughput_bench.ts";

export interface ServeBenchOptions {
  /** The server's base URL (http://host:port, with or without /v1). */
  url: string;
  numRequests: number;
  inputLen: number;
  outputLen: number;
  /** Poisson arrivals at this many requests/s; undefined: all at once. */
  requestRate?: number;
  /** Requests in flight at most; undefined: no cap. */
  maxConcurrency?: number;
  seed?: number;
  /** The `model` of each request; default: the first of GET /v1/models. */
  model?: string;
  /** Prompt ids are drawn from 10..promptVocab-1 (default 1000: ids every tokenizer has). */
  promptVocab?: number;
}

/** One request as the client saw it (ms on performance.now()). */
export interface ServeRun {
  sent: number;
  /** When each token chunk arrived. */
  chunkTimes: number[];
  /** usage.completion_tokens, else the token chunks. */
  outputTokens: number;
  /** null: it completed. */
  error: string | null;
}

export interface ServeBenchResult {
  mode: "serve";
  url: string;
  model: string;
  numRequests: number;
  completed: number;
  failed: number;
  /** The first few failures' messages. */
  errors: string[];
  inputLen: number;
  outputLen: number;
  requestRate: number | null;
  maxConcurrency: number | null;
  seed: number;
  /** First send to the last completion. */
  durationS: number;
  /** Output tokens of the completed requests. */
  outputTokens: number;
  outputTokensPerSec: number;
  /** Prompt and output tokens of the completed requests per second. */
  totalTokensPerSec: number;
  requestsPerSec: number;
  ttftMs: Summary;
  tpotMs: Summary;
  itlMs: Summary;
  /** The most completed requests streaming at once (between their first and last token chunk): how
   * many the server really ran together, e.g. far below numRequests when it admits them slowly. */
  peakStreaming: number;
}

/** The server cannot be reached or refuses the benchmark's requests. */
export class ServeBenchError extends KilnError {}

/** The figures of a finished run: `runs` as the client saw them, from t0 to the last completion. */
export function summarizeServeRuns(
  runs: readonly ServeRun[],
  inputLen: number,
  t0: number,
  end: number,
): Pick<
  ServeBenchResult,
  | "completed"
  | "failed"
  | "errors"
  | "durationS"
  | "outputTokens"
  | "outputTokensPerSec"
  | "totalTokensPerSec"
  | "requestsPerSec"
  | "ttftMs"
  | "tpotMs"
  | "itlMs"
  | "peakStreaming"
> {
  const ok = runs.filter((r) => r.error === null && r.chunkTimes.length > 0);
  const failed = runs.filter((r) => !ok.includes(r));
  const durationS = (end - t0) / 1000;
  const outputTokens = ok.reduce((a, r) => a + r.outputTokens, 0);
  const latency = latencySummary(
    ok.map((r) => ({ start: r.sent, times: r.chunkTimes, tokens: r.outputTokens })),
  );
  return {
    completed: ok.length,
    failed: failed.length,
    errors: failed.slice(0, 5).map((r) => r.error ?? "no token came back"),
    durationS,
    outputTokens,
    outputTokensPerSec: outputTokens / durationS,
    totalTokensPerSec: (ok.length * inputLen + outputTokens) / durationS,
    requestsPerSec: ok.length / durationS,
    ...latency,
    peakStreaming: peakOverlap(ok.map((r) => [r.chunkTimes[0], r.chunkTimes[r.chunkTimes.length - 1]])),
  };
}

/** The most intervals [start, end] that hold one instant (an interval ending where another starts
 * counts both). */
function peakOverlap(spans: readonly (readonly [number, number])[]): number {
  const events = spans.flatMap(([a, b]): [number, number][] => [
    [a, 1],
    [b, -1],
  ]);
  events.sort((x, y) => x[0] - y[0] || y[1] - x[1]); // at one instant, starts before ends
  let now = 0;
  let peak = 0;
  for (const [, d] of events) {
    now += d;
    peak = Math.max(peak, now);
  }
  return peak;
}

/** Sends one streaming completion and times its chunks. Never throws: a failure is in `error`.
 * Over node:http, not fetch: with a thousand streams in one process, fetch's web streams cost the
 * client more CPU per chunk than the server spends making it, and a busy client delays the very
 * chunk times it reports. */
async function timedCompletion(url: URL, body: object): Promise<ServeRun> {
  const run: ServeRun = { sent: performance.now(), chunkTimes: [], outputTokens: 0, error: null };
  let usageTokens: number | null = null;
  let buffered = "";
  let done = false;
  /** The complete events of the text received so far. */
  const events = (now: number) => {
    let cut = buffered.indexOf("\n\n");
    while (cut >= 0) {
      const event = buffered.slice(0, cut).trim();
      buffered = buffered.slice(cut + 2);
      cut = buffered.indexOf("\n\n");
      if (!event.startsWith("data:")) continue;
      const data = event.slice(5).trim();
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message ?? JSON.stringify(chunk.error));
      // A token's chunk: text, or (a server without a tokenizer) empty text before the finish.
      const choice = chunk.choices?.[0];
      if (typeof choice?.text === "string" && (choice.text !== "" || choice.finish_reason == null))
        run.chunkTimes.push(now);
      if (typeof chunk.usage?.completion_tokens === "number") usageTokens = chunk.usage.completion_tokens;
    }
  };
  try {
    const res = await post(url, JSON.stringify(body));
    res.setEncoding("utf8");
    if (res.statusCode !== 200) {
      let text = "";
      for await (const t of res) text += t;
      run.error = `HTTP ${res.statusCode}: ${text.slice(0, 300)}`;
      return run;
    }
    await new Promise<void>((resolve, reject) => {
      res.on("data", (text: string) => {
        buffered += text;
        try {
          events(performance.now());
        } catch (e) {
          res.destroy();
          reject(e);
        }
      });
      res.on("error", reject);
      res.on("close", resolve);
    });
    if (!done) run.error = "the stream ended without data: [DONE]";
  } catch (e) {
    run.error = e instanceof Error ? e.message : String(e);
  }
  run.outputTokens = usageTokens ?? run.chunkTimes.length;
  return run;
}

/** POSTs a JSON body; resolves with the response once its head arrived. */
function post(url: URL, body: string): Promise<IncomingMessage> {
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      resolve,
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function firstModel(base: string): Promise<string> {
  const url = new URL("/v1/models", base);
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new ServeBenchError(
      `cannot reach ${url} (${(e as Error).cause ?? (e as Error).message}); start the server (kiln serve) ` +
        "or fix the --serve URL",
    );
  }
  const body = (await res.json().catch(() => null)) as { data?: { id?: unknown }[] } | null;
  const id = body?.data?.[0]?.id;
  if (!res.ok || typeof id !== "string")
    throw new ServeBenchError(
      `${url} answered ${res.status} without a model id; is ${base} an OpenAI-compatible server?`,
    );
  return id;
}

/** Requests sent at once before the client lets its event loop turn: their connections open and their
 * bodies go out while it prepares the next (all at once, 1,024 requests held the first one back until
 * the client had made every one of them). */
const SEND_TURN = 16;

/** Runs the benchmark against the server at o.url. */
export async function runServeBench(o: ServeBenchOptions): Promise<ServeBenchResult> {
  let base: string;
  try {
    base = new URL(o.url).href;
  } catch {
    throw new ServeBenchError(`--serve ${o.url} is not a URL; give the server's, e.g. http://127.0.0.1:8000`);
  }
  if (!/^https?:$/.test(new URL(base).protocol))
    throw new ServeBenchError(`--serve ${o.url} is not an http(s) URL; give e.g. http://127.0.0.1:8000`);
  for (const [flag, v] of [
    ["--request-rate", o.requestRate],
    ["--max-concurrency", o.maxConcurrency],
  ] as const)
    if (v !== undefined && !(v > 0 && Number.isFinite(v)))
      throw new ServeBenchError(`${flag} ${v} is not above 0; give a positive number or leave it out`);
  const seed = o.seed ?? 1;
  const model = o.model ?? (await firstModel(base));
  const completions = new URL("/v1/completions", base);
  const vocab = o.promptVocab ?? 1000;
  const rand = seededUniform(seed);
  const prompt = () => Array.from({ length: o.inputLen }, () => 10 + Math.floor(rand() * (vocab - 10)));
  const body = (ids: number[], maxTokens: number) => ({
    model,
    prompt: ids,
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  });
  const prompts = Array.from({ length: o.numRequests }, prompt);
  // Warm-up on a prompt of its own: it checks the endpoint and fails fast with the server's words.
  const warm = await timedCompletion(completions, body(prompt(), Math.min(4, o.outputLen)));
  if (warm.error !== null)
    throw new ServeBenchError(`the warm-up request to ${completions} failed: ${warm.error}`);

  const arrivals = o.requestRate ? poissonArrivals(o.numRequests, o.requestRate, seed) : prompts.map(() => 0);
  const cap = o.maxConcurrency ?? Number.POSITIVE_INFINITY;
  let inFlight = 0;
  const waiting: (() => void)[] = [];
  const slot = async () => {
    while (inFlight >= cap) await new Promise<void>((r) => waiting.push(r));
    inFlight++;
  };
  const release = () => {
    inFlight--;
    waiting.shift()?.();
  };
  const t0 = performance.now();
  const pending: Promise<ServeRun>[] = [];
  for (const [i, ids] of prompts.entries()) {
    const wait = t0 + arrivals[i] * 1000 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    else if (i % SEND_TURN === SEND_TURN - 1) await new Promise((r) => setImmediate(r));
    pending.push(slot().then(() => timedCompletion(completions, body(ids, o.outputLen)).finally(release)));
  }
  const runs = await Promise.all(pending);
  const end = performance.now();
  return {
    mode: "serve",
    url: base,
    model,
    numRequests: o.numRequests,
    inputLen: o.inputLen,
    outputLen: o.outputLen,
    requestRate: o.requestRate ?? null,
    maxConcurrency: o.maxConcurrency ?? null,
    seed,
    ...summarizeServeRuns(runs, o.inputLen, t0, end),
  };
}
