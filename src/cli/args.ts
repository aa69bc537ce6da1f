// Parsers for command-line values; each failure names the flag, the value and what is accepted.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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
  const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "models", "default");
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
