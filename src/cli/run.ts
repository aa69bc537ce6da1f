// `kiln run`: generate from a checkpoint or engine (built on the fly and cached). Every
// SamplingConfig field is a flag named as the field in kebab case.
import type { Command } from "commander";
import { isEngineDir } from "../engine/reader.ts";
import { ChatTemplate } from "../runtime/chat_template.ts";
import { type GenerateOptions, ModelRunner, type Prompt } from "../runtime/model_runner.ts";
import { choiceArg, defaultModelDir, idsArg, intArg, modelDirArg } from "./args.ts";
import { chatPromptFromText } from "./chat_prompt.ts";
import { addDecodingOptions, type DecodingFlags, decodingOptionsFromFlags } from "./decoding_flags.ts";
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

interface RunFlags extends DecodingFlags, KvCacheFlags, CalibrationFlags {
  model?: string;
  prompt?: string;
  inputIds?: number[];
  chat?: boolean;
  system?: string;
  chatTemplate?: string;
  specialTokens: boolean;
  dtype?: "fp32" | "fp16" | "bf16";
  quantize?: QuantizeFlag;
  backend?: "cpu" | "cuda";
  cacheDir?: string;
  randomWeights?: boolean;
  json?: boolean;
}

export function registerRun(program: Command): void {
  const cmd = program
    .command("run")
    .description("generate text from a model (a Hugging Face checkpoint dir or a kiln engine dir)")
    .option(
      "--model <dir>",
      "checkpoint or engine directory (default: the bundled Shakespeare model)",
      modelDirArg,
    )
    .option("--prompt <text>", "prompt text")
    .option("--input-ids <ids>", "prompt as comma-separated token ids", idsArg)
    .option("--chat", "wrap the prompt in the model's chat template as a user message")
    .option("--system <text>", "system message for --chat")
    .option("--chat-template <file>", "Jinja chat template file for --chat, instead of the model's")
    .option("--max-new-tokens <n>", "tokens to generate at most", intArg("--max-new-tokens", 1));
  addDecodingOptions(cmd, { whole: true })
    .option("--no-special-tokens", "do not add BOS/special tokens to the prompt text")
    .option(
      "--dtype <dtype>",
      "weight dtype of the built engine",
      choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const),
    )
    .addOption(quantizeOption())
    .addOption(calibrationOptions()[0])
    .addOption(calibrationOptions()[1])
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option("--cache-dir <dir>", "engine cache directory")
    .option("--random-weights", "build from config.json alone with random weights (benchmarks)")
    .option("--json", "print one JSON object instead of streaming text")
    .addOption(kvFractionOption())
    .addOption(maxKvTokensOption())
    .addOption(kvCacheDtypeOption())
    .action(async (flags: RunFlags) => runCommand(flags));
}

export function generateOptionsFromFlags(f: RunFlags): GenerateOptions {
  return { ...decodingOptionsFromFlags(f), addSpecialTokens: f.specialTokens };
}

async function runCommand(f: RunFlags): Promise<void> {
  const dir = f.model ?? defaultModelDir();
  const warnings = checkRunFlags(f, dir, isEngineDir(dir));
  // The template is read from the user's directory before any build, so a broken one names the
  // user's file and fails at once.
  const template = f.chat
    ? ChatTemplate.fromDir(dir, f.chatTemplate !== undefined ? { templateFile: f.chatTemplate } : {})
    : null;
  const runner = await whileInterruptible((signal) =>
    ModelRunner.load(
      dir,
      {
        ...(f.dtype ? { dtype: f.dtype } : {}),
        ...(f.quantize ? { quantize: f.quantize } : {}),
        ...calibrationBuild(f),
        ...(f.backend ? { backend: f.backend } : {}),
        ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
        ...(f.randomWeights ? { randomWeights: true } : {}),
        kvCache: kvCacheFromFlags(f),
      },
      signal,
    ),
  );
  try {
    if (f.kvCacheFreeGpuMemFraction !== undefined && runner.session.config.target.backend !== "cuda")
      warnings.push(
        "--kv-cache-free-gpu-mem-fraction has no effect: it sizes the KV cache from free GPU memory, and this run is on the CPU backend (--max-kv-tokens caps it there)",
      );
    for (const w of warnings) process.stderr.write(`kiln: warning: ${w}\n`);
    const opts = generateOptionsFromFlags(f);
    let prompt: Prompt = f.inputIds ? { ids: f.inputIds } : (f.prompt ?? defaultPrompt(runner));
    if (template)
      prompt = {
        ids: chatPromptFromText(runner, template, typeof prompt === "string" ? prompt : "", f.system),
      };
    if (f.json) {
      const [out] = await runner.generate(prompt, opts);
      const json: Record<string, unknown> = {
        outputIds: out.outputIds,
        logProbs: out.logProbs,
        text: out.text,
        finishReason: out.finishReason,
        // Where the engine came from: an engine dir, the content cache ("hit"), or built now.
        engine: runner.engine,
        sequences: out.sequences.map((s) => ({
          outputIds: s.outputIds,
          text: s.text,
          cumLogProb: s.cumLogProb,
          ...(s.score !== undefined ? { score: s.score } : {}),
          finishReason: s.finishReason,
        })),
      };
      if (out.contextLogits) json.contextLogits = Array.from(out.contextLogits);
      if (out.generationLogits) json.generationLogits = out.generationLogits.map((g) => Array.from(g));
      process.stdout.write(`${JSON.stringify(json)}\n`);
      return;
    }
    const shown = typeof prompt === "string" ? prompt : "";
    const single = (opts.beamWidth ?? 1) === 1 && (opts.numReturnSequences ?? 1) === 1;
    if (single) {
      // The prompt is echoed with the first token: the request (sampling settings, prompt ids, context
      // window) is validated before that token is made, so a bad request prints nothing on stdout.
      let echoed = false;
      for await (const ev of runner.stream(prompt, opts)) {
        if (!echoed) process.stdout.write(shown);
        echoed = true;
        process.stdout.write(ev.text);
      }
      process.stdout.write(echoed ? "\n" : `${shown}\n`);
      return;
    }
    // Several sequences (beams or samples): print each when done.
    const [out] = await runner.generate(prompt, opts);
    out.sequences.forEach((s, i) => {
      process.stdout.write(
        `${i === 0 ? "" : "\n"}--- sequence ${i} (${s.finishReason}, cumLogProb ${s.cumLogProb.toFixed(3)})\n${shown}${s.text}\n`,
      );
    });
  } finally {
    runner.dispose();
  }
}

/** Without --prompt: a model with a tokenizer continues "ROMEO:" (the bundled model starts a scene); a
 * model without one starts from its BOS id. */
function defaultPrompt(runner: ModelRunner): Prompt {
  return runner.session.tokenizer ? "ROMEO:" : { ids: [runner.session.config.model.bosTokenId ?? 0] };
}
