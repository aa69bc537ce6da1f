// `kiln serve`: the OpenAI-compatible HTTP server on one executor (server/open_server.ts). Prints one
// line when ready; SIGTERM or SIGINT shut it down gracefully (in-flight requests finish or are
// cancelled after --shutdown-timeout) and the command returns, exit 0.
import { type Command, Option } from "commander";
import type { Level } from "pino";
import { isEngineDir } from "../engine/reader.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { KvCacheDtype } from "../runtime/kv_cache_config.ts";
import type { OpenExecutorOptions } from "../runtime/open_executor.ts";
import {
  DEFAULT_LOG_STATS_INTERVAL_S,
  DEFAULT_SHUTDOWN_TIMEOUT_S,
  openServer,
} from "../server/open_server.ts";
import { choiceArg, defaultModelDir, intArg, modelDirArg } from "./args.ts";
import { checkEngineDirFlags } from "./flag_conflicts.ts";
import { kvCacheDtypeOption, kvFractionOption, maxKvTokensOption } from "./kv_cache_flags.ts";
import {
  type CalibrationFlags,
  calibrationBuild,
  calibrationOptions,
  type QuantizeFlag,
  quantizeOption,
} from "./quantize_flag.ts";

interface ServeFlags extends CalibrationFlags {
  model?: string;
  host: string;
  port: number;
  backend?: "cpu" | "cuda";
  dtype?: "fp32" | "fp16" | "bf16";
  cacheDir?: string;
  servedModelName?: string;
  apiKey?: string;
  maxQueue?: number;
  maxConcurrent?: number;
  requestTimeout?: number;
  maxPromptTokens?: number;
  chatTemplate?: string;
  logLevel: Level | "silent";
  logStatsInterval: number;
  shutdownTimeout: number;
  quantize?: QuantizeFlag;
  maxKvTokens?: number;
  kvCacheFreeGpuMemFraction?: number;
  kvCacheDtype?: KvCacheDtype;
  maxNumTokens?: number;
  maxNumSeqs?: number;
  maxBatchSize?: number;
  policy?: "guaranteedNoEvict" | "maxUtilization";
  prefixCaching: boolean;
}

/** Seconds: a number > 0 (or ≥ 0 with `zero`). */
function secondsArg(flag: string, zero = false) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n < 0 || (!zero && n === 0))
      throw new InvalidArgumentError(
        `${flag} expects seconds, a number ${zero ? "≥ 0" : "above 0"}, got "${v}"`,
      );
    return n;
  };
}

function portArg(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n > 65535)
    throw new InvalidArgumentError(
      `--port expects a port number in 0..65535 (0 picks a free one), got "${v}"`,
    );
  return n;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("serve a model over HTTP with an OpenAI-compatible API")
    .option("--model <dir>", "checkpoint or engine directory (default: the bundled model)", modelDirArg)
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: a free one)", portArg, 8000)
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option("--dtype <dtype>", "engine dtype", choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const))
    .option("--cache-dir <dir>", "engine cache directory")
    .option("--served-model-name <name>", "the model's name in the API (default: the directory's name)")
    .addOption(
      new Option("--api-key <key>", "require Authorization: Bearer KEY on the API routes").env(
        "KILN_API_KEY",
      ),
    )
    .option("--max-queue <n>", "waiting requests at most (429 beyond)", intArg("--max-queue", 1))
    .option(
      "--max-concurrent <n>",
      "requests running or waiting at most (429 beyond)",
      intArg("--max-concurrent", 1),
    )
    .option(
      "--request-timeout <s>",
      "cancel a request this many seconds after arrival",
      secondsArg("--request-timeout"),
    )
    .option(
      "--max-prompt-tokens <n>",
      "longest prompt accepted (default: the context window)",
      intArg("--max-prompt-tokens", 1),
    )
    .option("--chat-template <file>", "Jinja chat template file instead of the model's")
    .option("--log-level <level>", "pino log level", choiceArg("--log-level", LOG_LEVELS), "info")
    .option(
      "--log-stats-interval <s>",
      "seconds between the stats log lines (throughput, step times, queue, KV usage); 0: none",
      secondsArg("--log-stats-interval", true),
      DEFAULT_LOG_STATS_INTERVAL_S,
    )
    .option(
      "--shutdown-timeout <s>",
      "seconds in-flight requests get to finish at SIGTERM/SIGINT",
      secondsArg("--shutdown-timeout", true),
      DEFAULT_SHUTDOWN_TIMEOUT_S,
    )
    .addOption(quantizeOption())
    .addOption(calibrationOptions()[0])
    .addOption(calibrationOptions()[1])
    .addOption(kvFractionOption())
    .addOption(maxKvTokensOption())
    .addOption(kvCacheDtypeOption())
    .option("--max-num-tokens <n>", "tokens per executor iteration", intArg("--max-num-tokens", 1))
    .option("--max-num-seqs <n>", "running requests at most per iteration", intArg("--max-num-seqs", 1))
    .option("--max-batch-size <n>", "largest batch of a checkpoint's engine", intArg("--max-batch-size", 1))
    .option(
      "--policy <policy>",
      "KV capacity policy",
      choiceArg("--policy", ["guaranteedNoEvict", "maxUtilization"] as const),
    )
    .option("--no-prefix-caching", "do not reuse the KV blocks of earlier prompts")
    .action(async (f: ServeFlags) => serveCommand(f));
}

async function serveCommand(f: ServeFlags): Promise<void> {
  const model = f.model ?? defaultModelDir();
  checkEngineDirFlags(f, model, isEngineDir(model));
  const executor: OpenExecutorOptions = {
    ...(f.backend ? { backend: f.backend } : {}),
    ...(f.dtype ? { dtype: f.dtype } : {}),
    ...(f.quantize ? { quantize: f.quantize } : {}),
    ...calibrationBuild(f),
    ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
    ...(f.maxKvTokens !== undefined ? { maxTokens: f.maxKvTokens } : {}),
    ...(f.kvCacheFreeGpuMemFraction !== undefined
      ? { freeGpuMemoryFraction: f.kvCacheFreeGpuMemFraction }
      : {}),
    ...(f.kvCacheDtype !== undefined ? { kvCacheDtype: f.kvCacheDtype } : {}),
    ...(f.maxNumTokens !== undefined ? { maxNumTokens: f.maxNumTokens } : {}),
    ...(f.maxNumSeqs !== undefined ? { maxNumSeqs: f.maxNumSeqs } : {}),
    ...(f.maxBatchSize !== undefined ? { maxBatchSize: f.maxBatchSize } : {}),
    ...(f.policy ? { policy: f.policy } : {}),
    enablePrefixCaching: f.prefixCaching,
  };
  const server = await openServer({
    model,
    host: f.host,
    port: f.port,
    apiKey: f.apiKey ?? null,
    logLevel: f.logLevel,
    logStatsIntervalS: f.logStatsInterval,
    shutdownTimeoutS: f.shutdownTimeout,
    executor,
    ...(f.servedModelName !== undefined ? { servedModelName: f.servedModelName } : {}),
    ...(f.maxQueue !== undefined ? { maxQueue: f.maxQueue } : {}),
    ...(f.maxConcurrent !== undefined ? { maxConcurrent: f.maxConcurrent } : {}),
    ...(f.requestTimeout !== undefined ? { requestTimeoutS: f.requestTimeout } : {}),
    ...(f.maxPromptTokens !== undefined ? { maxPromptTokens: f.maxPromptTokens } : {}),
    ...(f.chatTemplate !== undefined ? { chatTemplate: f.chatTemplate } : {}),
  });
  process.stdout.write(`${server.readyLine}\n`);
  await new Promise<void>((resolve, reject) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      process.stderr.write(`kiln serve: ${signal}: shutting down\n`);
      server.close().then(resolve, reject);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
