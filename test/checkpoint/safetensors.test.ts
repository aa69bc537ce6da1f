import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { MissingTensorError, PackedTensorError, SafetensorsError } from "../../src/checkpoint/errors.ts";
import { SafetensorsFile, writeSafetensors } from "../../src/checkpoint/safetensors.ts";
import type { DType } from "../../src/dtype.ts";
import { iota, rawSafetensors, tempDir, tensor } from "./helpers.ts";

const { dir, cleanup } = tempDir();
after(cleanup);
let counter = 0;
const fresh = (name = "t") => join(dir, `${name}-${counter++}.safetensors`);

/** Opens `path` and asserts it throws SafetensorsError whose message matches `re` and names the file. */
function assertCorrupt(path: string, re: RegExp): void {
  assert.throws(
    () => SafetensorsFile.open(path),
    (e: unknown) => {
      assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${e}`);
      assert.match(e.message, re);
      assert.ok(e.message.includes(path), `message should name the file: ${e.message}`);
      return true;
    },
  );
}

describe("safetensors round trip", () => {
  const values = [0, 1, -2, 0.5, 1.5, -0.25, 3, 100];
  for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
    test(`${dtype}: bytes, fp32 values, shape and metadata survive write + read`, () => {
      const path = fresh(dtype);
      const t = tensor(dtype, [2, 4], values);
      writeSafetensors(path, { "a.weight": t, "b.scalar": tensor(dtype, [], [7]) }, { format: "pt" });
      const f = SafetensorsFile.open(path);
      try {
        assert.deepEqual(f.names(), ["a.weight", "b.scalar"]);
        assert.deepEqual(f.metadata, { format: "pt" });
        const info = f.info("a.weight");
        assert.equal(info.dtype, dtype);
        assert.deepEqual(info.shape, [2, 4]);
        assert.deepEqual(f.read("a.weight"), t.data);
        assert.deepEqual([...f.readF32("a.weight")], values);
        assert.deepEqual([...f.readF32("b.scalar")], [7]);
      } finally {
        f.close();
      }
    });
  }

  test("writer: header padded to 8 bytes, tensors in name order with contiguous offsets", () => {
    const path = fresh();
    writeSafetensors(path, { z: iota([3]), a: iota([1]), m: iota([2, 2]) });
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
    assert.deepEqual(Object.keys(header), ["a", "m", "z"]);
    assert.deepEqual(header.a.data_offsets, [0, 4]);
    assert.deepEqual(header.m.data_offsets, [4, 20]);
    assert.deepEqual(header.z.data_offsets, [20, 32]);
    assert.equal(bytes.byteLength, 8 + n + 32);
    const f = SafetensorsFile.open(path);
    assert.equal(f.info("m").byteOffset, 8 + n + 4); // absolute offset in the file
    f.close();
  });

  test("writer rejects data whose length does not match shape × dtype", () => {
    const bad = { dtype: "F32" as DType, shape: [3], data: new Uint8Array(8) };
    assert.throws(() => writeSafetensors(fresh(), { w: bad }), /tensor "w".*needs 12 bytes, data has 8/);
  });
});

describe("safetensors lazy reads", () => {
  test("read() fetches one tensor's bytes on demand, not at open", () => {
    const path = fresh();
    writeSafetensors(path, { a: iota([4]), b: iota([1024]) });
    const f = SafetensorsFile.open(path);
    try {
      // Change b's bytes on disk after open: a reader that had loaded the data would not see it.
      const fd = openSync(path, "r+");
      writeSync(fd, new Uint8Array([0, 0, 0x80, 0x3f]), 0, 4, f.info("b").byteOffset); // 1.0f
      closeSync(fd);
      const a = f.read("a");
      assert.equal(a.byteLength, 16);
      assert.deepEqual([...f.readF32("a")], [0, 1, 2, 3]);
      assert.equal(f.readF32("b")[0], 1);
    } finally {
      f.close();
    }
  });

  test("close() and [Symbol.dispose] release the file; later reads throw", () => {
    const path = fresh();
    writeSafetensors(path, { a: iota([2]) });
    const f = SafetensorsFile.open(path);
    f[Symbol.dispose]();
    assert.throws(() => f.read("a"), /closed/);
    f.close(); // twice is harmless
  });

  test("unknown tensor name → MissingTensorError naming the file and similar names", () => {
    const path = fresh();
    writeSafetensors(path, { "model.layers.0.mlp.up_proj.weight": iota([2]) });
    const f = SafetensorsFile.open(path);
    assert.throws(
      () => f.read("model.layers.0.mlp.up_prj.weight"),
      (e: unknown) =>
        e instanceof MissingTensorError &&
        /"model.layers.0.mlp.up_prj.weight" not found/.test(e.message) &&
        e.message.includes(path) &&
        /Similar names: "model.layers.0.mlp.up_proj.weight"/.test(e.message),
    );
    f.close();
  });
});

describe("safetensors corruption is a SafetensorsError naming the problem", () => {
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const data8 = new Uint8Array(8);

  test("file shorter than 8 bytes", () => {
    const path = fresh();
    writeFileSync(path, new Uint8Array(5));
    assertCorrupt(path, /file is 5 bytes, shorter than the 8-byte header length prefix/);
  });
  test("header length 0", () => {
    const path = fresh();
    rawSafetensors(path, new Uint8Array(0), data8, 0n);
    assertCorrupt(path, /header length is 0/);
  });
  test("absurd header length", () => {
    const path = fresh();
    rawSafetensors(path, { a: ok }, data8, 1n << 40n);
    assertCorrupt(path, /header length 1099511627776 bytes is absurd/);
  });
  test("header length larger than the file", () => {
    const path = fresh();
    rawSafetensors(path, { a: ok }, new Uint8Array(0), 5000n);
    assertCorrupt(path, /header length 5000 bytes is larger than the file/);
  });
  test("header not UTF-8", () => {
    const path = fresh();
    rawSafetensors(path, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    assertCorrupt(path, /header is not valid UTF-8/);
  });
  test("header not JSON", () => {
    const path = fresh();
    rawSafetensors(path, new TextEncoder().encode('{"a": '));
    assertCorrupt(path, /header is not valid JSON/);
  });
  test("header not an object", () => {
    const path = fresh();
    rawSafetensors(path, [1, 2]);
    assertCorrupt(path, /header must be a JSON object, got \[1,2\]/);
  });
  for (const key of ["dtype", "shape", "data_offsets"]) {
    test(`entry missing ${key}`, () => {
      const path = fresh();
      const entry: Record<string, unknown> = { ...ok };
      delete entry[key];
      rawSafetensors(path, { "w.x": entry }, data8);
      assertCorrupt(path, new RegExp(`tensor "w.x": entry has no ${key}`));
    });
  }
  test("entry fields of the wrong type", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...ok, dtype: 4 }, /dtype must be a string, got 4/],
      [{ ...ok, shape: "2" }, /shape must be an array of non-negative integers, got "2"/],
      [{ ...ok, shape: [2.5] }, /shape must be an array of non-negative integers/],
      [
        { ...ok, data_offsets: [0] },
        /data_offsets must be \[begin, end\] of non-negative integers, got \[0\]/,
      ],
      [{ ...ok, data_offsets: [-8, 0] }, /data_offsets must be \[begin, end\]/],
    ];
    for (const [entry, re] of cases) {
      const path = fresh();
      rawSafetensors(path, { w: entry }, data8);
      assertCorrupt(path, re);
    }
    const path = fresh();
    rawSafetensors(path, { w: "nope" }, data8);
    assertCorrupt(path, /tensor "w": entry must be an object/);
  });
  test("unsupported dtype names the dtype, the tensor and what is supported", () => {
    const path = fresh();
    rawSafetensors(path, { "ids.table": { dtype: "F64", shape: [1], data_offsets: [0, 8] } }, data8);
    assertCorrupt(
      path,
      /tensor "ids.table": unsupported dtype "F64"; kiln reads F32, F16, BF16, F8_E4M3, I32/,
    );
  });
  test("packed dtypes (F8_E4M3, I32, I64, U8, I8) open, keep their raw bytes, and refuse readF32 by name", () => {
    const path = fresh();
    const raw = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    writeSafetensors(path, {
      "a.qweight": { dtype: "I32", shape: [2], data: raw },
      "a.weight": { dtype: "F8_E4M3", shape: [2, 4], data: raw },
      "a.g_idx": { dtype: "I64", shape: [1], data: raw },
    });
    using f = SafetensorsFile.open(path);
    assert.deepEqual(f.info("a.qweight").dtype, "I32");
    assert.deepEqual([...f.read("a.weight")], [...raw]);
    assert.throws(
      () => f.readF32("a.weight"),
      (e: unknown) =>
        e instanceof PackedTensorError &&
        /tensor "a.weight" is F8_E4M3, but kiln reads plain weights only as F32, F16 or BF16/.test(e.message),
    );
  });
  test("shape × dtype size differs from the offsets span (wrong dtype size)", () => {
    const path = fresh();
    rawSafetensors(path, { w: { dtype: "BF16", shape: [2], data_offsets: [0, 8] } }, data8);
    assertCorrupt(
      path,
      /tensor "w": wrong dtype size: shape \[2\] of BF16 needs 4 bytes but data_offsets \[0, 8\] span 8/,
    );
  });
  test("begin > end", () => {
    const path = fresh();
    rawSafetensors(path, { w: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, data8);
    assertCorrupt(path, /tensor "w": data_offsets \[8, 0\] have begin > end/);
  });
  test("offsets beyond the data section (truncated file)", () => {
    const path = fresh();
    rawSafetensors(path, { w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data8);
    assertCorrupt(path, /tensor "w": data_offsets \[0, 16\] reach beyond the data section, which is 8 bytes/);
  });
  test("overlapping tensors", () => {
    const path = fresh();
    const header = {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    };
    rawSafetensors(path, header, new Uint8Array(12));
    assertCorrupt(path, /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/);
  });
  test("bad __metadata__", () => {
    const path = fresh();
    rawSafetensors(path, { __metadata__: { n: 3 }, w: ok }, data8);
    assertCorrupt(path, /"__metadata__" must be an object of string values/);
  });
  test("gaps and unused bytes in the data section are accepted", () => {
    const path = fresh();
    const header = {
      a: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
      empty: { dtype: "F16", shape: [0], data_offsets: [6, 6] },
    };
    rawSafetensors(path, header, new Uint8Array(16));
    const f = SafetensorsFile.open(path);
    assert.deepEqual(f.names(), ["a", "empty"]);
    assert.equal(f.read("empty").byteLength, 0);
    f.close();
  });
  test("missing file", () => {
    assertCorrupt(join(dir, "nope.safetensors"), /cannot open the file \(ENOENT\)/);
  });
});
