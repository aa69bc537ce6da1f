// `kiln run`: generate from a checkpoint or engine (built on the fly and cached).
import type { Command } from "commander";
import { InvalidArgumentError } from "../errors.ts";
import { type GenerateOptions, ModelRunner, type Prompt } from "../runtime/model_runner.ts";
import { choiceArg, defaultModelDir, floatArg, idsArg, intArg, modelDirArg } from "./args.ts";

interface RunFlags {
  model?: string;
  prompt?: string;
  inputIds?: number[];
  maxNewTokens: number;
  greedy?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  ignoreEos?: boolean;
  specialTokens: boolean;
  dtype?: "fp32" | "fp16" | "bf16";
  backend?: "cpu" | "cuda";
  cacheDir?: string;
  json?: boolean;
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("generate text from a model (a Hugging Face checkpoint dir or a kiln engine dir)")
    .option(
      "--model <dir>",
      "checkpoint or engine directory (default: the bundled Shakespeare model)",
      modelDirArg,
    )
    .option("--prompt <text>", "prompt text")
    .option("--input-ids <ids>", "prompt as comma-separated token ids", idsArg)
    .option("--max-new-tokens <n>", "tokens to generate at most", intArg("--max-new-tokens", 1), 64)
    .option("--greedy", "greedy decoding (argmax)")
    .option("--temperature <t>", "sampling temperature", floatArg("--temperature"))
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", intArg("--top-k", 0))
    .option("--top-p <p>", "nucleus sampling mass", floatArg("--top-p"))
    .option("--seed <s>", "random seed (same seed, same tokens)", intArg("--seed", 0))
    .option("--ignore-eos", "keep generating past end-of-sequence tokens")
    .option("--no-special-tokens", "do not add BOS/special tokens to the prompt text")
    .option(
      "--dtype <dtype>",
      "weight dtype of the built engine",
      choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const),
    )
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option("--cache-dir <dir>", "engine cache directory")
    .option("--json", "print one JSON object instead of streaming text")
    .action(async (flags: RunFlags) => runCommand(flags));
}

async function runCommand(f: RunFlags): Promise<void> {
  if (f.prompt !== undefined && f.inputIds)
    throw new InvalidArgumentError("give either --prompt or --input-ids, not both");
  const dir = f.model ?? defaultModelDir();
  const runner = ModelRunner.fromDir(dir, {
    ...(f.dtype ? { dtype: f.dtype } : {}),
    ...(f.backend ? { backend: f.backend } : {}),
    ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
  });
  try {
    const prompt: Prompt = f.inputIds ? { ids: f.inputIds } : (f.prompt ?? defaultPrompt(runner));
    const opts: GenerateOptions = {
      maxNewTokens: f.maxNewTokens,
      addSpecialTokens: f.specialTokens,
      ...(f.greedy ? { greedy: true } : {}),
      ...(f.temperature !== undefined ? { temperature: f.temperature } : {}),
      ...(f.topK !== undefined ? { topK: f.topK } : {}),
      ...(f.topP !== undefined ? { topP: f.topP } : {}),
      ...(f.seed !== undefined ? { seed: f.seed } : {}),
      ...(f.ignoreEos ? { ignoreEos: true } : {}),
    };
    if (f.json) {
      const [out] = await runner.generate(prompt, opts);
      const { outputIds, logProbs, text, finishReason } = out;
      process.stdout.write(`${JSON.stringify({ outputIds, logProbs, text, finishReason })}\n`);
      return;
    }
    if (typeof prompt === "string") process.stdout.write(prompt);
    for await (const ev of runner.stream(prompt, opts)) process.stdout.write(ev.text);
    process.stdout.write("\n");
  } finally {
    runner.dispose();
  }
}

/** Without --prompt: the bundled model starts a scene; other models start from BOS. */
function defaultPrompt(runner: ModelRunner): Prompt {
  return runner.session.tokenizer ? "ROMEO:" : { ids: [runner.session.config.model.bosTokenId ?? 0] };
}
