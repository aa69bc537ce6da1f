// Parsers for command-line values; each failure names the flag, the value and what is accepted.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Option } from "commander";
import { BUNDLED_MODEL_DIR } from "../bundled_model.ts";
import { InvalidArgumentError } from "../errors.ts";

export function intArg(flag: string, min = 0) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`${flag} expects an integer ≥ ${min}, got "${v}"`);
    }
    return n;
  };
}

export function floatArg(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n))
      throw new InvalidArgumentError(`${flag} expects a number, got "${v}"`);
    return n;
  };
}

/** A share in (0, 1]. */
export function fractionArg(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !(n > 0 && n <= 1))
      throw new InvalidArgumentError(`${flag} expects a number in (0, 1] such as 0.9, got "${v}"`);
    return n;
  };
}

export function idsArg(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  const ids = parts.map(Number);
  const bad = parts.findIndex((p, i) => !/^\d+$/.test(p) || !Number.isSafeInteger(ids[i]));
  if (bad >= 0 || parts.length === 0) {
    throw new InvalidArgumentError(
      `--input-ids expects comma-separated non-negative integers like 1,2,3, got "${v}" (bad entry: "${parts[bad]}")`,
    );
  }
  return ids;
}

export function choiceArg<T extends string>(flag: string, choices: readonly T[]) {
  return (v: string): T => {
    if (!choices.includes(v as T))
      throw new InvalidArgumentError(`${flag} must be one of ${choices.join(", ")}, got "${v}"`);
    return v as T;
  };
}

/** The model shipped in the repository (models/default), used when --model is not given. */
export function defaultModelDir(): string {
  const dir = BUNDLED_MODEL_DIR;
  if (!existsSync(join(dir, "config.json"))) {
    throw new InvalidArgumentError(`the bundled default model is missing at ${dir}; pass --model DIR`);
  }
  return dir;
}

export function modelDirArg(v: string): string {
  if (!existsSync(v))
    throw new InvalidArgumentError(
      `--model ${v}: no such directory; pass a Hugging Face checkpoint or kiln engine directory`,
    );
  return v;
}

export function idListArg(flag: string) {
  return (v: string): number[] => {
    const parts = v.split(",").map((s) => s.trim());
    if (parts.some((p) => !/^\d+$/.test(p))) {
      throw new InvalidArgumentError(`${flag} expects comma-separated token ids like 1,2,3, got "${v}"`);
    }
    return parts.map(Number);
  };
}

/** Repeatable word flags (--stop-words, --bad-words): text, or token ids written as "ids:1,2,3". */
export function wordArg(flag: string) {
  return (v: string, previous: (string | number[])[] = []): (string | number[])[] => {
    if (v.startsWith("ids:")) return [...previous, idListArg(flag)(v.slice(4))];
    if (v.length === 0) throw new InvalidArgumentError(`${flag} expects a non-empty word`);
    return [...previous, v];
  };
}

/** --embedding-bias ID:VALUE,ID:VALUE (like OpenAI's logit_bias). */
export function biasArg(v: string): Record<number, number> {
  const out: Record<number, number> = {};
  for (const part of v.split(",")) {
    const m = /^\s*(\d+)\s*:\s*(-?[\d.]+(?:e-?\d+)?)\s*$/i.exec(part);
    if (!m || !Number.isFinite(Number(m[2]))) {
      throw new InvalidArgumentError(
        `--embedding-bias expects ID:VALUE pairs separated by commas (e.g. 13:-100,42:2.5), got "${part}"`,
      );
    }
    out[Number(m[1])] = Number(m[2]);
  }
  return out;
}

/**
 * An option that takes a value although its name starts with "no-" (--no-repeat-ngram-size N).
 * commander reads every --no-X as the negation of --X and stores the value under "x", where nothing
 * reads it; this one is a plain option stored under its full name (noRepeatNgramSize).
 */
export function noPrefixedValueOption<T>(
  flags: string,
  description: string,
  parse: (v: string) => T,
): Option {
  if (!/^--no-[a-z-]+ <[^>]+>$/.test(flags))
    throw new Error(`internal: noPrefixedValueOption takes "--no-name <value>", got "${flags}"`);
  const option = new Option(flags, description).argParser(parse);
  option.negate = false;
  return option;
}

/** --early-stopping alone means true, as a boolean flag does; a value may follow. */
export function earlyStoppingArg(v: string): boolean | "never" {
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  if (v === "never") return "never";
  throw new InvalidArgumentError(`--early-stopping must be true, false or never, got "${v}"`);
}
