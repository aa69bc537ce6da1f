// The int4-zp weight format's definition (src/engine/int4_zp_format.ts): region layout (q nibbles,
// scales, zeros, optional g_idx), dequantization with zero points and any group size, act-order.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { UnknownWeightFormatError } from "../../src/engine/errors.ts";
import { decodeInt4Zp, encodeInt4Zp, type Int4ZpParts } from "../../src/engine/int4_zp_format.ts";
import { assertKnownFormat, dequantize, quantizedByteLength } from "../../src/engine/weight_format.ts";

/** 2 rows × 5 features, group size 2 (groups {0,1}, {2,3}, {4}). */
const PARTS: Int4ZpParts = {
  rows: 2,
  cols: 5,
  groupSize: 2,
  q: new Uint8Array([0, 15, 8, 7, 3, 1, 2, 3, 4, 5]),
  scales: new Float32Array([0.5, 1, 2, 0.25, 4, 1]),
  zeros: new Float32Array([8, 7, 16, 0, 3, 5]),
  gIdx: null,
};

describe("int4-zp weight format", () => {
  test("byte length: ceil(in/2) bytes a row, fp32 scales and zeros a (row, group), g_idx when act-order", () => {
    assert.equal(quantizedByteLength([2, 5], "int4-zp", { groupSize: 2 }), 2 * 3 + 2 * 3 * 4 * 2);
    assert.equal(quantizedByteLength([2, 5], "int4-zp", { groupSize: 2, actOrder: true }), 54 + 5 * 4);
    assert.equal(quantizedByteLength([4, 256], "int4-zp", { groupSize: 128 }), 4 * 128 + 4 * 2 * 8);
  });

  test("layout: feature 2j in the low nibble, the odd row's last high nibble 0, then scales, zeros", () => {
    const { bytes, params } = encodeInt4Zp(PARTS);
    assert.deepEqual(params, { groupSize: 2 });
    assert.deepEqual([...bytes.subarray(0, 6)], [0xf0, 0x78, 0x03, 0x21, 0x43, 0x05]);
    assert.deepEqual([...new Float32Array(bytes.slice(6, 30).buffer)], [...PARTS.scales]);
    assert.deepEqual([...new Float32Array(bytes.slice(30, 54).buffer)], [...PARTS.zeros]);
    assert.deepEqual(decodeInt4Zp(bytes, [2, 5], params), PARTS);
  });

  test("w = (q − zero) × scale of the feature's group", () => {
    const { bytes, params } = encodeInt4Zp(PARTS);
    const w = dequantize(bytes, [2, 5], "int4-zp", params);
    // row 0: groups (s 0.5, z 8), (1, 7), (2, 16); row 1: (0.25, 0), (4, 3), (1, 5)
    assert.deepEqual([...w], [-4, 3.5, 1, 0, -26, 0.25, 0.5, 0, 4, 0]);
  });

  test("act-order: g_idx picks each feature's group and is stored after the zeros", () => {
    const gIdx = new Int32Array([2, 0, 1, 0, 1]);
    const { bytes, params } = encodeInt4Zp({ ...PARTS, gIdx });
    assert.deepEqual(params, { groupSize: 2, actOrder: true });
    assert.deepEqual([...new Int32Array(bytes.slice(54).buffer)], [...gIdx]);
    const w = dequantize(bytes, [2, 5], "int4-zp", params);
    // row 0 features → groups 2, 0, 1, 0, 1
    assert.deepEqual(
      [...w.subarray(0, 5)],
      [(0 - 16) * 2, (15 - 8) * 0.5, (8 - 7) * 1, (7 - 8) * 0.5, (3 - 7) * 1],
    );
  });

  test("an int4-zp weight must carry a positive integer group size", () => {
    for (const params of [{}, { groupSize: 0 }, { groupSize: 1.5 }, { groupSize: 32, actOrder: "yes" }]) {
      assert.throws(
        () => assertKnownFormat("w", "int4-zp", params as never),
        (e: unknown) => e instanceof UnknownWeightFormatError && /int4-zp with/.test(e.message),
      );
    }
    assertKnownFormat("w", "int4-zp", { groupSize: 7 });
  });
});
