// `--quantize FORMAT` of every command that builds an engine (build, and run/chat/bench/eval/serve when they
// build a checkpoint through the cache): the methods engine/build_config.ts lists.
import { Option } from "commander";
import { QUANTIZE_METHODS, type QuantizeMethod } from "../engine/build_config.ts";
import { choiceArg } from "./args.ts";

export type QuantizeFlag = QuantizeMethod;

export const quantizeOption = () =>
  new Option(
    "--quantize <format>",
    "quantization of the transformer blocks' linears (docs/QUANTIZATION.md)",
  ).argParser(choiceArg("--quantize", QUANTIZE_METHODS));
