// The FP8 KV cache on the CPU (backends/kv_cache_dtype.ts): a written row reads back as e4m3(x/s)·s
// with s = max|x|/448, its scale stored per (slot, kv head); attention over an FP8 pool equals attention
// over the dequantized values in an fp32 pool; copying blocks copies the scales; and an FP8 block holds
// ≥ 3.5× the tokens of an fp32 one in the same bytes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CpuKvPool } from "../../../src/backends/cpu/cpu_kv_cache.ts";
import {
  type AttentionSequence,
  allocFp8KvPool,
  type Fp8KvPool,
  kvCacheWrite,
  pagedAttention,
} from "../../../src/backends/cpu/kernels/index.ts";
import { kvCacheBlocks } from "../../../src/executor/kv_cache_size.ts";
import { e4m3ToF32, f32ToE4m3 } from "../../../src/fp8_e4m3.ts";
import { randn, rng } from "./helpers.ts";

const f32 = Math.fround;

/** The test's own dequantization of one (token, head) row: s = fp32(max|x| / 448), fp32(e4m3(x/s)·s). */
function expectedRow(x: ArrayLike<number>): { scale: number; values: number[] } {
  let max = 0;
  for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]));
  const scale = f32(max / 448);
  const values = Array.from(x, (v) => (scale === 0 ? 0 : f32(e4m3ToF32(f32ToE4m3(f32(v / scale))) * scale)));
  return { scale, values };
}

/** [numTokens, numKvHeads, headDim] rows whose heads differ in magnitude by up to 2^12. */
function rows(numTokens: number, numKvHeads: number, headDim: number, seed: number): Float32Array {
  const x = randn(numTokens * numKvHeads * headDim, seed);
  const r = rng(seed + 1);
  for (let row = 0; row < numTokens * numKvHeads; row++) {
    const mag = 2 ** Math.floor(r() * 12 - 6);
    for (let d = 0; d < headDim; d++) x[row * headDim + d] *= mag;
  }
  return x;
}

/** An FP8 pool's contents as an fp32 pool of the values attention must read. */
function dequantizedPool(pool: Fp8KvPool, headDim: number): Float32Array {
  const out = new Float32Array(pool.data.length);
  for (let row = 0; row < pool.scale.length; row++)
    for (let d = 0; d < headDim; d++)
      out[row * headDim + d] = e4m3ToF32(pool.data[row * headDim + d]) * pool.scale[row];
  return out;
}

describe("FP8 KV cache: write and read back", () => {
  const Hkv = 3;
  const D = 7;
  const row = Hkv * D;

  it("stores e4m3(x / s) with s = max|x| / 448 per (slot, kv head); reads back e4m3·s", () => {
    const T = 5;
    const k = rows(T, Hkv, D, 11);
    const v = rows(T, Hkv, D, 12);
    k.fill(0, 2 * row, 2 * row + D); // token 2, head 0: all zeros
    const slots = new Int32Array([9, 0, 4, -1, 15]); // token 3 is padding
    const kc = allocFp8KvPool(16, Hkv, D);
    const vc = allocFp8KvPool(16, Hkv, D);
    kc.scale.fill(-1);
    kvCacheWrite(k, v, slots, T, Hkv, D, kc, vc);
    const kRead = dequantizedPool(kc, D);
    const vRead = dequantizedPool(vc, D);
    for (let t = 0; t < T; t++) {
      const slot = slots[t];
      if (slot === -1) continue;
      for (let h = 0; h < Hkv; h++) {
        for (const [x, pool, read] of [
          [k, kc, kRead],
          [v, vc, vRead],
        ] as const) {
          const src = x.subarray(t * row + h * D, t * row + (h + 1) * D);
          const want = expectedRow(src);
          const r = slot * Hkv + h;
          assert.equal(pool.scale[r], want.scale, `scale of token ${t} head ${h}`);
          assert.deepEqual(Array.from(read.subarray(r * D, (r + 1) * D)), want.values);
          // E4M3 keeps 3 mantissa bits: each value within half an ulp (2^-4 relative) or, below the
          // normal range (2^-6 · s), within half the subnormal step (2^-10 · s).
          for (let d = 0; d < D; d++) {
            const err = Math.abs(read[r * D + d] - src[d]);
            assert.ok(err <= Math.max(2 ** -4 * Math.abs(src[d]), 2 ** -10 * want.scale) * 1.0001);
          }
        }
      }
    }
    assert.equal(kc.scale[4 * Hkv], 0, "an all-zero row has scale 0");
    assert.deepEqual(Array.from(kRead.subarray(4 * row, 4 * row + D)), new Array(D).fill(0));
    assert.equal(kc.scale[3 * Hkv], -1, "slots nobody wrote are untouched");
  });

  it("a row's largest value maps to 448: no saturation, whatever the magnitude", () => {
    for (const big of [1e-6, 3, 7e4]) {
      const x = Float32Array.from({ length: D * Hkv }, (_, i) => ((i % 5) - 2) * big);
      const pool = allocFp8KvPool(1, Hkv, D);
      kvCacheWrite(x, x, new Int32Array([0]), 1, Hkv, D, pool, allocFp8KvPool(1, Hkv, D));
      for (let h = 0; h < Hkv; h++) {
        const bytes = Array.from(pool.data.subarray(h * D, (h + 1) * D), (b) => Math.abs(e4m3ToF32(b)));
        assert.equal(Math.max(...bytes), 448, `magnitude ${big}, head ${h}`);
      }
    }
  });
});

describe("FP8 KV cache: attention", () => {
  const H = 4;
  const Hkv = 2;
  const D = 8;
  const B = 4;

  function run(slidingWindow: number | null): void {
    // Two sequences in one call: 9 cached + 3 new, and 5 tokens all new; shuffled blocks.
    const seqs: AttentionSequence[] = [
      { queryStart: 0, queryLen: 3, contextLen: 12, blockTable: new Int32Array([6, 1, 4]) },
      { queryStart: 3, queryLen: 5, contextLen: 5, blockTable: new Int32Array([0, 7]) },
    ];
    const numSlots = 8 * B;
    const kc = allocFp8KvPool(numSlots, Hkv, D);
    const vc = allocFp8KvPool(numSlots, Hkv, D);
    let seed = 100;
    for (const s of seqs) {
      const slots = Int32Array.from(
        { length: s.contextLen },
        (_, p) => s.blockTable[Math.floor(p / B)] * B + (p % B),
      );
      kvCacheWrite(
        rows(s.contextLen, Hkv, D, seed++),
        rows(s.contextLen, Hkv, D, seed++),
        slots,
        s.contextLen,
        Hkv,
        D,
        kc,
        vc,
      );
    }
    const q = randn(8 * H * D, 7);
    const args = {
      q,
      blockSize: B,
      numHeads: H,
      numKvHeads: Hkv,
      headDim: D,
      seqs,
      scale: D ** -0.5,
      slidingWindow,
    };
    const got = new Float32Array(8 * H * D);
    pagedAttention({ ...args, kCache: kc, vCache: vc, out: got });
    const want = new Float32Array(8 * H * D);
    pagedAttention({ ...args, kCache: dequantizedPool(kc, D), vCache: dequantizedPool(vc, D), out: want });
    assert.deepEqual(got, want);
  }

  it("equals attention over the dequantized K and V (GQA, two sequences, paged)", () => run(null));
  it("equals it with a sliding window too", () => run(5));
});

describe("FP8 KV pool", () => {
  it("copyBlocks copies each block's scales with its bytes", () => {
    const pool = new CpuKvPool(2, 3, 4, 2, 8, "fp8");
    const x = rows(4, 2, 8, 5);
    const slots = Int32Array.from({ length: 4 }, (_, i) => 4 + i); // block 1
    for (let l = 0; l < 2; l++) kvCacheWrite(x, x, slots, 4, 2, 8, pool.k[l], pool.v[l]);
    pool.copyBlocks([1], [2]);
    for (const p of [...pool.k, ...pool.v] as Fp8KvPool[]) {
      const rowsPerBlock = 4 * 2;
      assert.deepEqual(
        p.scale.subarray(2 * rowsPerBlock, 3 * rowsPerBlock),
        p.scale.subarray(rowsPerBlock, 2 * rowsPerBlock),
      );
      assert.ok(p.scale[2 * rowsPerBlock] > 0);
      assert.deepEqual(
        p.data.subarray(2 * rowsPerBlock * 8, 3 * rowsPerBlock * 8),
        p.data.subarray(rowsPerBlock * 8, 2 * rowsPerBlock * 8),
      );
    }
  });

  it("an FP8 block takes ≥ 3.5× fewer bytes: the same budget holds ≥ 3.5× the blocks", () => {
    // The bundled model's shape: 6 layers, 4 kv heads of 32; blocks of 16.
    const fp32 = CpuKvPool.bytesPerBlock(6, 16, 4, 32);
    const fp8 = CpuKvPool.bytesPerBlock(6, 16, 4, 32, "fp8");
    assert.equal(fp32, 2 * 6 * 16 * 4 * 32 * 4);
    assert.equal(fp8, 2 * 6 * 16 * 4 * (32 + 4)); // bytes + one fp32 scale per (token, kv head)
    const config = { maxSeqLen: 4096, build: { maxBatchSize: 256 } } as never;
    const budget = 1e9;
    const blocks = (perBlock: number) => {
      const backend = { kvBlockSize: 16, kvBytesPerBlock: perBlock, freeMemoryBytes: () => budget } as never;
      return kvCacheBlocks(backend, config, { freeGpuMemoryFraction: 1 }).numBlocks;
    };
    assert.ok(blocks(fp8) >= 3.5 * blocks(fp32), `${blocks(fp8)} vs ${blocks(fp32)} blocks`);
    // Without free-memory reports (the CPU) the default byte cap binds the same way.
    const cpu = (perBlock: number) =>
      kvCacheBlocks({ kvBlockSize: 16, kvBytesPerBlock: perBlock } as never, config, {});
    assert.equal(cpu(fp32).limitedBy, "default");
    assert.ok(cpu(fp8).numBlocks >= 3.5 * cpu(fp32).numBlocks);
  });
});
