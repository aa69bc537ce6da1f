// `kiln eval --perplexity FILE`: the model's perplexity on a text, with transformers' sliding window
// (src/runtime/perplexity.ts; docs/EVAL.md). The text is read and checked before the model loads.
import { readFileSync, statSync } from "node:fs";
import type { Command } from "commander";
import { runStepsUntil } from "../builder/steps.ts";
import { isEngineDir } from "../engine/reader.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { KvCacheDtype } from "../runtime/kv_cache_config.ts";
import { openSessionSteps } from "../runtime/open_session.ts";
import { checkStride, sessionPerplexity } from "../runtime/perplexity.ts";
import { EvalTextError } from "../runtime/perplexity_errors.ts";
import { choiceArg, defaultModelDir, intArg, modelDirArg } from "./args.ts";
import { checkEngineDirFlags } from "./flag_conflicts.ts";
import { whileInterruptible } from "./interruptible.ts";
import { kvCacheDtypeOption } from "./kv_cache_flags.ts";
import {
  type CalibrationFlags,
  calibrationBuild,
  calibrationOptions,
  type QuantizeFlag,
  quantizeOption,
} from "./quantize_flag.ts";

interface EvalFlags extends CalibrationFlags {
  model?: string;
  perplexity: string;
  maxLength?: number;
  stride?: number;
  maxTokens?: number;
  dtype?: "fp32" | "fp16" | "bf16";
  quantize?: QuantizeFlag;
  backend?: "cpu" | "cuda";
  kvCacheDtype?: KvCacheDtype;
  cacheDir?: string;
  json?: boolean;
}

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description("measure a model's perplexity on a text file (sliding window, token-level NLL)")
    .option("--model <dir>", "checkpoint or engine directory (default: the bundled model)", modelDirArg)
    .requiredOption("--perplexity <file>", "UTF-8 text file to score")
    .option(
      "--max-length <n>",
      "tokens per window (default: the engine's context window)",
      intArg("--max-length", 2),
    )
    .option(
      "--stride <n>",
      "tokens the window advances by (default: half of --max-length)",
      intArg("--stride", 1),
    )
    .option("--max-tokens <n>", "score only the first N tokens of the text", intArg("--max-tokens", 2))
    .option(
      "--dtype <dtype>",
      "weight dtype of the built engine",
      choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const),
    )
    .addOption(quantizeOption())
    .addOption(calibrationOptions()[0])
    .addOption(calibrationOptions()[1])
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .addOption(kvCacheDtypeOption())
    .option("--cache-dir <dir>", "engine cache directory")
    .option("--json", 'print {"perplexity":x,"tokens":n,...}')
    .action(async (f: EvalFlags) => evalCommand(f));
}

/** The file's text; a missing, unreadable or empty file is an EvalTextError. */
export function readEvalText(file: string): string {
  let text: string;
  try {
    if (statSync(file).isDirectory())
      throw new EvalTextError(`--perplexity ${file} is a directory; pass a text file`);
    text = readFileSync(file, "utf8");
  } catch (e) {
    if (e instanceof EvalTextError) throw e;
    const code = (e as { code?: string }).code;
    const why =
      code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(code ?? e);
    throw new EvalTextError(`--perplexity ${file}: ${why}; pass a readable text file`, { cause: e });
  }
  if (text.trim() === "")
    throw new EvalTextError(`--perplexity ${file} is empty; pass a file with text to score`);
  return text;
}

async function evalCommand(f: EvalFlags): Promise<void> {
  const dir = f.model ?? defaultModelDir();
  checkEngineDirFlags(f, dir, isEngineDir(dir));
  if (f.maxLength !== undefined && f.stride !== undefined) checkStride(f.maxLength, f.stride); // before the build
  const text = readEvalText(f.perplexity);
  const { session } = await whileInterruptible((signal) =>
    runStepsUntil(
      openSessionSteps(
        dir,
        {
          ...(f.dtype ? { dtype: f.dtype } : {}),
          ...(f.quantize ? { quantize: f.quantize } : {}),
          ...calibrationBuild(f),
          ...(f.backend ? { backend: f.backend } : {}),
        },
        f.cacheDir,
        undefined,
        f.kvCacheDtype,
      ),
      signal,
    ),
  );
  try {
    const tok = session.tokenizer;
    if (!tok)
      throw new InvalidArgumentError(
        `engine ${session.dir} has no tokenizer.json, so the text cannot be tokenized; pass the checkpoint directory instead`,
      );
    // As transformers' tokenizer(text) does: special tokens (BOS) included; the first is never scored.
    let ids = Int32Array.from(tok.encode(text).ids);
    if (f.maxTokens !== undefined) ids = ids.subarray(0, f.maxTokens);
    const r = sessionPerplexity(session, ids, {
      ...(f.maxLength !== undefined ? { maxLength: f.maxLength } : {}),
      ...(f.stride !== undefined ? { stride: f.stride } : {}),
    });
    if (f.json) {
      const json = {
        perplexity: r.perplexity,
        tokens: r.tokens,
        scoredTokens: r.scoredTokens,
        meanNll: r.meanNll,
        windows: r.windows,
        maxLength: r.maxLength,
        stride: r.stride,
        backend: session.config.target.backend,
        kvCacheDtype: session.backend.kvCacheDtype ?? "auto",
      };
      process.stdout.write(`${JSON.stringify(json)}\n`);
      return;
    }
    process.stdout.write(
      `perplexity ${r.perplexity.toFixed(4)} (mean NLL ${r.meanNll.toFixed(6)} nats) over ${r.scoredTokens} scored ` +
        `of ${r.tokens} tokens; ${r.windows} windows of ${r.maxLength}, stride ${r.stride}` +
        `${session.backend.kvCacheDtype === "fp8" ? "; fp8 KV cache" : ""}\n`,
    );
  } finally {
    session.dispose();
  }
}
