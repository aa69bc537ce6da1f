// kernels/gemv_zp.cu (int4-zp: AWQ / GPTQ weights) on the GPU against the CPU
// reference: random int4-zp regions encoded by engine/int4_zp_format.ts, laid out as the backend
// uploads them (backends/cuda/int4_zp_weights.ts), dequantized by int4_zp_format.ts (what the CPU backend
// computes with), then linear() in fp32. Group sizes 32, 64, 128, the whole row and 48 (the any kernel),
// act-order g_idx (GPTQ-like: a permutation of features to groups); n with partial last blocks.
// Tolerances:
//   gemv_zp[_any]_*: fp32 products in another order (2⁻²²·Σ|x·w|, as gemv_wo's test) plus one rounding of
//     the kiln_t output (U of |want|); r2u4w4 and r2u8w4 give the same bits.
//   gemv_zp_mma (tensor cores; runs where G is a multiple of 128, no g_idx and the weight's zero points
//     are exact in 16 bits, the CUDA-core kernels elsewhere): tolerances.ts int4MmaBound.
//   gemv_zp[_any|_mma]_gated_ACT: bit for bit its plain kernel's gate and up, then activation.cu's gated_act.
//   dequant_zp: bit for bit the reference's fp32 weight rounded to kiln_t (integer zero points: q − z
//     exact; fp32: exactly it), k odd and not a multiple of 8 too.
import { after, afterEach, before, describe, test } from "node:test";
import { linear } from "../../../src/backends/cpu/kernels/linear.ts";
import { offsetPtr } from "../../../src/backends/cuda/device/index.ts";
import {
  zpDequantLaunch,
  zpGemvGatedLaunch,
  zpGemvLaunch,
} from "../../../src/backends/cuda/gemv_zp_variants.ts";
import { int4ZpDeviceLayout } from "../../../src/backends/cuda/int4_zp_weights.ts";
import { dequantizeInt4Zp, encodeInt4Zp } from "../../../src/engine/int4_zp_format.ts";
import {
  assertSameBits,
  assertWithin,
  DTYPES,
  i32,
  KernelHarness,
  NULL,
  noGpu,
  ptr,
  randn,
  roundTo,
} from "./harness.ts";
import { int4MmaBound, U } from "./tolerances.ts";

/** A deterministic stream of uint32s (xorshift32). */
function rng(seed: number): () => number {
  let s = seed * 2654435761 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** A random int4-zp [n, k] weight on the device (as the backend lays it out) and its fp32 reference. */
function zpWeight(
  h: KernelHarness,
  n: number,
  k: number,
  groupSize: number,
  actOrder: boolean,
  seed: number,
) {
  const next = rng(seed);
  const groups = Math.ceil(k / groupSize);
  const q = new Uint8Array(n * k).map(() => next() % 16);
  const scales = randn(n * groups, seed + 1, 0.01).map((v) => Math.abs(v) + 1e-4);
  const zeros = new Float32Array(n * groups).map(() => next() % 17);
  let gIdx: Int32Array | null = null;
  if (actOrder) {
    const perm = Array.from({ length: k }, (_, i) => i);
    for (let i = k - 1; i > 0; i--) {
      const j = next() % (i + 1);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    gIdx = new Int32Array(k);
    for (let i = 0; i < k; i++) gIdx[perm[i]] = Math.floor(i / groupSize);
  }
  const { bytes, params } = encodeInt4Zp({ rows: n, cols: k, groupSize, q, scales, zeros, gIdx });
  const l = int4ZpDeviceLayout([n, k], params);
  const dev = new Uint8Array(l.deviceBytes).fill(0xa5); // the padding: garbage, never read
  for (const s of l.segments) dev.set(bytes.subarray(s.src, s.src + s.bytes), s.dst);
  const base = h.raw(dev);
  return {
    args: [
      ptr(base),
      ptr(offsetPtr(base, l.scales)),
      ptr(offsetPtr(base, l.zeros)),
      actOrder ? ptr(offsetPtr(base, l.gIdx)) : NULL,
    ],
    w: dequantizeInt4Zp(bytes, [n, k], params),
  };
}

// [m, n, k, groupSize, actOrder]: k a multiple of 32 (the GEMV's 16-byte q rows).
const SHAPES: [number, number, number, number, boolean][] = [
  [1, 7, 64, 32, false],
  [2, 769, 4096, 128, false],
  [3, 37, 256, 64, false],
  [1, 33, 96, 96, false],
  [8, 5125, 8192, 128, false],
  [4, 37, 160, 48, false],
  [1, 769, 4096, 128, true],
  [8, 33, 14336, 32, true],
];

describe("gemv_zp.cu gemv_zp[_any|_mma]_*", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
    for (const [m, n, k, g, act] of SHAPES) {
      test(`${dtype} m ${m} n ${n} k ${k} G ${g}${act ? " act-order" : ""}`, () => {
        const { args: wArgs, w } = zpWeight(h, n, k, g, act, 2 + k + n);
        const x = roundTo(randn(m * k, 1 + m + n, 0.5), dtype);
        const bias = roundTo(randn(n, 3, 0.1), dtype);
        const want = new Float32Array(m * n);
        linear(x, w, bias, m, k, n, want);
        const absSum = new Float32Array(m * n);
        linear(x.map(Math.abs), w.map(Math.abs), bias.map(Math.abs), m, k, n, absSum);
        const mod = h.module("gemv_zp.cu", {}, dtype);
        const xd = h.upload(x, dtype);
        const bd = h.upload(bias, dtype);
        const chosen = zpGemvLaunch(n, k, g, act, false);
        const kernels = chosen.kernel.startsWith("gemv_zp_any")
          ? [chosen.kernel]
          : ["gemv_zp_r2u4w4", "gemv_zp_r2u8w4"];
        const outs: Float32Array[] = [];
        for (const kernel of kernels) {
          const y = h.filled(m * n, dtype, 0xff);
          const args = [ptr(xd), ...wArgs, ptr(bd), ptr(y), i32(m), i32(n), i32(k), i32(g)];
          h.run(mod, kernel, [chosen.grid], [chosen.block], args);
          outs.push(h.download(y, m * n, dtype));
          assertWithin(
            outs[outs.length - 1],
            want,
            (i) => 2 ** -22 * absSum[i] + U[dtype] * Math.abs(want[i]) + 1e-30,
            `${kernel} ${dtype}`,
          );
        }
        if (outs.length === 2) assertSameBits(outs[0], outs[1], "r2u4w4 vs r2u8w4");
        const mma = zpGemvLaunch(n, k, g, act, true);
        if (mma.kernel !== "gemv_zp_mma") return;
        const y = h.filled(m * n, dtype, 0xff);
        const args = [ptr(xd), ...wArgs, ptr(bd), ptr(y), i32(m), i32(n), i32(k), i32(g)];
        h.run(mod, mma.kernel, [mma.grid], [mma.block], args);
        const chunks = Math.ceil(k / 128);
        assertWithin(
          h.download(y, m * n, dtype),
          want,
          (i) => int4MmaBound(dtype, chunks, absSum[i], want[i]),
          `gemv_zp_mma ${dtype}`,
        );
      });
    }
  }
});

describe("gemv_zp.cu gemv_zp[_any|_mma]_gated_*: equal to the plain kernel then gated_act", {
  skip: noGpu,
}, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  const ACTS = ["silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu"];
  // [m, inter, k, groupSize, actOrder]
  const GATED: [number, number, number, number, boolean][] = [
    [1, 7, 64, 32, false],
    [3, 769, 1024, 128, false],
    [8, 1031, 256, 32, true],
  ];
  for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
    for (const [m, inter, k, g, actOrder] of GATED) {
      test(`${dtype} m ${m} inter ${inter} k ${k} G ${g}${actOrder ? " act-order" : ""}`, () => {
        const { args: wArgs } = zpWeight(h, 2 * inter, k, g, actOrder, 12 + k);
        const x = roundTo(randn(m * k, 11 + m, 0.5), dtype);
        const bd = h.upload(roundTo(randn(2 * inter, 13, 0.1), dtype), dtype);
        const mod = h.module("gemv_zp.cu", {}, dtype);
        const act = h.module("activation.cu", {}, dtype);
        const xd = h.upload(x, dtype);
        for (const mma of [false, true]) {
          const plain = zpGemvLaunch(2 * inter, k, g, actOrder, mma);
          if (mma && plain.kernel !== "gemv_zp_mma") continue;
          const gateUp = h.filled(m * 2 * inter, dtype, 0xff);
          h.run(
            mod,
            plain.kernel.replace("u8w4", "u4w4"),
            [plain.grid],
            [plain.block],
            [ptr(xd), ...wArgs, ptr(bd), ptr(gateUp), ...[i32(m), i32(2 * inter), i32(k), i32(g)]],
          );
          for (const a of ACTS) {
            const want = h.filled(m * inter, dtype, 0xff);
            h.run(act, `gated_act_${a}`, [64], [256], [ptr(gateUp), ptr(want), i32(m), i32(inter)]);
            const got = h.filled(m * inter, dtype, 0xff);
            const l = zpGemvGatedLaunch(a, inter, g, actOrder, mma);
            const args = [ptr(xd), ...wArgs, ptr(bd), ptr(got), i32(m), i32(inter), i32(k), i32(g)];
            h.run(mod, l.kernel, [l.grid], [l.block], args);
            assertSameBits(h.download(got, m * inter, dtype), h.download(want, m * inter, dtype), l.kernel);
          }
        }
      });
    }
  }
});

describe("gemv_zp.cu dequant_zp: the reference's weight in kiln_t", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [n, k, groupSize, actOrder]: k 7, 101 and 769 odd (a half-used last byte a row).
  const SIZES: [number, number, number, boolean][] = [
    [7, 7, 2, false],
    [769, 256, 32, false],
    [33, 769, 128, true],
    [37, 101, 16, true],
    [5125, 1024, 64, false],
  ];
  for (const dtype of DTYPES) {
    for (const [n, k, g, actOrder] of SIZES) {
      test(`${dtype} n ${n} k ${k} G ${g}${actOrder ? " act-order" : ""}`, () => {
        const { args: wArgs, w } = zpWeight(h, n, k, g, actOrder, 5 + n);
        const mod = h.module("gemv_zp.cu", {}, dtype);
        const out = h.filled(n * k, dtype, 0xff);
        const l = zpDequantLaunch(n, k);
        h.run(mod, l.kernel, [l.grid], [l.block], [...wArgs, ptr(out), i32(n), i32(k), i32(g)]);
        assertSameBits(h.download(out, n * k, dtype), roundTo(w, dtype), l.kernel);
      });
    }
  }
});
