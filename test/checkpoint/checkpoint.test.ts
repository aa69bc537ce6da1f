import assert from "node:assert/strict";
import { closeSync, cpSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Checkpoint } from "../../src/checkpoint/checkpoint.ts";
import {
  CheckpointNotFoundError,
  ConfigError,
  MissingTensorError,
  SafetensorsError,
} from "../../src/checkpoint/errors.ts";
import { SafetensorsFile, writeSafetensors } from "../../src/checkpoint/safetensors.ts";
import { iota, llamaConfig, tempDir, tensor, writeConfig } from "./helpers.ts";

const { dir: root, cleanup } = tempDir();
after(cleanup);
let counter = 0;
/** A new empty directory under the test's temp dir. */
function newDir(): string {
  const d = join(root, `ckpt-${counter++}`);
  mkdirSync(d);
  return d;
}

/** Two shards + index: embed and layer 0 in shard 1, norm and lm_head in shard 2. */
function shardedCheckpoint(weightMapEdit?: (m: Record<string, string>) => void): string {
  const d = newDir();
  writeConfig(d, llamaConfig());
  const s1 = "model-00001-of-00002.safetensors";
  const s2 = "model-00002-of-00002.safetensors";
  writeSafetensors(join(d, s1), { "model.embed_tokens.weight": iota([4, 2]), "model.layers.0.w": iota([3]) });
  writeSafetensors(join(d, s2), { "model.norm.weight": iota([2]), "lm_head.weight": iota([4, 2]) });
  const weightMap: Record<string, string> = {
    "model.embed_tokens.weight": s1,
    "model.layers.0.w": s1,
    "model.norm.weight": s2,
    "lm_head.weight": s2,
  };
  weightMapEdit?.(weightMap);
  writeFileSync(
    join(d, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: 88 }, weight_map: weightMap }),
  );
  return d;
}

function singleCheckpoint(): string {
  const d = newDir();
  writeConfig(d, llamaConfig());
  writeSafetensors(join(d, "model.safetensors"), {
    "model.embed_tokens.weight": tensor("BF16", [2, 3], [1, 2, 3, 4, 5, 6]),
    "model.norm.weight": iota([3]),
  });
  return d;
}

describe("Checkpoint layouts", () => {
  test("single model.safetensors: config, names, info, reads", () => {
    const d = singleCheckpoint();
    const ckpt = Checkpoint.open(d);
    try {
      assert.equal(ckpt.dir, d);
      assert.equal(ckpt.config.architecture, "LlamaForCausalLM");
      assert.equal(ckpt.rawConfig.vocab_size, 32);
      assert.deepEqual(ckpt.tensorNames(), ["model.embed_tokens.weight", "model.norm.weight"]);
      assert.ok(ckpt.has("model.norm.weight"));
      assert.ok(!ckpt.has("lm_head.weight"));
      assert.deepEqual(ckpt.info("model.embed_tokens.weight"), {
        dtype: "BF16",
        shape: [2, 3],
        file: join(d, "model.safetensors"),
      });
      assert.equal(ckpt.read("model.embed_tokens.weight").byteLength, 12);
      assert.deepEqual([...ckpt.readF32("model.embed_tokens.weight", [2, 3])], [1, 2, 3, 4, 5, 6]);
    } finally {
      ckpt.close();
    }
  });

  test("readF32 with the wrong expected shape names expected and actual shapes", () => {
    const ckpt = Checkpoint.open(singleCheckpoint());
    assert.throws(
      () => ckpt.readF32("model.embed_tokens.weight", [3, 2]),
      (e: unknown) =>
        e instanceof SafetensorsError &&
        /tensor "model.embed_tokens.weight" has shape \[2,3\], expected \[3,2\]/.test(e.message),
    );
    ckpt[Symbol.dispose]();
  });

  test("sharded via model.safetensors.index.json", () => {
    const d = shardedCheckpoint();
    const ckpt = Checkpoint.open(d);
    try {
      assert.deepEqual(ckpt.tensorNames(), [
        "lm_head.weight",
        "model.embed_tokens.weight",
        "model.layers.0.w",
        "model.norm.weight",
      ]);
      assert.equal(ckpt.info("model.layers.0.w").file, join(d, "model-00001-of-00002.safetensors"));
      assert.equal(ckpt.info("lm_head.weight").file, join(d, "model-00002-of-00002.safetensors"));
      assert.deepEqual([...ckpt.readF32("model.layers.0.w")], [0, 1, 2]);
      assert.deepEqual([...ckpt.readF32("lm_head.weight", [4, 2])], [0, 1, 2, 3, 4, 5, 6, 7]);
    } finally {
      ckpt.close();
    }
  });

  test("index naming a shard that is not there → CheckpointNotFoundError", () => {
    const d = shardedCheckpoint((m) => {
      m["lm_head.weight"] = "model-00003-of-00003.safetensors";
    });
    assert.throws(
      () => Checkpoint.open(d),
      (e: unknown) =>
        e instanceof CheckpointNotFoundError &&
        /names shard "model-00003-of-00003.safetensors"/.test(e.message),
    );
  });

  test("index and shard headers must agree", () => {
    const moved = shardedCheckpoint((m) => {
      m["model.norm.weight"] = "model-00001-of-00002.safetensors";
    });
    assert.throws(
      () => Checkpoint.open(moved),
      (e: unknown) =>
        e instanceof SafetensorsError &&
        /puts tensor "model.norm.weight" in model-00001-of-00002.safetensors, but that shard's header has no such tensor/.test(
          e.message,
        ),
    );
    const unlisted = shardedCheckpoint((m) => {
      delete m["model.layers.0.w"];
    });
    assert.throws(
      () => Checkpoint.open(unlisted),
      (e: unknown) =>
        e instanceof SafetensorsError &&
        /shard has tensor "model.layers.0.w" but model.safetensors.index.json does not list it/.test(
          e.message,
        ),
    );
    const escaping = shardedCheckpoint((m) => {
      m["lm_head.weight"] = "../elsewhere.safetensors";
    });
    assert.throws(() => Checkpoint.open(escaping), /must be a shard file name in the same directory/);
  });

  test("fallback: every *.safetensors in the directory; duplicates are an error", () => {
    const d = newDir();
    writeConfig(d, llamaConfig());
    writeSafetensors(join(d, "a.safetensors"), { x: iota([2]) });
    writeSafetensors(join(d, "b.safetensors"), { y: iota([3]) });
    const ckpt = Checkpoint.open(d);
    assert.deepEqual(ckpt.tensorNames(), ["x", "y"]);
    ckpt.close();
    writeSafetensors(join(d, "c.safetensors"), { x: iota([2]) });
    assert.throws(() => Checkpoint.open(d), /tensor "x" is also in .*a\.safetensors/);
  });

  test("missing tensor → MissingTensorError listing the files searched and similar names", () => {
    const ckpt = Checkpoint.open(shardedCheckpoint());
    assert.throws(
      () => ckpt.read("model.layers.0.x"),
      (e: unknown) =>
        e instanceof MissingTensorError &&
        /tensor "model.layers.0.x" not found in 2 files/.test(e.message) &&
        e.message.includes("model-00001-of-00002.safetensors, ") &&
        /Similar names: "model.layers.0.w"/.test(e.message),
    );
    ckpt.close();
  });
});

describe("Checkpoint.open errors", () => {
  test("directory missing", () => {
    assert.throws(
      () => Checkpoint.open(join(root, "does-not-exist")),
      (e: unknown) =>
        e instanceof CheckpointNotFoundError && /does-not-exist.*directory does not exist/.test(e.message),
    );
  });
  test("no config.json", () => {
    const d = newDir();
    writeSafetensors(join(d, "model.safetensors"), { x: iota([1]) });
    assert.throws(
      () => Checkpoint.open(d),
      (e: unknown) => e instanceof CheckpointNotFoundError && /no config\.json/.test(e.message),
    );
  });
  test("no safetensors", () => {
    const d = newDir();
    writeConfig(d, llamaConfig());
    writeFileSync(join(d, "pytorch_model.bin"), "pickle");
    assert.throws(
      () => Checkpoint.open(d),
      (e: unknown) =>
        e instanceof CheckpointNotFoundError && /no model\.safetensors.*\*\.safetensors/.test(e.message),
    );
  });
  test("bad config.json → ConfigError", () => {
    const d = singleCheckpoint();
    writeFileSync(join(d, "config.json"), "{ nope");
    assert.throws(
      () => Checkpoint.open(d),
      (e: unknown) => e instanceof ConfigError && /not valid JSON/.test(e.message),
    );
    writeConfig(d, llamaConfig({ hidden_size: undefined }));
    assert.throws(
      () => Checkpoint.open(d),
      (e: unknown) => e instanceof ConfigError && /"hidden_size"/.test(e.message),
    );
  });
  test("corrupt shard → SafetensorsError naming the shard", () => {
    const d = singleCheckpoint();
    writeFileSync(join(d, "model.safetensors"), new Uint8Array(3));
    assert.throws(
      () => Checkpoint.open(d),
      (e: unknown) => e instanceof SafetensorsError && e.message.includes(d),
    );
  });
});

describe("Checkpoint.contentHash", () => {
  /** Flips one bit of the first data byte of tensor `name` in `file`. */
  function flipOneByte(file: string, name: string): void {
    const f = SafetensorsFile.open(file);
    const offset = f.info(name).byteOffset;
    f.close();
    const fd = openSync(file, "r+");
    try {
      const buf = new Uint8Array(1);
      readSync(fd, buf, 0, 1, offset);
      buf[0] ^= 1;
      writeSync(fd, buf, 0, 1, offset);
    } finally {
      closeSync(fd);
    }
  }

  test("stable across opens, independent of path, sensitive to one weight byte and to config.json", () => {
    const d = shardedCheckpoint();
    const a = Checkpoint.open(d);
    const h1 = a.contentHash();
    assert.match(h1, /^[0-9a-f]{64}$/);
    assert.equal(a.contentHash(), h1); // second call uses the per-file cache
    a.close();

    const b = Checkpoint.open(d);
    assert.equal(b.contentHash(), h1); // same content, new instance
    b.close();

    const copy = newDir();
    cpSync(d, copy, { recursive: true });
    const c = Checkpoint.open(copy);
    assert.equal(c.contentHash(), h1); // content, not location or mtime
    c.close();

    // One byte of one tensor changes the hash; the headers and file sizes stay the same.
    flipOneByte(join(copy, "model-00002-of-00002.safetensors"), "model.norm.weight");
    const e = Checkpoint.open(copy);
    assert.notEqual(e.contentHash(), h1);
    e.close();

    writeConfig(d, llamaConfig({ rms_norm_eps: 1e-6 }));
    const f = Checkpoint.open(d);
    assert.notEqual(f.contentHash(), h1);
    f.close();
  });
});
