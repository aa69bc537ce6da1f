// Flags of `kiln run` that contradict each other, or that cannot apply to this run. A contradiction is
// refused before any work (no build, no output); a flag that cannot apply is reported once on stderr
// and the run goes on, so a script that passes it keeps working.
import { InvalidArgumentError } from "../errors.ts";
import type { SamplingConfig } from "../sampling/sampling_config.ts";

/** Two command-line flags that cannot be used together, or a flag the model directory cannot take. */
export class ConflictingFlagsError extends InvalidArgumentError {}

/** The flags these checks read (undefined = not given). */
export interface RunFlagsSeen
  extends Partial<
    Pick<
      SamplingConfig,
      | "temperature"
      | "topK"
      | "topP"
      | "topPDecay"
      | "topPMin"
      | "topPResetIds"
      | "minP"
      | "randomSeed"
      | "minLength"
      | "beamWidth"
      | "lengthPenalty"
      | "earlyStopping"
      | "padId"
      | "returnContextLogits"
      | "returnGenerationLogits"
    >
  > {
  prompt?: string;
  inputIds?: number[];
  greedy?: boolean;
  seed?: number;
  ignoreEos?: boolean;
  endId?: number[];
  chat?: boolean;
  system?: string;
  chatTemplate?: string;
  json?: boolean;
  dtype?: string;
  quantize?: string;
  calibration?: string;
  cacheDir?: string;
  randomWeights?: boolean;
}

// Sampling settings that greedy decoding (always the most likely token) leaves without effect.
const SAMPLING_KNOBS = [
  ["temperature", "--temperature"],
  ["topK", "--top-k"],
  ["topP", "--top-p"],
  ["topPDecay", "--top-p-decay"],
  ["topPMin", "--top-p-min"],
  ["topPResetIds", "--top-p-reset-ids"],
  ["minP", "--min-p"],
] as const;

/** Build flags given with a built engine (run, chat, bench, eval, serve): its dtype and weights were
 * fixed when it was built, so each is a ConflictingFlagsError naming the fix. */
export function checkEngineDirFlags(
  f: { dtype?: string; quantize?: string; calibration?: string },
  modelDir: string,
  engineDir: boolean,
): void {
  if (!engineDir) return;
  const conflict = (message: string): never => {
    throw new ConflictingFlagsError(message);
  };
  if (f.dtype !== undefined)
    conflict(
      `--dtype ${f.dtype}: ${modelDir} is a built engine, whose dtype was fixed when it was built; drop --dtype, or pass the checkpoint directory to build a ${f.dtype} engine from it`,
    );
  if (f.quantize !== undefined)
    conflict(
      `--quantize ${f.quantize}: ${modelDir} is a built engine, whose weight formats were fixed when it was built; drop --quantize, or pass the checkpoint directory to build a ${f.quantize} engine from it`,
    );
  if (f.calibration !== undefined)
    conflict(
      `--calibration ${f.calibration}: ${modelDir} is a built engine, whose weights were fixed when it was built; drop --calibration, or pass the checkpoint directory to build a calibrated engine from it`,
    );
}

/** Throws ConflictingFlagsError for the first contradiction; returns one line per flag that cannot
 * apply. `engineDir`: the model directory is a built engine (its dtype and weights are fixed). */
export function checkRunFlags(f: RunFlagsSeen, modelDir: string, engineDir: boolean): string[] {
  const conflict = (message: string): never => {
    throw new ConflictingFlagsError(message);
  };
  if (f.prompt !== undefined && f.inputIds) conflict("give either --prompt or --input-ids, not both");
  if (f.chat && f.inputIds)
    conflict("--chat needs --prompt text (it goes into the chat template), not --input-ids");
  if (f.greedy) {
    const knob = SAMPLING_KNOBS.find(([k]) => f[k] !== undefined);
    if (knob)
      conflict(
        `--greedy conflicts with ${knob[1]} ${f[knob[0]]}: greedy decoding always takes the most likely token, so sampling settings cannot apply; drop --greedy to sample, or drop ${knob[1]}`,
      );
  }
  if (f.greedy && f.beamWidth !== undefined && f.beamWidth > 1)
    conflict(
      `--greedy conflicts with --beam-width ${f.beamWidth}: greedy decoding follows one sequence, beam search the ${f.beamWidth} most likely; drop one of them`,
    );
  if (f.seed !== undefined && f.randomSeed !== undefined)
    conflict(`--seed ${f.seed} and --random-seed ${f.randomSeed} set the same thing; give one of them`);
  if (f.ignoreEos && f.endId)
    conflict(
      `--ignore-eos removes every end id, so --end-id ${f.endId.join(",")} cannot apply; give one of them`,
    );
  checkEngineDirFlags(f, modelDir, engineDir);

  const warnings: string[] = [];
  const warn = (flag: string, why: string) => warnings.push(`${flag} has no effect: ${why}`);
  if (engineDir && f.cacheDir !== undefined)
    warn(
      "--cache-dir",
      `${modelDir} is a built engine, which runs as it is (the cache holds engines built from checkpoints)`,
    );
  if (engineDir && f.randomWeights)
    warn("--random-weights", `${modelDir} is a built engine, whose weights are fixed`);
  if (f.greedy && (f.seed !== undefined || f.randomSeed !== undefined))
    warn(f.seed !== undefined ? "--seed" : "--random-seed", "greedy decoding draws no random numbers");
  if (f.ignoreEos && f.minLength !== undefined)
    warn("--min-length", "it bans end ids until that length, and --ignore-eos already removes them");
  const decays = typeof f.topPDecay === "number" && f.topPDecay < 1;
  if (!decays && f.topPMin !== undefined)
    warn("--top-p-min", "it is the floor of --top-p-decay, which is off");
  if (!decays && f.topPResetIds !== undefined)
    warn("--top-p-reset-ids", "it undoes --top-p-decay, which is off");
  const beams = f.beamWidth !== undefined && f.beamWidth > 1;
  if (!beams && f.lengthPenalty !== undefined)
    warn("--length-penalty", "it scores beams; add --beam-width N (N > 1)");
  if (!beams && f.earlyStopping !== undefined)
    warn("--early-stopping", "it stops beam search; add --beam-width N (N > 1)");
  if (f.padId !== undefined)
    warn(
      "--pad-id",
      "kiln run generates for one prompt, whose output is never padded (the id is still checked)",
    );
  if (!f.chat && f.system !== undefined)
    warn("--system", "it is the system message of --chat, which is not set");
  if (!f.chat && f.chatTemplate !== undefined)
    warn("--chat-template", "it formats the prompt of --chat, which is not set");
  if (!f.json && f.returnContextLogits)
    warn("--return-context-logits", "logits are printed only with --json");
  if (!f.json && f.returnGenerationLogits)
    warn("--return-generation-logits", "logits are printed only with --json");
  return warnings;
}
