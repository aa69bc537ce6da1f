// The builder: checkpoint → model definition → optimized plan → engine directory.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Checkpoint } from "../checkpoint/checkpoint.ts";
import { readHfConfig } from "../checkpoint/hf_config.ts";
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { DTYPE_BY_NAME, type DType, toF32 } from "../dtype.ts";
import { type BuildConfig, resolveBuildConfig, storedFormat } from "../engine/build_config.ts";
import { ENGINE_FORMAT_VERSION, type EngineConfig, TOKENIZER_FILES } from "../engine/format.ts";
import { isEngineDir } from "../engine/reader.ts";
import {
  assertOutputReplaceable,
  type EngineWeight,
  type PublishMode,
  writeEngineSteps,
} from "../engine/writer.ts";
import { InvalidArgumentError } from "../errors.ts";
import { contextWindow } from "../models/context.ts";
import type { Network } from "../models/network.ts";
import { defineModel } from "../models/registry.ts";
import { KILN_VERSION } from "../version.ts";
import { calibrationIds, calibrationWindow } from "./calibration_run.ts";
import { checkWeightsPresent, engineWeight, resolveDtype } from "./checkpoint_weights.ts";
import { ModelIsEngineError } from "./errors.ts";
import { optimize } from "./optimize.ts";
import { type AwqReport, awqScaledWeights, CPU_AWQ } from "./passes/awq/awq.ts";
import { fp8InputScales } from "./passes/fp8_static.ts";
import { quantizableWeights, quantizeWeights } from "./passes/quantize_weights.ts";
import { assertPrequantizedBuild, PrequantizedLinears } from "./prequantized.ts";
import { QuantizePool } from "./quantize_pool.ts";
import { randomEngineWeight } from "./random_weights.ts";
import { runSteps } from "./steps.ts";
import { cudaAwqTarget } from "./targets/cuda_awq.ts";
import { buildCudaArtifacts } from "./targets/cuda_target.ts";

export interface BuildResult {
  dir: string;
  config: EngineConfig;
  seconds: number;
  /** Of `seconds`, the CUDA target's: kernels compiled for the GPU and GEMM algorithms timed on it. */
  targetSeconds?: number;
  /** int4-awq: the calibration's tokens and the scales chosen per group of linears. */
  awq?: AwqReport;
}

/** Builds the engine of checkpoint `modelDir` into `outDir`. */
export function buildEngine(
  modelDir: string,
  outDir: string,
  options: Partial<BuildConfig> = {},
  /** How weight files are hashed for the engine's source record (the cache passes its memo). */
  hashFile?: (path: string) => string,
  mode: PublishMode = "output",
): BuildResult {
  return runSteps(buildEngineSteps(modelDir, outDir, options, hashFile, mode));
}

/** The build as a generator that yields after each weight written; `return()` stops it and removes
 * its temporary directory (the CLI does so on Ctrl-C). */
export function* buildEngineSteps(
  modelDir: string,
  outDir: string,
  options: Partial<BuildConfig> = {},
  hashFile?: (path: string) => string,
  mode: PublishMode = "output",
): Generator<void, BuildResult> {
  const t0 = performance.now();
  const build = resolveBuildConfig(options);
  assertCheckpointNotEngine(modelDir);
  if (mode === "output") assertOutputReplaceable(outDir); // before any slow work
  if (build.randomWeights) return yield* buildRandom(modelDir, outDir, build, t0, mode);
  const ckpt = Checkpoint.open(modelDir);
  try {
    const model = ckpt.config;
    assertPrequantizedBuild(ckpt.quantization, build, modelDir);
    const quantized = new PrequantizedLinears(ckpt, ckpt.quantization);
    const network = optimize(defineModel(model, join(modelDir, "config.json")), build, quantized.canFuse);
    checkWeightsPresent(ckpt, network, modelDir, quantized);
    const dtype = resolveDtype(ckpt, network, build, quantized);
    const config = engineConfig(model, build, dtype, ckpt.contentHash(hashFile), modelDir);
    if (ckpt.quantization.method !== "none") config.source.quantization = ckpt.quantization;
    const weights = Object.entries(network.weights).map(([name, spec]) =>
      engineWeight(ckpt, name, spec, dtype, quantized),
    );
    return yield* finish(modelDir, outDir, config, network, weights, t0, mode);
  } finally {
    ckpt.close();
  }
}

/** A build's source must be a checkpoint; an engine there gets a message saying what it is. */
export function assertCheckpointNotEngine(modelDir: string): void {
  if (!isEngineDir(modelDir)) return;
  let source = "";
  try {
    source = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")).source?.path ?? "";
  } catch {
    // no readable config: say it without the source
  }
  throw new ModelIsEngineError(
    `--model ${modelDir} is already a kiln engine${source ? ` (built from ${source})` : ""}; ` +
      `run it with kiln run --model ${modelDir}, or pass the Hugging Face checkpoint to kiln build`,
  );
}

/** An engine of the config's exact shape with random weights (no checkpoint needed). */
function* buildRandom(
  modelDir: string,
  outDir: string,
  build: BuildConfig,
  t0: number,
  mode: PublishMode,
): Generator<void, BuildResult> {
  const configPath = join(modelDir, "config.json");
  const model = readHfConfig(modelDir);
  const network = optimize(defineModel(model, configPath), build);
  const dtype: DType = build.dtype === "auto" ? "BF16" : DTYPE_BY_NAME[build.dtype];
  const hash = createHash("sha256")
    .update(readFileSync(configPath))
    .update("random-weights-v1")
    .digest("hex");
  const config = engineConfig(model, build, dtype, hash, modelDir);
  const weights = Object.entries(network.weights).map(([name, spec]) =>
    randomEngineWeight(name, spec, dtype),
  );
  return yield* finish(modelDir, outDir, config, network, weights, t0, mode);
}

function engineConfig(
  model: ModelConfig,
  build: BuildConfig,
  dtype: DType,
  hash: string,
  dir: string,
): EngineConfig {
  const window = contextWindow(model);
  if (build.maxSeqLen > window) {
    throw new InvalidArgumentError(
      `--max-seq-len ${build.maxSeqLen} exceeds the model's context window of ${window} tokens; use at most ${window}`,
    );
  }
  return {
    format: "kiln-engine",
    formatVersion: ENGINE_FORMAT_VERSION,
    kilnVersion: KILN_VERSION,
    createdAt: new Date().toISOString(),
    model: { ...model, raw: {} },
    build: { ...build, dtype: dtypeName(dtype) },
    target: { backend: build.backend },
    mapping: { worldSize: 1, tpSize: 1, ppSize: 1 },
    source: { checkpointHash: hash, path: dir },
    maxSeqLen: build.maxSeqLen || window,
    files: ["rank0.engine"],
  };
}

function* finish(
  modelDir: string,
  outDir: string,
  config: EngineConfig,
  network: Network,
  weights: EngineWeight[],
  t0: number,
  mode: PublishMode,
): Generator<void, BuildResult> {
  // Target-specific artifacts: the CUDA target compiles its kernels for the GPU it builds on.
  let blobs: { name: string; bytes: Uint8Array }[] = [];
  let targetSeconds: number | undefined;
  if (config.build.backend === "cuda") {
    const dtype = config.build.dtype === "auto" ? "bf16" : config.build.dtype;
    const cuda = buildCudaArtifacts(
      config.model,
      { ops: network.ops, output: network.output },
      dtype,
      config.build,
      // The formats the weights will be stored in (bytes not computed): which kernels to compile.
      config.build.quantize === "none"
        ? weights
        : quantizeWeights(network, weights, storedFormat(config.build.quantize)),
    );
    config.target = cuda.target;
    blobs = cuda.blobs;
    targetSeconds = cuda.compileSeconds;
  }
  const extra = TOKENIZER_FILES.filter((f) => existsSync(join(modelDir, f))).map((f) => ({
    from: join(modelDir, f),
    name: f,
  }));
  config.files.push(...extra.map((e) => e.name));
  const plan = { ops: network.ops, output: network.output };
  const method = config.build.quantize;
  let stored = weights;
  let awq: AwqReport | undefined;
  let inputScales: Map<string, number> | undefined;
  if (method === "int4-awq") {
    const ids = calibrationIds(config.build, modelDir);
    // --backend cuda: calibration and both searches on the GPU the engine is built on.
    const t = performance.now();
    const target =
      config.build.backend === "cuda"
        ? cudaAwqTarget(config.model, plan, calibrationWindow(config.model, config.build.maxSeqLen))
        : CPU_AWQ;
    const kernelsMs = performance.now() - t;
    ({ weights: stored, report: awq } = yield* awqScaledWeights(
      config.model,
      network,
      weights,
      ids,
      config.build.maxSeqLen,
      target,
    ));
    if (target !== CPU_AWQ) awq.ms.kernels = kernelsMs;
  } else if (method === "fp8-static") {
    const ids = calibrationIds(config.build, modelDir);
    const fp32 = new Map(weights.map((w) => [w.name, toF32(w.bytes(), w.dtype)]));
    const window = calibrationWindow(config.model, config.build.maxSeqLen);
    inputScales = yield* fp8InputScales(config.model, network, fp32, ids, window);
  }
  // Quantized regions are computed on worker threads ahead of the writer (quantize_pool.ts).
  const eligible = quantizableWeights(network);
  const pool = new QuantizePool(
    method === "none" ? 0 : QuantizePool.threadsFor(stored.filter((w) => eligible.has(w.name))),
  );
  try {
    if (method !== "none") stored = quantizeWeights(network, stored, storedFormat(method), inputScales, pool);
    yield* writeEngineSteps(outDir, config, plan, stored, extra, blobs, mode);
  } finally {
    pool.close();
  }
  return {
    dir: outDir,
    config,
    seconds: (performance.now() - t0) / 1000,
    ...(targetSeconds !== undefined ? { targetSeconds } : {}),
    ...(awq ? { awq } : {}),
  };
}

function dtypeName(d: DType): "fp32" | "fp16" | "bf16" {
  return d === "F32" ? "fp32" : d === "F16" ? "fp16" : "bf16";
}
