import { after, afterEach, before, describe, test } from "node:test";
import { linear } from "../../../src/backends/cpu/kernels/linear.ts";
import { GEMV_VARIANTS, gemvLaunch } from "../../../src/backends/cuda/gemv_variants.ts";
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
import { U } from "./tolerances.ts";

// [m, n, k]: every m from 1 to 8.
const SHAPES: [number, number, number][] = [
  [1, 7, 8],
  [2, 769, 4096],
  [3, 4096, 5128],
  [4, 33, 2048],
  [5, 1031, 1032],
  [6, 12, 14336],
  [7, 3072, 2048],
  [8, 5125, 64],
];

describe("gemv.cu", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  for (const dtype of DTYPES) {
    for (const [m, n, k] of SHAPES) {
      for (const withBias of [false, true]) {
        for (const f32Out of dtype === "fp32" ? [false] : [false, true]) {
          test(`${dtype} m ${m} n ${n} k ${k}${withBias ? " bias" : ""}${f32Out ? " fp32 out" : ""}`, () => {
            if (k % (dtype === "fp32" ? 4 : 8) !== 0) return;
            const x = roundTo(randn(m * k, 1 + m + n, 0.5), dtype);
            const w = roundTo(randn(n * k, 2 + k, 0.05), dtype);
            const bias = withBias ? roundTo(randn(n, 3, 0.1), dtype) : null;
            const want = new Float32Array(m * n);
            linear(x, w, bias, m, k, n, want);
            const absSum = new Float32Array(m * n);
            linear(x.map(Math.abs), w.map(Math.abs), bias ? bias.map(Math.abs) : null, m, k, n, absSum);
            const mod = h.module("gemv.cu", {}, dtype);
            const outType = f32Out ? "fp32" : dtype;
            const xd = h.upload(x, dtype);
            const wd = h.upload(w, dtype);
            const bd = bias ? ptr(h.upload(bias, dtype)) : NULL;
            const u = f32Out ? 0 : U[dtype];
            for (const variant of Object.values(GEMV_VARIANTS)) {
              const { kernel, grid, block } = gemvLaunch(variant, n, f32Out);
              const y = h.filled(m * n, outType, 0xff);
              h.run(mod, kernel, [grid], [block], [ptr(xd), ptr(wd), bd, ptr(y), i32(m), i32(n), i32(k)]);
              const got = h.download(y, m * n, outType);
              assertWithin(
                got,
                want,
                (i) => 2 ** -22 * absSum[i] + u * Math.abs(want[i]) + 1e-30,
                `${kernel} ${dtype}`,
              );
            }
          });
        }
      }
    }
  }
});

// gemv_gated_ACT (decode gate_up GEMV with the gated activation as its epilogue) must equal, bit for
// bit, the unfused pair it replaces: a GEMV into [m, 2·inter] then activation.cu's gated_act_ACT.
describe("gemv.cu gemv_gated_*: equal to gemv then gated_act", { skip: noGpu }, () => {
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
    [1, 1031, 2048],
    [3, 769, 1032],
    [8, 4096, 64],
  ];
  for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
    for (const [m, inter, k] of GATED) {
      for (const withBias of [false, true]) {
        test(`${dtype} m ${m} inter ${inter} k ${k}${withBias ? " bias" : ""}`, () => {
          const x = roundTo(randn(m * k, 11 + m, 0.5), dtype);
          const w = roundTo(randn(2 * inter * k, 12 + k, 0.05), dtype);
          const bias = withBias ? roundTo(randn(2 * inter, 13, 0.1), dtype) : null;
          const gemv = h.module("gemv.cu", {}, dtype);
          const act = h.module("activation.cu", {}, dtype);
          const xd = h.upload(x, dtype);
          const wd = h.upload(w, dtype);
          const bd = bias ? ptr(h.upload(bias, dtype)) : NULL;
          const { kernel, grid, block } = gemvLaunch(GEMV_VARIANTS.r1u4w8, 2 * inter, false);
          const gateUp = h.filled(m * 2 * inter, dtype, 0xff);
          h.run(
            gemv,
            kernel,
            [grid],
            [block],
            [ptr(xd), ptr(wd), bd, ptr(gateUp), i32(m), i32(2 * inter), i32(k)],
          );
          for (const a of ACTS) {
            const want = h.filled(m * inter, dtype, 0xff);
            h.run(act, `gated_act_${a}`, [64], [256], [ptr(gateUp), ptr(want), i32(m), i32(inter)]);
            const got = h.filled(m * inter, dtype, 0xff);
            h.run(
              gemv,
              `gemv_gated_${a}`,
              [Math.ceil(inter / 8)],
              [256],
              [ptr(xd), ptr(wd), bd, ptr(got), i32(m), i32(inter), i32(k)],
            );
            const g = h.download(got, m * inter, dtype);
            const e = h.download(want, m * inter, dtype);
            assertSameBits(g, e, `gemv_gated_${a}:`);
          }
        });
      }
    }
  }
});
