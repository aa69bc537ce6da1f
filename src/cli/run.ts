// `kiln run`: generate from a checkpoint or engine (built on the fly and cached). Every
// SamplingConfig field is a flag named as the field in kebab case.
import type { Command } from "commander";
import { isEngineDir } from "../engine/reader.ts";
import { ChatTemplate } from "../runtime/chat_template.ts";
import { type GenerateOptions, ModelRunner, type Prompt } from "../runtime/model_runner.ts";
import type { SamplingConfig } from "../runtime/sampling_config.ts";
import {
  biasArg,
  choiceArg,
  defaultModelDir,
  earlyStoppingArg,
  floatArg,
  idListArg,
  idsArg,
  intArg,
  modelDirArg,
  noPrefixedValueOption,
  wordArg,
} from "./args.ts";
import { chatPromptFromText } from "./chat.ts";
import { checkRunFlags } from "./flag_conflicts.ts";
import {
  type KvCacheFlags,
  kvCacheFromFlags,
  kvFractionOption,
  maxKvTokensOption,
} from "./kv_cache_flags.ts";

interface RunFlags extends Partial<Omit<SamplingConfig, "stopWords" | "badWords" | "endId">>, KvCacheFlags {
  model?: string;
  prompt?: string;
  inputIds?: number[];
  chat?: boolean;
  system?: string;
  chatTemplate?: string;
  greedy?: boolean;
  seed?: number;
  endId?: number[];
  stopWords?: (string | number[])[];
  badWords?: (string | number[])[];
  ignoreEos?: boolean;
  specialTokens: boolean;
  dtype?: "fp32" | "fp16" | "bf16";
  backend?: "cpu" | "cuda";
  cacheDir?: string;
  randomWeights?: boolean;
  json?: boolean;
}

export function registerRun(program: Command): void {
  const f = floatArg;
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
    .option("--chat", "wrap the prompt in the model's chat template as a user message")
    .option("--system <text>", "system message for --chat")
    .option("--chat-template <file>", "Jinja chat template file for --chat, instead of the model's")
    .option("--max-new-tokens <n>", "tokens to generate at most", intArg("--max-new-tokens", 1))
    .option("--greedy", "greedy decoding (temperature 0)")
    .option("--temperature <t>", "sampling temperature (0 = greedy)", f("--temperature"))
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", intArg("--top-k", 0))
    .option("--top-p <p>", "nucleus sampling mass", f("--top-p"))
    .option("--top-p-decay <d>", "topP ← max(topP·d, topPMin) after each token", f("--top-p-decay"))
    .option("--top-p-min <p>", "lower bound of the decayed topP", f("--top-p-min"))
    .option(
      "--top-p-reset-ids <id>",
      "token that resets topP to its initial value",
      intArg("--top-p-reset-ids", 0),
    )
    .option("--min-p <p>", "drop tokens below p × the top token's probability", f("--min-p"))
    .option("--min-length <n>", "ban end ids until n tokens were generated", intArg("--min-length", 0))
    .option("--repetition-penalty <p>", "HF repetition penalty (1 = off)", f("--repetition-penalty"))
    .option("--presence-penalty <p>", "OpenAI presence penalty (0 = off)", f("--presence-penalty"))
    .option("--frequency-penalty <p>", "OpenAI frequency penalty (0 = off)", f("--frequency-penalty"))
    .addOption(
      noPrefixedValueOption(
        "--no-repeat-ngram-size <n>",
        "never repeat an n-gram of this size (0 = off)",
        intArg("--no-repeat-ngram-size", 0),
      ),
    )
    .option("--seed <s>", "random seed (same seed, same tokens)", intArg("--seed", 0))
    .option("--random-seed <s>", "same as --seed", intArg("--random-seed", 0))
    .option("--beam-width <n>", "beam search with n beams (1 = off)", intArg("--beam-width", 1))
    .option("--length-penalty <p>", "beam score = logprob / length^p", f("--length-penalty"))
    .option(
      "--early-stopping [mode]",
      "beam search stopping: true (also the flag alone), false or never",
      earlyStoppingArg,
    )
    .option(
      "--beam-search-diversity-rate <r>",
      "diverse beam search rate (0 = off)",
      f("--beam-search-diversity-rate"),
    )
    .option(
      "--num-return-sequences <n>",
      "sequences returned per prompt",
      intArg("--num-return-sequences", 1),
    )
    .option(
      "--stop-words <word>",
      'stop at this text (repeatable; "ids:1,2" for token ids)',
      wordArg("--stop-words"),
    )
    .option(
      "--bad-words <word>",
      'never generate this (repeatable; "ids:1,2" for token ids)',
      wordArg("--bad-words"),
    )
    .option("--embedding-bias <pairs>", "logit bias as ID:VALUE,ID:VALUE", biasArg)
    .option(
      "--end-id <ids>",
      "end-of-sequence id(s), comma-separated (default: the model's)",
      idListArg("--end-id"),
    )
    .option("--pad-id <id>", "padding id", intArg("--pad-id", 0))
    .option("--ignore-eos", "keep generating past end-of-sequence tokens")
    .option("--return-context-logits", "include the prompt's logits in --json output")
    .option("--return-generation-logits", "include each step's logits in --json output")
    .option("--no-special-tokens", "do not add BOS/special tokens to the prompt text")
    .option(
      "--dtype <dtype>",
      "weight dtype of the built engine",
      choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const),
    )
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option("--cache-dir <dir>", "engine cache directory")
    .option("--random-weights", "build from config.json alone with random weights (benchmarks)")
    .option("--json", "print one JSON object instead of streaming text")
    .addOption(kvFractionOption())
    .addOption(maxKvTokensOption())
    .action(async (flags: RunFlags) => runCommand(flags));
}

const SAMPLING_FLAGS = [
  "maxNewTokens",
  "temperature",
  "topK",
  "topP",
  "topPDecay",
  "topPMin",
  "topPResetIds",
  "minP",
  "minLength",
  "repetitionPenalty",
  "presencePenalty",
  "frequencyPenalty",
  "noRepeatNgramSize",
  "randomSeed",
  "beamWidth",
  "lengthPenalty",
  "earlyStopping",
  "beamSearchDiversityRate",
  "numReturnSequences",
  "stopWords",
  "badWords",
  "embeddingBias",
  "padId",
  "returnContextLogits",
  "returnGenerationLogits",
] as const;

export function generateOptionsFromFlags(f: RunFlags): GenerateOptions {
  const o: Record<string, unknown> = {};
  for (const k of SAMPLING_FLAGS) if (f[k as keyof RunFlags] !== undefined) o[k] = f[k as keyof RunFlags];
  if (f.endId) o.endId = f.endId;
  if (f.greedy) o.greedy = true;
  if (f.seed !== undefined) o.seed = f.seed;
  if (f.ignoreEos) o.ignoreEos = true;
  o.addSpecialTokens = f.specialTokens;
  return o as GenerateOptions;
}

async function runCommand(f: RunFlags): Promise<void> {
  const dir = f.model ?? defaultModelDir();
  const warnings = checkRunFlags(f, dir, isEngineDir(dir));
  // The template is read from the user's directory before any build, so a broken one names the
  // user's file and fails at once.
  const template = f.chat
    ? ChatTemplate.fromDir(dir, f.chatTemplate !== undefined ? { templateFile: f.chatTemplate } : {})
    : null;
  const runner = ModelRunner.fromDir(dir, {
    ...(f.dtype ? { dtype: f.dtype } : {}),
    ...(f.backend ? { backend: f.backend } : {}),
    ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
    ...(f.randomWeights ? { randomWeights: true } : {}),
    kvCache: kvCacheFromFlags(f),
  });
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

/** Without --prompt: the bundled model starts a scene; other models start from BOS. */
function defaultPrompt(runner: ModelRunner): Prompt {
  return runner.session.tokenizer ? "ROMEO:" : { ids: [runner.session.config.model.bosTokenId ?? 0] };
}
