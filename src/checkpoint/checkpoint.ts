// A Hugging Face checkpoint directory: config.json + safetensors weights (one file, index + shards, or
// loose files; see checkpoint_layout.ts). Opening parses config.json and reads only the safetensors
// headers; tensor bytes are read when asked for.
import { readFileSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { checkIndexAgreement, findWeightFiles, INDEX_FILE, type ShardIndex } from "./checkpoint_layout.ts";
import { closestNames } from "./closest_names.ts";
import { combineHashes, sha256Bytes, sha256File } from "./content_hash.ts";
import {
  CheckpointNotFoundError,
  ConfigError,
  MissingTensorError,
  SafetensorsError,
  showValue,
} from "./errors.ts";
import { parseHfConfigJson } from "./hf_config.ts";
import type { ModelConfig } from "./model_config.ts";
import {
  MODELOPT_CONFIG_FILE,
  type QuantizationScheme,
  readQuantizationScheme,
} from "./quantization_scheme.ts";
import { SafetensorsFile } from "./safetensors.ts";
import type { TensorDType } from "./tensor_dtype.ts";

export interface CheckpointTensorInfo {
  /** A float type for plain weights; packed types only in quantized linears (tensor_dtype.ts). */
  dtype: TensorDType;
  /** Row-major dims; [] for a scalar. */
  shape: number[];
  /** Path of the safetensors file holding the tensor. */
  file: string;
}

export class Checkpoint implements Disposable {
  /** file path → sha256 of its contents, filled by contentHash(). */
  private readonly fileHashes = new Map<string, string>();

  private constructor(
    /** Absolute path of the checkpoint directory. */
    readonly dir: string,
    readonly config: ModelConfig,
    /** config.json exactly as read at open. */
    private readonly configBytes: Uint8Array,
    /** Open weight files, sorted by path. */
    private readonly files: SafetensorsFile[],
    /** tensor name → the file that holds it. */
    private readonly byName: Map<string, SafetensorsFile>,
    private readonly index: ShardIndex | null,
    /** The pre-quantized scheme config.json (or hf_quant_config.json) declares; method "none" if any. */
    readonly quantization: QuantizationScheme,
    /** hf_quant_config.json exactly as read at open, when there is one. */
    private readonly modeloptBytes: Uint8Array | null,
  ) {}

  /** Opens `dir`; CheckpointNotFoundError / ConfigError / SafetensorsError if it is not a usable checkpoint. */
  static open(dir: string): Checkpoint {
    const abs = resolve(dir);
    const st = statSync(abs, { throwIfNoEntry: false });
    if (st === undefined) throw new CheckpointNotFoundError(abs, "the directory does not exist");
    if (!st.isDirectory()) throw new CheckpointNotFoundError(abs, "it is a file, not a directory");
    const configPath = join(abs, "config.json");
    if (!statSync(configPath, { throwIfNoEntry: false })?.isFile()) {
      throw new CheckpointNotFoundError(abs, "there is no config.json");
    }
    const configBytes = readFileSync(configPath);
    const config = parseHfConfigJson(configBytes.toString("utf8"), configPath);
    const modeloptPath = join(abs, MODELOPT_CONFIG_FILE);
    const modeloptBytes = statSync(modeloptPath, { throwIfNoEntry: false })?.isFile()
      ? readFileSync(modeloptPath)
      : null;
    const quantization = readQuantizationScheme(
      config.raw,
      configPath,
      modeloptBytes === null ? undefined : parseJson(modeloptBytes, modeloptPath),
      modeloptPath,
    );

    const layout = findWeightFiles(abs);
    const files: SafetensorsFile[] = [];
    try {
      for (const path of layout.files) files.push(SafetensorsFile.open(path));
      const byName = mapTensorsToFiles(files, layout.index);
      return new Checkpoint(
        abs,
        config,
        configBytes,
        files,
        byName,
        layout.index,
        quantization,
        modeloptBytes,
      );
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
  }

  /** config.json as parsed JSON, for architecture-specific fields. */
  get rawConfig(): Record<string, unknown> {
    return this.config.raw;
  }

  /** Paths of the safetensors files, sorted. */
  get filePaths(): string[] {
    return this.files.map((f) => f.path);
  }

  /** All tensor names, sorted. */
  tensorNames(): string[] {
    return [...this.byName.keys()].sort();
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): CheckpointTensorInfo {
    const file = this.fileOf(name);
    const { dtype, shape } = file.info(name);
    return { dtype, shape: [...shape], file: file.path };
  }

  /** Raw little-endian bytes of one tensor (only those bytes are read). */
  read(name: string): Uint8Array {
    return this.fileOf(name).read(name);
  }

  /** One tensor as fp32, [product(shape)]; with `expectShape`, a different shape is a SafetensorsError. */
  readF32(name: string, expectShape?: number[]): Float32Array {
    const file = this.fileOf(name);
    const { shape } = file.info(name);
    if (expectShape !== undefined && !sameShape(shape, expectShape)) {
      throw new SafetensorsError(
        file.path,
        `tensor "${name}" has shape ${showValue(shape)}, expected ${showValue(expectShape)}`,
        "config.json does not describe these weights; use the config.json that came with the checkpoint",
      );
    }
    return file.readF32(name);
  }

  /**
   * sha256 (hex) of the checkpoint's content: config.json, the shard index if any, and the full bytes
   * of every safetensors file. Reads every weight byte the first time (cached per file afterwards).
   */
  contentHash(hashFile: (path: string) => string = sha256File): string {
    const parts = [{ name: "config.json", sha256: sha256Bytes(this.configBytes) }];
    if (this.index !== null) parts.push({ name: INDEX_FILE, sha256: sha256Bytes(this.index.bytes) });
    if (this.modeloptBytes !== null) {
      parts.push({ name: MODELOPT_CONFIG_FILE, sha256: sha256Bytes(this.modeloptBytes) });
    }
    for (const file of this.files) {
      let h = this.fileHashes.get(file.path);
      if (h === undefined) {
        h = hashFile(file.path);
        this.fileHashes.set(file.path, h);
      }
      parts.push({ name: basename(file.path), sha256: h });
    }
    return combineHashes(parts);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private fileOf(name: string): SafetensorsFile {
    const file = this.byName.get(name);
    if (file === undefined) {
      throw new MissingTensorError(name, this.filePaths, closestNames(name, this.byName.keys()));
    }
    return file;
  }
}

/** tensor name → file; with an index, the index and the headers must agree; without, names must be unique. */
function mapTensorsToFiles(files: SafetensorsFile[], index: ShardIndex | null): Map<string, SafetensorsFile> {
  if (index !== null) checkIndexAgreement(index, new Map(files.map((f) => [basename(f.path), f])));
  const byName = new Map<string, SafetensorsFile>();
  for (const file of files) {
    for (const name of file.tensors.keys()) {
      const other = byName.get(name);
      if (other !== undefined) {
        throw new SafetensorsError(
          file.path,
          `tensor "${name}" is also in ${other.path}`,
          "remove the stray .safetensors file (only one copy of each weight may be in the directory)",
        );
      }
      byName.set(name, file);
    }
  }
  return byName;
}

function parseJson(bytes: Uint8Array, path: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ConfigError(path, null, `not valid JSON (${(e as Error).message})`, "fix or re-download it", {
      cause: e,
    });
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
