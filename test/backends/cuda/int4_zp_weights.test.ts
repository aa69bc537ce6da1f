// The device layout of int4-zp weights (src/backends/cuda/int4_zp_weights.ts): the region as stored,
// q's end padded to 16 bytes so that scales, zeros and g_idx lie aligned; the upload's two copies
// cover the whole region once, in order, and land every part where the layout says.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { int4ZpDeviceLayout } from "../../../src/backends/cuda/int4_zp_weights.ts";
import { encodeInt4Zp, int4ZpLayout } from "../../../src/engine/int4_zp_format.ts";

describe("int4ZpDeviceLayout", () => {
  test("q padded to 16 bytes, the rest shifted by the padding, whatever the shape", () => {
    for (const [rows, cols, groupSize, actOrder] of [
      [7, 6, 2, false], // q 21 bytes
      [3, 7, 3, true], // odd cols: rows of 4 bytes, q 12 bytes
      [8, 4096, 128, false], // q 16384 bytes: no padding
      [5, 101, 16, true],
    ] as const) {
      const params = { groupSize, ...(actOrder ? { actOrder: true } : {}) };
      const stored = int4ZpLayout([rows, cols], params);
      const l = int4ZpDeviceLayout([rows, cols], params);
      const pad = l.scales - stored.scales;
      assert.equal(l.scales % 16, 0, `${rows}×${cols}: scales aligned`);
      assert.ok(pad >= 0 && pad < 16);
      assert.equal(l.zeros - l.scales, stored.zeros - stored.scales);
      assert.equal(l.gIdx - l.zeros, stored.gIdx - stored.zeros);
      assert.equal(l.deviceBytes, stored.end + pad);
      assert.equal(l.actOrder, actOrder);
      assert.equal(l.groupSize, groupSize);
      assert.deepEqual([l.rows, l.cols], [rows, cols]);
    }
  });

  test("the upload's copies put every stored byte where the kernels read it", () => {
    const rows = 3;
    const cols = 5;
    const q = new Uint8Array(rows * cols).map((_, i) => (i * 7) % 16);
    const scales = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const zeros = new Float32Array([8, 7, 6, 5, 4, 3, 2, 1, 16]);
    const gIdx = new Int32Array([2, 0, 1, 0, 2]);
    const { bytes, params } = encodeInt4Zp({ rows, cols, groupSize: 2, q, scales, zeros, gIdx });
    const l = int4ZpDeviceLayout([rows, cols], params);
    const dev = new Uint8Array(l.deviceBytes);
    let covered = 0;
    for (const s of l.segments) {
      dev.set(bytes.subarray(s.src, s.src + s.bytes), s.dst);
      covered += s.bytes;
    }
    assert.equal(covered, bytes.length);
    assert.deepEqual(dev.subarray(0, rows * 3), bytes.subarray(0, rows * 3), "q");
    assert.deepEqual(new Float32Array(dev.buffer.slice(l.scales, l.scales + 36)), scales);
    assert.deepEqual(new Float32Array(dev.buffer.slice(l.zeros, l.zeros + 36)), zeros);
    assert.deepEqual(new Int32Array(dev.buffer.slice(l.gIdx, l.gIdx + 20)), gIdx);
  });
});
