// `kiln bench`: latency benchmark against the bandwidth and compute floors (see runtime/bench.ts), or
// with --num-requests throughput through the executor (runtime/throughput_bench.ts), or with --serve URL
// a running OpenAI-compatible server under load (server/serve_bench.ts).
import type { Command } from "commander";
import { isEngineDir } from "../engine/reader.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { BenchResult, BenchSampling } from "../runtime/bench.ts";
import { runBench } from "../runtime/bench.ts";
import { gib } from "../runtime/kv_cache_config.ts";
import { ModelRunner } from "../runtime/model_runner.ts";
import { runThroughputBench } from "../runtime/throughput_bench.ts";
import { runServeBench } from "../server/serve_bench.ts";
import { choiceArg, defaultModelDir, floatArg, fractionArg, intArg, modelDirArg } from "./args.ts";
import { checkServeFlags, DEFAULT_SERVE_REQUESTS, type ServeFlags, serveTable } from "./bench_serve.ts";
import { checkModeFlags, type ThroughputFlags, throughputTable } from "./bench_throughput.ts";
import { checkRunFlags } from "./flag_conflicts.ts";
import { whileInterruptible } from "./interruptible.ts";
import {
  type KvCacheFlags,
  kvCacheDtypeOption,
  kvCacheFromFlags,
  kvFractionOption,
  maxKvTokensOption,
} from "./kv_cache_flags.ts";
import {
  type CalibrationFlags,
  calibrationBuild,
  calibrationOptions,
  type QuantizeFlag,
  quantizeOption,
} from "./quantize_flag.ts";

/** Most running requests of the engine `kiln bench --num-requests` builds from a checkpoint. */
const THROUGHPUT_MAX_BATCH = 1024;

interface BenchFlags extends KvCacheFlags, ThroughputFlags, ServeFlags, CalibrationFlags {
  model?: string;
  backend?: "cpu" | "cuda";
  dtype?: "fp32" | "fp16" | "bf16";
  quantize?: QuantizeFlag;
  batchSize: number;
  inputLen: number;
  outputLen: number;
  runs: number;
  randomWeights?: boolean;
  profile?: boolean;
  cacheDir?: string;
  json?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
}

/** Sampled decoding when a temperature above 0 is given; top-k/p and min-p need one. */
function samplingFromFlags(f: BenchFlags): BenchSampling | undefined {
  const t = f.temperature ?? 0;
  if (t < 0) throw new InvalidArgumentError(`--temperature must be ≥ 0 (0 = greedy), got ${t}`);
  if (t === 0) {
    const extra = (["topK", "topP", "minP"] as const).filter((k) => f[k] !== undefined);
    if (extra.length > 0)
      throw new InvalidArgumentError(
        `--top-k, --top-p and --min-p apply to sampled decoding: give --temperature above 0 as well`,
      );
    return undefined;
  }
  return {
    temperature: t,
    ...(f.topK !== undefined ? { topK: f.topK } : {}),
    ...(f.topP !== undefined ? { topP: f.topP } : {}),
    ...(f.minP !== undefined ? { minP: f.minP } : {}),
  };
}

export function registerBench(program: Command): void {
  program
    .command("bench")
    .description("measure time to first token and time per output token against the hardware floor")
    .option("--model <dir>", "checkpoint, engine or (with --random-weights) config directory", modelDirArg)
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option("--dtype <dtype>", "engine dtype", choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const))
    .addOption(quantizeOption())
    .addOption(calibrationOptions()[0])
    .addOption(calibrationOptions()[1])
    .option("--batch-size <n>", "prompts per batch", intArg("--batch-size", 1), 1)
    .option("--input-len <n>", "prompt tokens", intArg("--input-len", 1), 128)
    .option("--output-len <n>", "generated tokens", intArg("--output-len", 1), 256)
    .option("--runs <n>", "timed repetitions (median reported)", intArg("--runs", 1), 3)
    .option("--random-weights", "build from config.json alone with random weights")
    .option("--profile", "break the prefill's and one decode step's GPU time down by kernel kind (CUDA)")
    .option("--cache-dir <dir>", "engine cache directory")
    .option("--json", "print one JSON object")
    .option(
      "--temperature <t>",
      "sampled decoding at this temperature (default 0: greedy)",
      floatArg("--temperature"),
    )
    .option("--top-k <k>", "with --temperature: sample from the k most likely tokens", intArg("--top-k", 0))
    .option("--top-p <p>", "with --temperature: nucleus mass, in (0, 1]", fractionArg("--top-p"))
    .option(
      "--min-p <p>",
      "with --temperature: drop tokens below p × the top one's probability",
      floatArg("--min-p"),
    )
    .addOption(kvFractionOption())
    .addOption(maxKvTokensOption())
    .addOption(kvCacheDtypeOption())
    .option("--seed <s>", "seed of the random prompts, arrivals and sampling", intArg("--seed", 0))
    .option(
      "--num-requests <n>",
      "throughput mode: requests through the executor",
      intArg("--num-requests", 1),
    )
    .option(
      "--request-rate <r>",
      "with --num-requests: Poisson arrivals at r requests/s (default: all at once)",
      floatArg("--request-rate"),
    )
    .option(
      "--max-num-tokens <n>",
      "with --num-requests: tokens per executor iteration (default: the engine's)",
      intArg("--max-num-tokens", 1),
    )
    .option(
      "--prefix-len <n>",
      "with --num-requests: every prompt starts with the same n tokens; also times one request's TTFT with them cached and cold",
      intArg("--prefix-len", 1),
    )
    .option(
      "--policy <policy>",
      "with --num-requests: capacity policy",
      choiceArg("--policy", ["guaranteedNoEvict", "maxUtilization"] as const),
    )
    .option(
      "--serve <url>",
      "benchmark a running OpenAI-compatible server's streaming /v1/completions instead",
    )
    .option(
      "--max-concurrency <n>",
      "with --serve: requests in flight at most (default: no cap)",
      intArg("--max-concurrency", 1),
    )
    .action(async (f: BenchFlags, cmd: Command) => {
      const given = (flag: string) => {
        const key = flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
        return cmd.getOptionValueSource(key) === "cli";
      };
      checkServeFlags(f, given);
      if (f.serve !== undefined) {
        const r = await runServeBench({
          url: f.serve,
          numRequests: f.numRequests ?? DEFAULT_SERVE_REQUESTS,
          inputLen: f.inputLen,
          outputLen: f.outputLen,
          ...(f.requestRate !== undefined ? { requestRate: f.requestRate } : {}),
          ...(f.maxConcurrency !== undefined ? { maxConcurrency: f.maxConcurrency } : {}),
          ...(f.seed !== undefined ? { seed: f.seed } : {}),
        });
        process.stdout.write(f.json ? `${JSON.stringify(r)}\n` : serveTable(r));
        return;
      }
      checkModeFlags(f, given);
      const sampling = samplingFromFlags(f);
      const dir = f.model ?? defaultModelDir();
      // --dtype on an engine is refused as run refuses it; flags that cannot apply warn once.
      const { dtype, quantize, calibration, cacheDir, randomWeights } = f;
      const seen = { dtype, quantize, calibration, cacheDir, randomWeights };
      for (const w of checkRunFlags(seen, dir, isEngineDir(dir)))
        process.stderr.write(`kiln: warning: ${w}\n`);
      const options = {
        ...(f.backend ? { backend: f.backend } : {}),
        ...(f.dtype ? { dtype: f.dtype } : {}),
        ...(f.quantize ? { quantize: f.quantize } : {}),
        ...calibrationBuild(f),
        ...(f.randomWeights ? { randomWeights: true } : {}),
        ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
        // A checkpoint's engine: room for the batch (latency), or for every request at once up to
        // THROUGHPUT_MAX_BATCH (decode steps then read the weights once for that many tokens).
        maxBatchSize: Math.max(
          64,
          f.numRequests !== undefined ? Math.min(f.numRequests, THROUGHPUT_MAX_BATCH) : f.batchSize,
        ),
        maxNumTokens: Math.max(
          4096,
          f.numRequests !== undefined ? (f.maxNumTokens ?? 0) : f.batchSize * f.inputLen,
        ),
        kvCache: kvCacheFromFlags(f),
      };
      const runner = await whileInterruptible((signal) => ModelRunner.load(dir, options, signal));
      try {
        if (f.numRequests !== undefined) {
          const r = await runThroughputBench(runner.session, {
            numRequests: f.numRequests,
            inputLen: f.inputLen,
            outputLen: f.outputLen,
            ...(f.requestRate !== undefined ? { requestRate: f.requestRate } : {}),
            ...(f.seed !== undefined ? { seed: f.seed } : {}),
            ...(f.maxNumTokens !== undefined ? { maxNumTokens: f.maxNumTokens } : {}),
            ...(f.policy ? { policy: f.policy } : {}),
            ...(f.prefixLen !== undefined ? { prefixLen: f.prefixLen } : {}),
            ...(sampling ? { sampling } : {}),
            kvCache: runner.generation.kvCacheConfig,
          });
          process.stdout.write(f.json ? `${JSON.stringify(r)}\n` : throughputTable(r));
          return;
        }
        const r = await runBench(runner, {
          ...(f.seed !== undefined ? { seed: f.seed } : {}),
          batchSize: f.batchSize,
          inputLen: f.inputLen,
          outputLen: f.outputLen,
          runs: f.runs,
          profile: f.profile,
          sampling,
        });
        if (f.json) {
          process.stdout.write(`${JSON.stringify(r)}\n`);
          return;
        }
        const rows: [string, string][] = [
          ["device", `${r.device} (${r.backend}, ${r.dtype})`],
          ["model", r.model],
          ["batch / input / output", `${r.batchSize} / ${r.inputLen} / ${r.outputLen}`],
          ...(r.outputTokens !== r.batchSize * r.outputLen
            ? [["tokens generated", `${r.outputTokens} (generation stopped early)`] as [string, string]]
            : []),
          ["decoding", r.sampling ? samplingText(r.sampling) : "greedy"],
          [
            "TTFT",
            `${r.ttftMs.toFixed(2)} ms  (prefill floor ${r.prefillFloorMs.toFixed(2)} ms, ×${r.ttftOverPrefillFloor.toFixed(2)})`,
          ],
          [
            "TPOT (median)",
            `${r.tpotMs.toFixed(3)} ms  (floor ${r.floorMs.toFixed(3)} ms, ${decodeBound(r)}, ×${r.tpotOverFloor.toFixed(2)})`,
          ],
          ...(r.firstTokenSpreadMs > r.tpotMs
            ? [
                [
                  "prefill staggered",
                  `first tokens spread over ${r.firstTokenSpreadMs.toFixed(1)} ms: the prompts took several prefill iterations, so sequences decoded beside later prompts' prefill (TPOT counts those iterations; the floor is lock-step decode of the whole batch: --profile times that step)`,
                ] as [string, string],
              ]
            : []),
          ...(r.collectWaitMs !== undefined
            ? [
                [
                  "waiting for the GPU",
                  `${r.collectWaitMs.toFixed(3)} ms per step (the rest is host work)`,
                ] as [string, string],
              ]
            : []),
          ["output tokens/s", r.outputTokensPerSec.toFixed(1)],
          [
            "KV cache pool",
            `${r.kvCacheBlocks} blocks, ${r.kvCacheTokens} tokens, ${gib(r.kvCacheGiB * 2 ** 30)}${r.kvCacheDtype === "fp8" ? " fp8" : ""} (limited by ${r.kvCacheLimitedBy})`,
          ],
          ["copy bandwidth", `${r.copyBandwidthGBs.toFixed(1)} GB/s (read + write)`],
          [
            "GEMM rate",
            r.gemmTflops >= 1
              ? `${r.gemmTflops.toFixed(1)} TFLOP/s`
              : `${(r.gemmTflops * 1000).toFixed(2)} GFLOP/s`,
          ],
        ];
        for (const [k, v] of rows) process.stdout.write(`${k.padEnd(24)} ${v}\n`);
        if (r.profile) {
          const p = r.profile;
          process.stdout.write(
            `\ndecode step GPU time: graph ${p.graphMs.toFixed(3)} ms, eager sum ${p.eagerMs.toFixed(3)} ms\n`,
          );
          if (p.sampledGraphMs !== undefined && p.uploadGraphMs !== undefined)
            process.stdout.write(
              `with the greedy sampler in the graph: ${p.sampledGraphMs.toFixed(3)} ms, after the metadata upload ${p.uploadGraphMs.toFixed(3)} ms\n`,
            );
          writeKinds(p.byKind);
          if (p.prefill) {
            const f = p.prefill;
            process.stdout.write(
              `\nprefill GPU time: ${f.tokens} tokens in ${f.steps} step${f.steps === 1 ? "" : "s"}, eager sum ${f.eagerMs.toFixed(3)} ms (floor ${r.prefillFloorMs.toFixed(3)} ms)\n`,
            );
            writeKinds(f.byKind);
          }
        }
      } finally {
        runner.dispose();
      }
    });
}

/** GPU time by kind, slowest first. */
function writeKinds(byKind: NonNullable<BenchResult["profile"]>["byKind"]): void {
  const kinds = Object.entries(byKind).sort((a, b) => b[1].ms - a[1].ms);
  for (const [k, v] of kinds)
    process.stdout.write(`  ${k.padEnd(28)} ${v.ms.toFixed(3)} ms  (${v.count}×)\n`);
}

/** Which side sets the decode floor: its bytes at the copy bandwidth or its FLOPs at the GEMM rate. */
function decodeBound(r: BenchResult): string {
  const bytesMs = r.decodeFloorBytes / (r.copyBandwidthGBs * 1e9);
  const flopsMs = r.decodeFloorFlops / (r.gemmTflops * 1e12);
  return bytesMs >= flopsMs ? "bytes-bound" : "FLOP-bound";
}

function samplingText(s: BenchSampling): string {
  const parts = [`temperature ${s.temperature}`];
  if (s.topK !== undefined) parts.push(`top-k ${s.topK}`);
  if (s.topP !== undefined) parts.push(`top-p ${s.topP}`);
  if (s.minP !== undefined) parts.push(`min-p ${s.minP}`);
  return `sampled (${parts.join(", ")})`;
}
