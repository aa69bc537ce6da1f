// Runs calibration tokens through a network being built, in fp32 on the CPU backend or (int4-awq with
// --backend cuda) on the GPU, calling `observe` with every linear op's input as it is read (int4-awq's
// activation statistics, fp8-static's input ranges). Windows of at most `window` tokens are independent
// sequences from position 0.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { StepInput } from "../backends/backend.ts";
import {
  type CalibrationTarget,
  type LinearInputObserver,
  openCalibrationBackend,
} from "../backends/open_backend.ts";
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { type BuildConfig, type QuantizeMethod, storedFormat } from "../engine/build_config.ts";
import { CalibrationFileError, readCalibrationText } from "../engine/calibration.ts";
import { contextWindow } from "../models/context.ts";
import type { Network } from "../models/network.ts";
import { Tokenizer } from "../tokenizer/index.ts";

export type { CalibrationTarget };

/** Tokens per KV block of the calibration backend (the CUDA one's kernels are compiled for it). */
export const CALIBRATION_KV_BLOCK = 16;
const KV_BLOCK = CALIBRATION_KV_BLOCK;
/** Longest calibration window (AutoAWQ's block length); shorter when the model's context is. */
const MAX_WINDOW = 512;

/** The calibration tokens of a calibrated build (int4-awq, fp8-static): its text, read again and
 * checked against the hash the cache key was made from, tokenized by the checkpoint's tokenizer, cut
 * to calibrationTokens. */
export function calibrationIds(build: BuildConfig, modelDir: string): Int32Array {
  const { calibrationFile: file, calibrationSha256: sha256, calibrationTokens: tokens } = build;
  if (!file || !sha256 || !tokens) throw new Error("internal: calibrated build config not resolved");
  const text = readCalibrationText(file);
  if (createHash("sha256").update(text).digest("hex") !== sha256) {
    throw new CalibrationFileError(`--calibration ${file} changed while the build ran; run the build again`);
  }
  if (!existsSync(join(modelDir, "tokenizer.json")))
    throw new CalibrationFileError(
      `--quantize ${build.quantize} runs calibration text through the model, which needs the checkpoint's tokenizer.json; ${modelDir} has none: add it, or quantize without calibration (--quantize ${storedFormat(build.quantize as QuantizeMethod)})`,
    );
  const ids = Tokenizer.fromDir(modelDir).encode(text).ids;
  return Int32Array.from(ids.slice(0, tokens));
}

/** Tokens per calibration window: MAX_WINDOW, or less when the model's or the engine's context is. */
export function calibrationWindow(model: ModelConfig, maxSeqLen: number): number {
  return Math.min(MAX_WINDOW, contextWindow(model), maxSeqLen || Infinity);
}

/** Runs `ids` window by window on `target`'s backend (the CPU by default), yielding after each;
 * `observe(op, x, rows, start)` gets the absolute index of the window's first token. `weights` (fp32)
 * are only read. */
export function* runCalibration(
  model: ModelConfig,
  net: Network,
  weights: ReadonlyMap<string, Float32Array>,
  ids: Int32Array,
  window: number,
  observe: (...args: [...Parameters<LinearInputObserver>, start: number]) => void,
  target: CalibrationTarget = { backend: "cpu" },
): Generator<void, void> {
  let start = 0;
  const backend = openCalibrationBackend(
    model,
    { ops: net.ops, output: net.output },
    new Map(weights), // the backend's dispose() clears its map, not the caller's
    KV_BLOCK,
    (op, x, rows) => observe(op, x, rows, start),
    target,
  );
  try {
    for (; start < ids.length; start += window) {
      const chunk = ids.subarray(start, Math.min(ids.length, start + window));
      backend.allocateKvCache(Math.ceil(chunk.length / KV_BLOCK));
      backend.forward(prefillStep(chunk));
      yield;
    }
  } finally {
    backend.dispose();
  }
}

/** One sequence's whole prefill from position 0, its KV cache in blocks 0, 1, …; logits of the last
 * token only (the LM head's output is not needed). */
function prefillStep(ids: Int32Array): StepInput {
  const T = ids.length;
  const iota = Int32Array.from({ length: T }, (_, i) => i);
  const blocks = Int32Array.from({ length: Math.ceil(T / KV_BLOCK) }, (_, i) => i);
  return {
    tokenIds: ids,
    positions: iota,
    slotMapping: iota,
    seqs: [{ queryStart: 0, queryLen: T, contextLen: T, blockTable: blocks }],
    logitRows: Int32Array.of(T - 1),
  };
}
