// The calibration text of a calibrated build (--quantize int4-awq | fp8-static): which file, how many of its
// tokens, and its content hash. The hash, not the path, is what the engine depends on, so it is the
// part of the build config the engine cache keys on (cache_dirs.ts leaves the path out of the key).
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { DEFAULT_CALIBRATION_FILE } from "../bundled_model.ts";
import { KilnError } from "../errors.ts";

/** Calibration tokens used when --calibration-tokens is not given. */
export const DEFAULT_CALIBRATION_TOKENS = 2048;

/** --calibration names a file that is missing, unreadable, a directory or without text. */
export class CalibrationFileError extends KilnError {}

/** --calibration or --calibration-tokens given to a build that does not calibrate. */
export class CalibrationNotUsedError extends KilnError {}

/** A calibrated build on --backend cuda whose fp32 calibration weights do not fit in the GPU's free
 * memory. */
export class CalibrationMemoryError extends KilnError {}

/** The calibration settings of a calibrated build: `file` absolute ("" given = the bundled model's
 * calibration.txt), `tokens` ≥ 2, `sha256` of the file's bytes. */
export function resolveCalibration(
  file: string,
  tokens: number,
): { calibrationFile: string; calibrationTokens: number; calibrationSha256: string } {
  const path = resolve(file || DEFAULT_CALIBRATION_FILE);
  if (!Number.isInteger(tokens) || tokens < 2) {
    throw new CalibrationFileError(
      `--calibration-tokens must be an integer ≥ 2, got ${tokens}; leave it out for ${DEFAULT_CALIBRATION_TOKENS}`,
    );
  }
  const text = readCalibrationText(path);
  return {
    calibrationFile: path,
    calibrationTokens: tokens,
    calibrationSha256: createHash("sha256").update(text).digest("hex"),
  };
}

/** The calibration file's text; a missing, unreadable, directory or blank file is a CalibrationFileError. */
export function readCalibrationText(path: string): string {
  let text: string;
  try {
    if (statSync(path).isDirectory())
      throw new CalibrationFileError(`--calibration ${path} is a directory; pass a text file`);
    text = readFileSync(path, "utf8");
  } catch (e) {
    if (e instanceof CalibrationFileError) throw e;
    const code = (e as { code?: string }).code;
    const why =
      code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(code ?? e);
    throw new CalibrationFileError(
      `--calibration ${path}: ${why}; pass a readable text file (or leave --calibration out for the bundled text)`,
      { cause: e },
    );
  }
  if (text.trim() === "")
    throw new CalibrationFileError(
      `--calibration ${path} is empty; pass a file with text like what the model will serve`,
    );
  return text;
}
