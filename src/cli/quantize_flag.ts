// `--quantize FORMAT` of every command that builds an engine (build, and run/chat/bench/serve/eval when
// they build a checkpoint through the cache): the methods engine/build_config.ts defines, and the
// calibration flags of int4-awq and fp8-static.
import { Option } from "commander";
import { type BuildConfig, QUANTIZE_METHODS, type QuantizeMethod } from "../engine/build_config.ts";
import { DEFAULT_CALIBRATION_TOKENS } from "../engine/calibration.ts";
import { choiceArg, intArg } from "./args.ts";

export type QuantizeFlag = QuantizeMethod;

export const quantizeOption = () =>
  new Option(
    "--quantize <format>",
    "quantization of the transformer blocks' linears (docs/QUANTIZATION.md)",
  ).argParser(choiceArg("--quantize", QUANTIZE_METHODS));

/** --calibration and --calibration-tokens (int4-awq and fp8-static; resolveBuildConfig refuses them
 * otherwise). */
export const calibrationOptions = () => [
  new Option(
    "--calibration <file>",
    "int4-awq, fp8-static: text run through the model to find activation scales (default: a bundled Shakespeare slice)",
  ),
  new Option(
    "--calibration-tokens <n>",
    `int4-awq, fp8-static: calibration tokens to use (default ${DEFAULT_CALIBRATION_TOKENS})`,
  ).argParser(intArg("--calibration-tokens", 2)),
];

export interface CalibrationFlags {
  calibration?: string;
  calibrationTokens?: number;
}

/** The build options the calibration flags set (none when absent). */
export function calibrationBuild(f: CalibrationFlags): Partial<BuildConfig> {
  return {
    ...(f.calibration !== undefined ? { calibrationFile: f.calibration } : {}),
    ...(f.calibrationTokens !== undefined ? { calibrationTokens: f.calibrationTokens } : {}),
  };
}
