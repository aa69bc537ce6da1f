// `kiln build`: compile a checkpoint into an engine directory.
import type { Command } from "commander";
import { buildEngineSteps } from "../builder/builder.ts";
import { runStepsUntil } from "../builder/steps.ts";
import { EngineCorruptError } from "../engine/errors.ts";
import { engineDamage } from "../engine/verify.ts";
import { choiceArg, intArg, modelDirArg } from "./args.ts";
import { checkBuildPaths } from "./build_paths.ts";
import { whileInterruptible } from "./interruptible.ts";
import {
  type CalibrationFlags,
  calibrationBuild,
  calibrationOptions,
  type QuantizeFlag,
  quantizeOption,
} from "./quantize_flag.ts";

interface BuildFlags extends CalibrationFlags {
  model: string;
  output: string;
  dtype?: "fp32" | "fp16" | "bf16";
  backend?: "cpu" | "cuda";
  maxSeqLen?: number;
  maxBatchSize?: number;
  maxNumTokens?: number;
  kvBlockSize?: number;
  fuse: boolean;
  quantize?: QuantizeFlag;
  randomWeights?: boolean;
  json?: boolean;
  verify?: boolean;
}

export function registerBuild(program: Command): void {
  program
    .command("build")
    .description("build an engine from a Hugging Face checkpoint")
    .requiredOption("--model <dir>", "Hugging Face checkpoint directory", modelDirArg)
    .requiredOption("--output <dir>", "engine directory to write (only a kiln engine there is replaced)")
    .option(
      "--dtype <dtype>",
      "weight dtype (default: the checkpoint's)",
      choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const),
    )
    .option("--backend <backend>", "target backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option(
      "--max-seq-len <n>",
      "longest sequence served (default: the model's context window)",
      intArg("--max-seq-len", 1),
    )
    .option("--max-batch-size <n>", "most sequences per step", intArg("--max-batch-size", 1))
    .option(
      "--max-num-tokens <n>",
      "most tokens in one step (CUDA activation arena)",
      intArg("--max-num-tokens", 1),
    )
    .option("--kv-block-size <n>", "tokens per KV-cache block", intArg("--kv-block-size", 1))
    .addOption(quantizeOption())
    .addOption(calibrationOptions()[0])
    .addOption(calibrationOptions()[1])
    .option("--no-fuse", "skip the fusion passes (debugging)")
    .option("--random-weights", "build from config.json alone with random weights (benchmarks)")
    .option("--verify", "read the written engine back and check every checksum (as kiln verify)")
    .option("--json", "print the engine config as JSON")
    .action(async (f: BuildFlags) => {
      checkBuildPaths(f.model, f.output);
      // Driven between event-loop turns: Ctrl-C removes the partial engine and exits 130.
      const steps = buildEngineSteps(f.model, f.output, {
        dtype: f.dtype,
        backend: f.backend,
        maxSeqLen: f.maxSeqLen,
        maxBatchSize: f.maxBatchSize,
        maxNumTokens: f.maxNumTokens,
        kvBlockSize: f.kvBlockSize,
        fuse: f.fuse,
        quantize: f.quantize,
        ...calibrationBuild(f),
        randomWeights: f.randomWeights,
      });
      const r = await whileInterruptible((signal) => runStepsUntil(steps, signal));
      // What the disk gives back, not what was written: catches a storage fault before the engine ships.
      if (f.verify) {
        const damage = engineDamage(r.dir);
        if (damage.length) throw new EngineCorruptError(r.dir, damage.join(", "));
      }
      const verified = f.verify ? { verified: true } : {};
      if (f.json) {
        const timing = {
          seconds: r.seconds,
          ...(r.targetSeconds !== undefined ? { targetSeconds: r.targetSeconds } : {}),
        };
        const awq = r.awq ? { awq: r.awq } : {};
        process.stdout.write(
          `${JSON.stringify({ dir: r.dir, ...timing, ...verified, config: r.config, ...awq })}\n`,
        );
      } else {
        const target =
          r.targetSeconds !== undefined ? ` (kernels and GEMM tuning ${r.targetSeconds.toFixed(2)} s)` : "";
        const check = f.verify ? "; every checksum verified" : "";
        process.stdout.write(
          `built ${r.dir} (${r.config.model.architecture}, ${r.config.build.dtype}) in ${r.seconds.toFixed(2)} s${target}${check}\n`,
        );
      }
    });
}
