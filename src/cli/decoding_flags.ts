// The decoding flags of `kiln run` and `kiln chat`: one flag per SamplingConfig field, named as the field
// in kebab case, defined once so both commands take the same names, parsers and help. `run` adds the
// flags that only make sense for one prompt printed whole (beams, several sequences, logits).
import type { Command } from "commander";
import type { GenerateOptions } from "../runtime/model_runner.ts";
import type { SamplingConfig } from "../sampling/sampling_config.ts";
import {
  biasArg,
  earlyStoppingArg,
  floatArg,
  idListArg,
  intArg,
  noPrefixedValueOption,
  wordArg,
} from "./args.ts";

/** What the decoding flags parse into (undefined = not given). */
export interface DecodingFlags
  extends Partial<Omit<SamplingConfig, "stopWords" | "badWords" | "endId" | "maxNewTokens">> {
  maxNewTokens?: number;
  greedy?: boolean;
  seed?: number;
  endId?: number[];
  stopWords?: (string | number[])[];
  badWords?: (string | number[])[];
  ignoreEos?: boolean;
}

/** Adds the per-token decoding flags (both commands); `whole: true` adds run's beam, sequence-count and
 * logits flags, whose results are printed once generation ends. */
export function addDecodingOptions(cmd: Command, { whole }: { whole: boolean }): Command {
  const f = floatArg;
  cmd
    .option("--greedy", "greedy decoding (temperature 0)")
    .option(
      "--temperature <t>",
      "sampling temperature (0 = greedy; below 1e-5 also greedy)",
      f("--temperature"),
    )
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
    .option("--ignore-eos", "keep generating past end-of-sequence tokens");
  if (!whole) return cmd;
  return cmd
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
    .option("--pad-id <id>", "padding id", intArg("--pad-id", 0))
    .option("--return-context-logits", "include the prompt's logits in --json output")
    .option("--return-generation-logits", "include each step's logits in --json output");
}

/** SamplingConfig fields whose flag value passes through unchanged. */
const PASS_THROUGH = [
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
] as const satisfies readonly (keyof DecodingFlags)[];

/** The library options the given flags stand for (flags not given are left to the defaults). */
export function decodingOptionsFromFlags(f: DecodingFlags): GenerateOptions {
  const o: Record<string, unknown> = {};
  for (const k of PASS_THROUGH) if (f[k] !== undefined) o[k] = f[k];
  if (f.endId) o.endId = f.endId;
  if (f.greedy) o.greedy = true;
  if (f.seed !== undefined) o.seed = f.seed;
  if (f.ignoreEos) o.ignoreEos = true;
  return o as GenerateOptions;
}
