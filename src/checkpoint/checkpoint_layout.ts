// Which files hold a Hugging Face checkpoint's weights, in the order transformers looks for them:
//   1. model.safetensors                     one file
//   2. model.safetensors.index.json          {"weight_map": {tensor name: shard file name}} + the shards
//   3. every *.safetensors in the directory  (checkpoints saved by other tools)
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { CheckpointNotFoundError, SafetensorsError, showValue } from "./errors.ts";
import type { SafetensorsFile } from "./safetensors.ts";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

export interface ShardIndex {
  path: string;
  /** The index file as read, for content hashing. */
  bytes: Uint8Array;
  /** tensor name → shard file name (relative to the checkpoint directory). */
  weightMap: Map<string, string>;
}

export interface WeightLayout {
  /** Absolute paths of the files to open, sorted by name. */
  files: string[];
  index: ShardIndex | null;
}

/** Finds the weight files of `dir`; CheckpointNotFoundError if there are none or a shard is missing. */
export function findWeightFiles(dir: string): WeightLayout {
  if (existsSync(join(dir, SINGLE_FILE))) return { files: [join(dir, SINGLE_FILE)], index: null };
  const indexPath = join(dir, INDEX_FILE);
  if (existsSync(indexPath)) {
    const index = readIndex(indexPath);
    const shards = [...new Set(index.weightMap.values())].sort();
    for (const shard of shards) {
      if (!existsSync(join(dir, shard))) {
        throw new CheckpointNotFoundError(
          dir,
          `${INDEX_FILE} names shard "${shard}", which is not in the directory`,
          "the download is incomplete; download every shard listed in the index",
        );
      }
    }
    return { files: shards.map((s) => join(dir, s)), index };
  }
  const all = readdirSync(dir)
    .filter((n) => n.endsWith(".safetensors") && statSync(join(dir, n)).isFile())
    .sort();
  if (all.length === 0) {
    throw new CheckpointNotFoundError(
      dir,
      `no ${SINGLE_FILE}, no ${INDEX_FILE} and no other *.safetensors file`,
      "download the weights in safetensors format (kiln does not read .bin / .pth pickles)",
    );
  }
  return { files: all.map((n) => join(dir, n)), index: null };
}

function readIndex(path: string): ShardIndex {
  const bytes = readFileSync(path);
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw new SafetensorsError(path, `index is not valid JSON (${(e as Error).message})`, "re-download it", {
      cause: e,
    });
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new SafetensorsError(
      path,
      `index has no "weight_map" object, got ${showValue(map)}`,
      "re-download it",
    );
  }
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    // Shards live beside the index: a plain file name, never a path out of the directory.
    if (typeof shard !== "string" || shard === "" || basename(shard) !== shard || shard.startsWith(".")) {
      throw new SafetensorsError(
        path,
        `weight_map["${name}"] must be a shard file name in the same directory, got ${showValue(shard)}`,
        "re-download the index",
      );
    }
    weightMap.set(name, shard);
  }
  return { path, bytes, weightMap };
}

/** The index and the shard headers must list the same tensors in the same files. */
export function checkIndexAgreement(index: ShardIndex, shards: Map<string, SafetensorsFile>): void {
  const fix = "the index and the shards come from different exports; re-download the checkpoint";
  for (const [name, shard] of index.weightMap) {
    const file = shards.get(shard)!;
    if (!file.has(name)) {
      throw new SafetensorsError(
        index.path,
        `weight_map puts tensor "${name}" in ${shard}, but that shard's header has no such tensor`,
        fix,
      );
    }
  }
  for (const [shard, file] of shards) {
    for (const name of file.tensors.keys()) {
      const listed = index.weightMap.get(name);
      if (listed !== shard) {
        const where = listed === undefined ? "does not list it" : `puts it in ${listed}`;
        throw new SafetensorsError(file.path, `shard has tensor "${name}" but ${INDEX_FILE} ${where}`, fix);
      }
    }
  }
}
