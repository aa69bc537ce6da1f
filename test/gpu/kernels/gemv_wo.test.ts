// kernels/gemv_wo.cu on the GPU against the CPU reference of the weight-only formats: weights quantized by
// the builder's quantizer (builder/passes/quantize_weights.ts), dequantized by engine/weight_format.ts
// (what the CPU backend computes with), then linear() in fp32. Odd sizes: n 7, 769, 5125 (partial last
// blocks), k not a multiple of 128 (padded groups) and of 16 / 32 (partial q vectors).
// Tolerances:
//   gemv_wo8_r2uUw4 (int8-wo): the reference's fp32 products in another order (2⁻²²·Σ|x·w|, as gemv.cu's
//     test) plus one rounding of the kiln_t output (U of |want|); both variants give the same bits.
//   gemv_wo4_mma (int4-wo's decode GEMV, on the tensor cores): tolerances.ts int4MmaBound; its twin
//     gemv_wo4_mma_p (rows of several load rounds) bit for bit gemv_wo4_mma.
//   gemv_wo8_gated_ACT and gemv_wo4_mma_gated_ACT: bit for bit their plain kernel's gate and up, then
//     activation.cu's gated_act_ACT.
//   dequant_woB: bit for bit the reference's fp32 weight rounded to kiln_t (fp32: exactly it).
import { after, afterEach, before, describe, test } from "node:test";
import { linear } from "../../../src/backends/cpu/kernels/linear.ts";
import {
  dequantLaunch,
  woGemvGatedLaunch,
  woGemvLaunch,
} from "../../../src/backends/cuda/gemv_wo_variants.ts";
import { quantize } from "../../../src/builder/passes/quantize_weights.ts";
import { dequantize, type IntWoFormat, quantizedDataBytes } from "../../../src/engine/weight_format.ts";
import {
  assertSameBits,
  assertWithin,
  DTYPES,
  i32,
  KernelHarness,
  noGpu,
  ptr,
  randn,
  roundTo,
} from "./harness.ts";
import { int4MmaBound, U } from "./tolerances.ts";

const FORMATS: readonly IntWoFormat[] = ["int8-wo", "int4-wo"];
// [m, n, k]: k a multiple of 8 (the GEMV's 16-byte rows of x).
const SHAPES: [number, number, number][] = [
  [1, 7, 8],
  [2, 769, 4096],
  [3, 37, 264],
  [4, 4096, 1032],
  [1, 5125, 8200],
  [8, 33, 14336],
];

/** q and scales of a random [n, k] weight on the device, and the fp32 weight they stand for. */
function quantized(h: KernelHarness, format: IntWoFormat, n: number, k: number, seed: number) {
  const bytes = quantize(randn(n * k, seed, 0.05), [n, k], format);
  const q = h.raw(bytes);
  const scales = h.raw(bytes.slice(quantizedDataBytes([n, k], format)));
  return { q, scales, w: dequantize(bytes, [n, k], format) };
}

describe("gemv_wo.cu decode GEMVs: gemv_wo8_r2uUw4, gemv_wo4_mma", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  for (const format of FORMATS) {
    for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
      for (const [m, n, k] of SHAPES) {
        test(`${format} ${dtype} m ${m} n ${n} k ${k}`, () => {
          const { q, scales, w } = quantized(h, format, n, k, 2 + k);
          const x = roundTo(randn(m * k, 1 + m + n, 0.5), dtype);
          const bias = roundTo(randn(n, 3, 0.1), dtype);
          const want = new Float32Array(m * n);
          linear(x, w, bias, m, k, n, want);
          const absSum = new Float32Array(m * n);
          linear(x.map(Math.abs), w.map(Math.abs), bias.map(Math.abs), m, k, n, absSum);
          const mod = h.module("gemv_wo.cu", {}, dtype);
          const xd = h.upload(x, dtype);
          const bd = h.upload(bias, dtype);
          const l = woGemvLaunch(format, n, k);
          const run = (kernel: string) => {
            const y = h.filled(m * n, dtype, 0xff);
            const args = [ptr(xd), ptr(q), ptr(scales), ptr(bd), ptr(y), i32(m), i32(n), i32(k)];
            h.run(mod, kernel, [l.grid], [l.block], args);
            return h.download(y, m * n, dtype);
          };
          if (format === "int4-wo") {
            const groups = Math.ceil(k / 128);
            const got = run(l.kernel);
            assertWithin(
              got,
              want,
              (i) => int4MmaBound(dtype, groups, absSum[i], want[i]),
              `${l.kernel} ${dtype}`,
            );
            // gemv_wo4_mma_p (rows of several load rounds): gemv_wo4_mma's chunks in its order, the same bits.
            if (l.kernel === "gemv_wo4_mma_p")
              assertSameBits(got, run("gemv_wo4_mma"), "gemv_wo4_mma_p vs gemv_wo4_mma");
            return;
          }
          const outs: Float32Array[] = [];
          for (const u of [4, 8]) {
            const kernel = l.kernel.replace(/u\d+w4$/, `u${u}w4`);
            outs.push(run(kernel));
            assertWithin(
              outs[outs.length - 1],
              want,
              (i) => 2 ** -22 * absSum[i] + U[dtype] * Math.abs(want[i]) + 1e-30,
              `${kernel} ${dtype}`,
            );
          }
          assertSameBits(outs[0], outs[1], "r2u4w4 vs r2u8w4");
        });
      }
    }
  }
});

describe("gemv_wo.cu gated GEMVs: equal to the plain kernel then gated_act", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  const ACTS = ["silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu"];
  // [m, inter, k]
  const GATED: [number, number, number][] = [
    [1, 7, 8],
    [3, 769, 1032],
    [8, 1031, 264],
  ];
  for (const format of FORMATS) {
    for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
      for (const [m, inter, k] of GATED) {
        test(`${format} ${dtype} m ${m} inter ${inter} k ${k}`, () => {
          const { q, scales } = quantized(h, format, 2 * inter, k, 12 + k);
          const x = roundTo(randn(m * k, 11 + m, 0.5), dtype);
          const bd = h.upload(roundTo(randn(2 * inter, 13, 0.1), dtype), dtype);
          const mod = h.module("gemv_wo.cu", {}, dtype);
          const act = h.module("activation.cu", {}, dtype);
          const xd = h.upload(x, dtype);
          const plain = woGemvLaunch(format, 2 * inter, k);
          const gateUp = h.filled(m * 2 * inter, dtype, 0xff);
          const args = [ptr(xd), ptr(q), ptr(scales), ptr(bd), ptr(gateUp), i32(m), i32(2 * inter), i32(k)];
          h.run(mod, plain.kernel, [plain.grid], [plain.block], args);
          for (const a of ACTS) {
            const want = h.filled(m * inter, dtype, 0xff);
            h.run(act, `gated_act_${a}`, [64], [256], [ptr(gateUp), ptr(want), i32(m), i32(inter)]);
            const got = h.filled(m * inter, dtype, 0xff);
            const l = woGemvGatedLaunch(format, a, inter);
            h.run(
              mod,
              l.kernel,
              [l.grid],
              [l.block],
              [ptr(xd), ptr(q), ptr(scales), ptr(bd), ptr(got), i32(m), i32(inter), i32(k)],
            );
            assertSameBits(
              h.download(got, m * inter, dtype),
              h.download(want, m * inter, dtype),
              `${l.kernel} vs ${plain.kernel} then gated_act_${a}`,
            );
          }
        });
      }
    }
  }
});

describe("gemv_wo.cu dequant_woB: the reference's weight in kiln_t", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [n, k]: k 7 and 769 are not multiples of 8 (scalar stores).
  const SIZES: [number, number][] = [
    [7, 7],
    [769, 264],
    [33, 769],
    [5125, 1032],
  ];
  for (const format of FORMATS) {
    for (const dtype of DTYPES) {
      for (const [n, k] of SIZES) {
        test(`${format} ${dtype} n ${n} k ${k}`, () => {
          const { q, scales, w } = quantized(h, format, n, k, 5 + n);
          const mod = h.module("gemv_wo.cu", {}, dtype);
          const out = h.filled(n * k, dtype, 0xff);
          const l = dequantLaunch(format, n, k);
          h.run(mod, l.kernel, [l.grid], [l.block], [ptr(q), ptr(scales), ptr(out), i32(n), i32(k)]);
          assertSameBits(h.download(out, n * k, dtype), roundTo(w, dtype), l.kernel);
        });
      }
    }
  }
});
