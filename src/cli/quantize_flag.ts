// `--quantize FORMAT` of every command that builds an engine (build, and run/chat/bench/serve when they
// build a checkpoint through the cache): the weight formats src/engine/weight_format.ts defines.
import { Option } from "commander";
import { WEIGHT_FORMATS, type WeightFormat } from "../engine/weight_format.ts";
import { choiceArg } from "./args.ts";

export type QuantizeFlag = WeightFormat;

export const quantizeOption = () =>
  new Option(
    "--quantize <format>",
    "weight-only quantization of the transformer blocks (docs/QUANTIZATION.md)",
  ).argParser(choiceArg("--quantize", WEIGHT_FORMATS));
