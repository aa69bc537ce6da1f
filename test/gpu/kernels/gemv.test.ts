// gemv.cu (decode GEMMs, m ≤ 8) against the CPU reference linear(): every variant (gemv_plan.ts) on odd
// and real sizes, m = 1..8, every dtype, with and without bias, 16-bit and fp32 outputs. The shapes
// cover rows shorter than one iteration of every variant (k = 8, 64), a remainder after full
// iterations (k = 1032, 5128), n not a multiple of any block's rows (7, 33, 769, 5125), and the real
// k = 2048 / 4096 / 14336.
// Tolerance per element: fp32 accumulation in another order, 2^-22 · Σ|x·w| (a few ulps of the
// magnitude the sum passes through), plus the storage rounding of the output, U[dtype] · |y|.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { linear } from "../../../src/backends/cpu/kernels/linear.ts";
import type { DevicePtr } from "../../../src/backends/cuda/device/index.ts";
import {
  GEMV_VARIANTS,
  type GemvVariant,
  gemvGatedLaunch,
  gemvLaunch,
  gemvNormSharedBytes,
} from "../../../src/backends/cuda/gemv_plan.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import {
  assertSameBits,
  assertWithin,
  DTYPES,
  f32,
  i32,
  KernelHarness,
  NULL,
  noGpu,
  normBlock,
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

// The fused-norm twins (gemv_*_norm, gemv_gated_*_norm: RMSNorm or residual add + RMSNorm in the GEMV's
// prologue) must equal, bit for bit, rmsnorm.cu's rms_norm / add_rms_norm followed by the plain kernel:
// the same output and the same residual sum (stored to another buffer), launch after launch.
describe("gemv.cu fused-norm twins: equal to the norm kernel then the GEMV", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [m, n, k]: k is the normalised width.
  const NORM_SHAPES: [number, number, number][] = [
    [1, 2048, 2048],
    [3, 769, 1032],
    [8, 33, 4096],
    [5, 4097, 64],
  ];
  const eps = 1e-5;
  for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
    for (const [m, n, k] of NORM_SHAPES) {
      for (const withResidual of [false, true]) {
        test(`${dtype} m ${m} n ${n} k ${k}${withResidual ? " residual add" : ""}`, () => {
          const elem = 2;
          const x = roundTo(randn(m * k, 21 + m, 2), dtype);
          const res = roundTo(randn(m * k, 22 + k, 3), dtype);
          const gamma = roundTo(
            randn(k, 23, 0.2).map((g) => 1 + g),
            dtype,
          );
          const w = roundTo(randn(2 * n * k, 24 + n, 0.05), dtype);
          const bias = roundTo(randn(2 * n, 25, 0.1), dtype);
          const gemv = h.module("gemv.cu", {}, dtype);
          const norm = h.module("rmsnorm.cu", { WIDTH: k }, dtype);
          const [xd, gd, wd, bd] = [
            h.upload(x, dtype),
            h.upload(gamma, dtype),
            h.upload(w, dtype),
            h.upload(bias, dtype),
          ];
          const resRef = h.upload(res, dtype);
          // The fused kernels read one residual buffer and write the sum to the other, alternately.
          let [resIn, resOut] = [h.upload(res, dtype), h.filled(m * k, dtype, 0xff)];
          const normed = h.filled(m * k, dtype, 0xff);
          const block = normBlock(k, dtype);
          const kernels = [
            ...Object.values(GEMV_VARIANTS)
              .filter((v) => v.norm)
              .flatMap((v) => [
                {
                  plain: gemvLaunch(v, n, false),
                  fused: gemvLaunch(v, n, false, "norm"),
                  out: dtype,
                  width: n,
                },
                {
                  plain: gemvLaunch(v, n, true),
                  fused: gemvLaunch(v, n, true, "norm"),
                  out: "fp32" as const,
                  width: n,
                },
              ]),
            ...["silu", "gelu"].map((a) => ({
              plain: gemvGatedLaunch(a, n),
              fused: gemvGatedLaunch(a, n, "norm"),
              out: dtype,
              width: n,
            })),
          ];
          // Two rounds: each launch adds x to the residual sum the launch before it stored.
          for (let launch = 0; launch < 2; launch++) {
            for (const { plain, fused, out, width } of kernels) {
              if (withResidual) {
                h.run(
                  norm,
                  "add_rms_norm",
                  [m],
                  [block],
                  [ptr(resRef), ptr(xd), ptr(gd), ptr(normed), ptr(resRef), f32(eps), i32(m)],
                );
              } else {
                h.run(norm, "rms_norm", [m], [block], [ptr(xd), ptr(gd), ptr(normed), f32(eps), i32(m)]);
              }
              const want = h.filled(m * width, out, 0xff);
              const tail = [ptr(wd), ptr(bd)];
              h.run(
                gemv,
                plain.kernel,
                [plain.grid],
                [plain.block],
                [ptr(normed), ...tail, ptr(want), i32(m), i32(width), i32(k)],
              );
              const got = h.filled(m * width, out, 0xff);
              h.run(
                gemv,
                fused.kernel,
                [fused.grid],
                [fused.block],
                [
                  ptr(xd),
                  withResidual ? ptr(resIn) : NULL,
                  withResidual ? ptr(resOut) : NULL,
                  ptr(gd),
                  f32(eps),
                  ...tail,
                  ptr(got),
                  i32(m),
                  i32(width),
                  i32(k),
                ],
                gemvNormSharedBytes(m, k, elem),
              );
              const what = `${fused.kernel} launch ${launch}`;
              const g = h.download(got, m * width, out);
              const e = h.download(want, m * width, out);
              assertSameBits(g, e, `${what}:`);
              if (withResidual) {
                const r = h.download(resOut, m * k, dtype);
                const rr = h.download(resRef, m * k, dtype);
                assertSameBits(r, rr, `${what}: residual`);
                [resIn, resOut] = [resOut, resIn];
              }
            }
          }
        });
      }
    }
  }
});

/**
 * The unfused chain a norm-producing GEMV twin replaces: variant pv's plain GEMV y = x·Wᵀ + b [m, n]
 * (W [n, k]), then rmsnorm.cu's add_rms_norm of residual + y; the residual sum and the normalised rows.
 */
function addNormReference(
  h: KernelHarness,
  dtype: DTypeName,
  pv: GemvVariant,
  a: { x: DevicePtr; w: DevicePtr; b: DevicePtr; residual: DevicePtr; gamma: DevicePtr },
  m: number,
  n: number,
  k: number,
  eps: number,
): { sum: Float32Array; normed: Float32Array } {
  const y = h.filled(m * n, dtype, 0xff);
  const p = gemvLaunch(pv, n, false);
  h.run(
    h.module("gemv.cu", {}, dtype),
    p.kernel,
    [p.grid],
    [p.block],
    [ptr(a.x), ptr(a.w), ptr(a.b), ptr(y), i32(m), i32(n), i32(k)],
  );
  const sum = h.filled(m * n, dtype, 0xff);
  const normed = h.filled(m * n, dtype, 0xff);
  h.run(
    h.module("rmsnorm.cu", { WIDTH: n }, dtype),
    "add_rms_norm",
    [m],
    [normBlock(n, dtype)],
    [ptr(a.residual), ptr(y), ptr(a.gamma), ptr(normed), ptr(sum), f32(eps), i32(m)],
  );
  return { sum: h.download(sum, m * n, dtype), normed: h.download(normed, m * n, dtype) };
}

// The tail norm (KILN_FUSE_NORM=tail): a producer GEMV's _addnorm twin stores h = residual + y, and its
// last CTA to arrive the normalised rows. Both must equal, bit for bit, the producer's plain GEMV then
// rmsnorm.cu's add_rms_norm; each launch must leave its arrival counter zero (launched twice on one).
describe("gemv.cu tail norm: _addnorm equals gemv then add_rms_norm", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [m, producer k, n (the norm's width)]: n a multiple of 8 (16-byte vectors) or odd (single elements).
  const TAIL_SHAPES: [number, number, number][] = [
    [1, 1032, 2048],
    [2, 776, 4096],
    [1, 64, 777],
    [2, 520, 5125],
    [8, 520, 776],
  ];
  const eps = 1e-5;
  for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
    for (const [m, kp, n] of TAIL_SHAPES) {
      test(`${dtype} m ${m}: [${n}, ${kp}]`, () => {
        const x = roundTo(randn(m * kp, 31 + m, 1), dtype);
        const res = roundTo(randn(m * n, 32 + n, 2), dtype);
        const gamma = roundTo(
          randn(n, 33, 0.2).map((g) => 1 + g),
          dtype,
        );
        const wp = roundTo(randn(n * kp, 34, 0.05), dtype);
        const bp = roundTo(randn(n, 35, 0.1), dtype);
        const gemv = h.module("gemv.cu", {}, dtype);
        const [xd, resd, gd, wpd, bpd] = [x, res, gamma, wp, bp].map((a) => h.upload(a, dtype));
        for (const pv of Object.values(GEMV_VARIANTS).filter((v) => v.norm)) {
          const ref = addNormReference(
            h,
            dtype,
            pv,
            { x: xd, w: wpd, b: bpd, residual: resd, gamma: gd },
            m,
            n,
            kp,
            eps,
          );
          const [rr, nr] = [ref.sum, ref.normed];
          const counter = h.raw(new Int32Array(1)); // one arrival counter, zero
          const a = gemvLaunch(pv, n, false, "addnorm");
          for (let launch = 0; launch < 2; launch++) {
            const resOut = h.filled(m * n, dtype, 0xff);
            const normed = h.filled(m * n, dtype, 0xff);
            h.run(
              gemv,
              a.kernel,
              [a.grid],
              [a.block],
              [
                ptr(xd),
                ptr(wpd),
                ptr(bpd),
                ptr(resd),
                ptr(resOut),
                ptr(gd),
                f32(eps),
                ptr(normed),
                ptr(counter),
                i32(m),
                i32(n),
                i32(kp),
              ],
            );
            const what = `${a.kernel} m ${m} launch ${launch}`;
            const r = h.download(resOut, m * n, dtype);
            assertSameBits(r, rr, `${what}: residual sum`);
            const g = h.download(normed, m * n, dtype);
            assertSameBits(g, nr, `${what}: normalised`);
            assert.deepEqual([...h.downloadI32(counter, 1)], [0], `${what}: the counter is left zero`);
          }
        }
      });
    }
  }
});

// A carried norm (KILN_FUSE_NORM=carry): the producer's _addcarry twin stores h = residual + y (bit for
// bit add_rms_norm's sum), h·γ in fp32 (exactly the fp32 product) and adds Σ h² per row (fp64) to its
// slot; the consumer's _carry twin streams h·γ and scales each sum by rstd. The consumer is checked
// against linear() over h·γ times the host's rstd (rms_rstd's fp32 steps), with the plain GEMV's bound
// over that x: it has no 16-bit rounding of x at all. gemv_gated_ACT_carry must equal, bit for bit, the
// r1u4w8 _carry twin over the fused gate_up weight then gated_act. The consumer clears the slot it is
// given (and only that), launch after launch.
describe("gemv.cu carried norm: _addcarry then _carry", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [m, producer k, norm width n, consumer n]
  const CARRY_SHAPES: [number, number, number, number][] = [
    [1, 1032, 2048, 3072],
    [2, 776, 4096, 769],
    [1, 64, 776, 33],
    [8, 520, 1032, 1031],
  ];
  const eps = 1e-5;
  const MAX_M = 8; // gemv.cu's GEMV_MAX_M: a slot's rows
  const rstdOf = (sum: number, width: number) => {
    const variance = Math.fround(sum / width);
    return Math.fround(1 / Math.fround(Math.sqrt(Math.fround(variance + Math.fround(eps)))));
  };
  for (const dtype of DTYPES.filter((d) => d !== "fp32")) {
    for (const [m, kp, n, nc] of CARRY_SHAPES) {
      test(`${dtype} m ${m}: producer [${n}, ${kp}], consumer [${nc}, ${n}]`, () => {
        const x = roundTo(randn(m * kp, 41 + m, 1), dtype);
        const res = roundTo(randn(m * n, 42 + n, 2), dtype);
        const gamma = roundTo(
          randn(n, 43, 0.2).map((g) => 1 + g),
          dtype,
        );
        const wp = roundTo(randn(n * kp, 44, 0.05), dtype);
        const bp = roundTo(randn(n, 45, 0.1), dtype);
        const wc = roundTo(randn(2 * nc * n, 46 + nc, 0.05), dtype);
        const bc = roundTo(randn(2 * nc, 47, 0.1), dtype);
        const gemv = h.module("gemv.cu", {}, dtype);
        const act = h.module("activation.cu", {}, dtype);
        const [xd, resd, gd, wpd, bpd, wcd, bcd] = [x, res, gamma, wp, bp, wc, bc].map((a) =>
          h.upload(a, dtype),
        );
        for (const pv of Object.values(GEMV_VARIANTS).filter((v) => v.norm)) {
          const hRef = addNormReference(
            h,
            dtype,
            pv,
            { x: xd, w: wpd, b: bpd, residual: resd, gamma: gd },
            m,
            n,
            kp,
            eps,
          ).sum;
          const hgWant = hRef.map((v, i) => Math.fround(v * gamma[i % n]));
          const sumWant = new Float64Array(MAX_M);
          for (let j = 0; j < m; j++)
            for (let i = 0; i < n; i++) sumWant[j] += Math.fround(hRef[j * n + i] * hRef[j * n + i]);

          const sums = h.raw(new Float64Array(MAX_M)); // the slot: zero before the producer
          const resOut = h.filled(m * n, dtype, 0xff);
          const hg = h.filled(m * n, "fp32", 0xff);
          const a = gemvLaunch(pv, n, false, "addcarry");
          h.run(
            gemv,
            a.kernel,
            [a.grid],
            [a.block],
            [
              ptr(xd),
              ptr(wpd),
              ptr(bpd),
              ptr(resd),
              ptr(resOut),
              ptr(gd),
              ptr(hg),
              ptr(sums),
              i32(m),
              i32(n),
              i32(kp),
            ],
          );
          const what = `${a.kernel} ${dtype} m ${m}`;
          const r = h.download(resOut, m * n, dtype);
          assertSameBits(r, hRef, `${what}: residual sum`);
          const g = h.download(hg, m * n, "fp32");
          assertSameBits(g, hgWant, `${what}: h·γ`);
          const s = h.downloadF64(sums, MAX_M);
          for (let j = 0; j < MAX_M; j++)
            assert.ok(
              Math.abs(s[j] - sumWant[j]) <= 1e-13 * sumWant[j],
              `${what}: Σ h² of row ${j}: ${s[j]} vs ${sumWant[j]}`,
            );

          // Consumers over the producer's h·γ and Σ h²: linear() over h·γ, times rstd.
          const rstd = Array.from({ length: m }, (_, j) => rstdOf(s[j], n));
          const want = new Float32Array(m * nc);
          linear(hgWant, wc.subarray(0, nc * n), bc.subarray(0, nc), m, n, nc, want);
          const absSum = new Float32Array(m * nc);
          linear(hgWant.map(Math.abs), wc.subarray(0, nc * n).map(Math.abs), null, m, n, nc, absSum);
          for (let j = 0; j < m; j++) {
            for (let i = 0; i < nc; i++) {
              const at = j * nc + i;
              want[at] = Math.fround((want[at] - bc[i]) * rstd[j] + bc[i]);
              absSum[at] = absSum[at] * rstd[j] + Math.abs(bc[i]);
            }
          }
          for (const cv of Object.values(GEMV_VARIANTS).filter((v) => v.norm)) {
            for (const f32Out of [false, true]) {
              const c = gemvLaunch(cv, nc, f32Out, "carry");
              const outType = f32Out ? "fp32" : dtype;
              const u = f32Out ? 0 : U[dtype];
              for (let launch = 0; launch < 2; launch++) {
                const clear = h.raw(new Float64Array(MAX_M).fill(7));
                const out = h.filled(m * nc, outType, 0xff);
                h.run(
                  gemv,
                  c.kernel,
                  [c.grid],
                  [c.block],
                  [
                    ptr(hg),
                    ptr(sums),
                    ptr(clear),
                    f32(eps),
                    ptr(wcd),
                    ptr(bcd),
                    ptr(out),
                    i32(m),
                    i32(nc),
                    i32(n),
                  ],
                );
                const cw = `${c.kernel} ${dtype} m ${m} launch ${launch}`;
                assertWithin(
                  h.download(out, m * nc, outType),
                  want,
                  (i) => 2 ** -22 * absSum[i] + u * Math.abs(want[i]) + 1e-30,
                  cw,
                );
                assert.deepEqual(
                  [...h.downloadF64(clear, MAX_M)],
                  new Array(MAX_M).fill(0),
                  `${cw}: clears its slot`,
                );
                assert.deepEqual([...h.downloadF64(sums, MAX_M)], [...s], `${cw}: leaves the slot it reads`);
              }
            }
          }
          // The gated consumer: bit for bit the r1u4w8 carry twin over [2·nc, n], then gated_act_silu.
          const gateUp = h.filled(m * 2 * nc, dtype, 0xff);
          const c2 = gemvLaunch(GEMV_VARIANTS.r1u4w8, 2 * nc, false, "carry");
          h.run(
            gemv,
            c2.kernel,
            [c2.grid],
            [c2.block],
            [
              ptr(hg),
              ptr(sums),
              NULL,
              f32(eps),
              ptr(wcd),
              ptr(bcd),
              ptr(gateUp),
              i32(m),
              i32(2 * nc),
              i32(n),
            ],
          );
          const gatedWant = h.filled(m * nc, dtype, 0xff);
          h.run(act, "gated_act_silu", [64], [256], [ptr(gateUp), ptr(gatedWant), i32(m), i32(nc)]);
          const gl = gemvGatedLaunch("silu", nc, "carry");
          const gated = h.filled(m * nc, dtype, 0xff);
          h.run(
            gemv,
            gl.kernel,
            [gl.grid],
            [gl.block],
            [ptr(hg), ptr(sums), NULL, f32(eps), ptr(wcd), ptr(bcd), ptr(gated), i32(m), i32(nc), i32(n)],
          );
          const gg = h.download(gated, m * nc, dtype);
          const ge = h.download(gatedWant, m * nc, dtype);
          assertSameBits(gg, ge, `${gl.kernel} ${dtype} m ${m}:`);
        }
      });
    }
  }
});
