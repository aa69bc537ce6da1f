// kernels/gemv_fp8.cu and the cuBLASLt FP8 GEMM (device/cublaslt_descriptors.ts, the plans of
// fp8_gemm_plan.ts) on the GPU against the fp8 format (engine/fp8_format.ts): weights quantized by the
// builder (builder/passes/quantize_fp8.ts).
//   quant_fp8_act: bit for bit the codes f32ToE4m3(x / s) and s = fround(max|x| / 448) (dynamic) or the
//     static scale, for rows of every dtype, a zero row and rows that saturate (static); and x̂ (for
//     gemv_fp8_bits) bit for bit e4m3ToF32 of each code, in gemv_fp8.cu's xhat_quad order.
//   gemv_fp8_*: against the CPU reference (dequantizeFp8, fakeQuantizeActivations, then linear() in
//     fp32): its fp32 products in another order, two scale products (2⁻²¹·Σ|x̂·w|) plus one rounding of
//     the kiln_t output; both variants the same bits; the gated kernel bit for bit the plain kernel then
//     activation.cu's gated_act.
//   gemv_fp8_bits (KILN_FP8_GEMV=bits: integer-op decoding, x read as x̂): bit for bit gemv_fp8_r2uUw4's
//     and gemv_fp8_gated_silu's outputs, m = 1 … 8 (the GPU keeping fp32 subnormals, which its 2⁻¹²⁰-scaled
//     sums need, is what the emulator cannot show).
//   gemv_fp8_mma (KILN_FP8_GEMV=mma: the FP8 MMA's sums, not fp32's): against the format's y from the
//     device's codes within fp8Dot's bound of each warp's chain of mmas (in the kernel's k order,
//     mmaOrder below), the warps' fp32 sums and the output's rounding; gemv_fp8_mma_gated_silu bit for
//     bit gemv_fp8_mma then activation.cu's gated_act (inter not a multiple of 16 included: a row's sum
//     must not depend on where it sits in the mma tile).
//   FP8 GEMM, every plan cuBLASLt offers (unit scales + fp8_scale_rows; outer-vector scales with the bias
//     epilogue; without it, then bias_add): against the format's y = s[t]·sw[r]·Σ e4m3·e4m3 (+ bias) in
//     doubles, from the device's codes. Hopper's FP8 tensor cores do not sum in exact fp32, so the bound
//     is tolerances.ts's model of their accumulation (fp8Dot: each 32-product MMA aligned to 13 fraction
//     bits below its largest addend, whatever the promotion interval) plus the output's roundings; the unit-scale plan's
//     fp32 sums are checked against the exact sums of the codes, the model's own quantity. Every case
//     prints its worst error against its bound and in units of 2⁻¹³·Σ|x̂·w|, to confirm or correct it.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { linear } from "../../../src/backends/cpu/kernels/linear.ts";
import { CublasError, Gemm } from "../../../src/backends/cuda/device/index.ts";
import {
  fp8GemvBitsLaunch,
  fp8GemvGatedLaunch,
  fp8GemvLaunch,
  fp8GemvMmaGatedLaunch,
  fp8GemvMmaLaunch,
  fp8QuantLaunch,
  fp8ScaleRowsLaunch,
} from "../../../src/backends/cuda/fp8_variants.ts";
import { quantizeFp8 } from "../../../src/builder/passes/quantize_fp8.ts";
import { type DTypeName, ELEMENT_BYTES } from "../../../src/dtype.ts";
import { dequantizeFp8, fakeQuantizeActivations } from "../../../src/engine/fp8_format.ts";
import { E4M3_MAX, e4m3ToF32, f32ToE4m3 } from "../../../src/fp8_e4m3.ts";
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
import { FLOOR, fp8Dot, U } from "./tolerances.ts";

/** Where feature c of x row j lies in quant_fp8_act's x̂ [m, k] (kernels/gemv_fp8.cu xhat_quad: quad
 * p = (c mod 16) / 4 of vector v = c / 16 at float4 p·(k/16) + v of the row). */
function xhatIndex(j: number, c: number, k: number): number {
  const [v, p] = [c >> 4, (c & 15) >> 2];
  return j * k + 4 * (p * (k / 16) + v) + (c & 3);
}

/** x [m, k] in `dtype`: rows of different magnitudes, row 1 zero when m ≥ 3. */
function activations(m: number, k: number, dtype: DTypeName, seed: number): Float32Array {
  const x = randn(m * k, seed, 1);
  for (let j = 0; j < m; j++) for (let c = 0; c < k; c++) x[j * k + c] *= 2 ** (j % 5) / 4;
  if (m >= 3) x.fill(0, k, 2 * k);
  return roundTo(x, dtype);
}

/** The spec's scales and E4M3 codes of x's rows (fp8_format.ts fakeQuantizeActivations, as codes). */
function codes(x: Float32Array, m: number, k: number, fixed?: number) {
  const s = new Float32Array(m);
  const q = new Uint8Array(m * k);
  for (let j = 0; j < m; j++) {
    let max = 0;
    for (let c = 0; c < k; c++) max = Math.max(max, Math.abs(x[j * k + c]));
    s[j] = fixed ?? Math.fround(max / E4M3_MAX);
    for (let c = 0; c < k; c++) q[j * k + c] = s[j] === 0 ? 0 : f32ToE4m3(x[j * k + c] / s[j]);
  }
  return { s, q };
}

/** quantizeFp8(randn(rows·k, seed, 0.05)) as [rows, k], made once per (rows, k, seed) for the whole
 * file: every dtype and every kernel of a shape (and every m of the bits test) reads the same region,
 * and making the largest ones (4,096 × 14,336 and twice that) took most of the file's time. */
const weightCache = new Map<string, Uint8Array>();
function fp8Weights(rows: number, k: number, seed: number): Uint8Array {
  const key = `${rows}x${k}@${seed}`;
  let region = weightCache.get(key);
  if (!region) {
    region = quantizeFp8(randn(rows * k, seed, 0.05), [rows, k]);
    weightCache.set(key, region);
  }
  return region;
}

/** y = x̂·wᵀ + b as the CPU backend computes it, and Σ|x̂·w| + |b| for the bounds. */
function reference(
  x: Float32Array,
  region: Uint8Array,
  bias: Float32Array,
  m: number,
  n: number,
  k: number,
  fixed?: number,
) {
  const w = dequantizeFp8(region, [n, k]);
  const xh = Float32Array.from(x);
  fakeQuantizeActivations(xh, k, fixed);
  const want = new Float32Array(m * n);
  linear(xh, w, bias, m, k, n, want);
  const absSum = new Float32Array(m * n);
  linear(xh.map(Math.abs), w.map(Math.abs), bias.map(Math.abs), m, k, n, absSum);
  return { want, absSum };
}

/** The FP8 GEMM's reference from the codes xq [rows, k] and scales s [rows] the device wrote, and the
 * region's q and sw: per output [rows, n], the exact sums of the codes and the model's bound on them
 * (tolerances.ts fp8Dot), and y = s[t]·sw[r]·sum without and with the bias, with that bound scaled. */
function formatReference(
  xq: Uint8Array,
  s: Float32Array,
  region: Uint8Array,
  bias: Float32Array,
  n: number,
  k: number,
) {
  const rows = s.length;
  const table = Float64Array.from({ length: 256 }, (_, b) => e4m3ToF32(b));
  const xs = Float64Array.from(xq, (b) => table[b]);
  const ws = Float64Array.from(region.subarray(0, n * k), (b) => table[b]);
  const sw = new Float32Array(region.slice(n * k, n * k + n * 4).buffer);
  const out = () => new Float64Array(rows * n);
  const [sums, sumAbs, sumSlop, unbiased, biased, abs, slop] = [
    out(),
    out(),
    out(),
    out(),
    out(),
    out(),
    out(),
  ];
  for (let t = 0; t < rows; t++)
    for (let r = 0; r < n; r++) {
      const i = t * n + r;
      const d = fp8Dot(xs, t * k, ws, r * k, k);
      const scale = s[t] * sw[r];
      sums[i] = d.sum;
      sumAbs[i] = d.abs;
      sumSlop[i] = d.slop;
      unbiased[i] = scale * d.sum;
      biased[i] = unbiased[i] + bias[r];
      abs[i] = scale * d.abs;
      slop[i] = scale * d.slop;
    }
  return { sums, sumAbs, sumSlop, unbiased, biased, abs, slop };
}

/** gemv_fp8_mma's k order (kernels/gemv_fp8_mma.cuh: 8 warps, 4 chunks of 64 k per warp and step,
 * two m16n8k32 mmas a chunk): per warp, the k each mma slot sums, in issue order, −1 past k (a zero
 * product), 32 slots an mma. Slot 4t + i (i < 4) of mma h is byte 8h + i of vector 4c + t, slot
 * 16 + 4t + i its byte 8h + 4 + i. */
function mmaOrder(k: number): Int32Array[] {
  const [warps, u, chunks] = [8, 4, Math.ceil(k / 64)];
  const order: number[][] = Array.from({ length: warps }, () => []);
  for (let step = 0; step < chunks; step += warps * u)
    for (let w = 0; w < warps; w++)
      for (let j = 0; j < u; j++) {
        const c = step + w * u + j;
        for (let h = 0; h < 2; h++)
          for (let slot = 0; slot < 32; slot++) {
            const t = (slot % 16) >> 2;
            const kk = 16 * (4 * c + t) + 8 * h + 4 * (slot >> 4) + (slot % 4);
            order[w].push(c < chunks && kk < k ? kk : -1);
          }
      }
  return order.map((o) => Int32Array.from(o));
}

/** gemv_fp8_mma's reference for the weight rows `checked`: the format's y = s[t]·sw[r]·Σ e4m3·e4m3 + b
 * from the device's codes, [rows, checked.length], and the bound on its sums: fp8Dot over each warp's
 * products in mma order (the warps' fp32 sums are its 2⁻²¹·Σ|x̂·w| term), scaled. */
function mmaReference(
  xq: Uint8Array,
  s: Float32Array,
  region: Uint8Array,
  bias: Float32Array,
  n: number,
  k: number,
  checked: number[],
) {
  const rows = s.length;
  const table = Float64Array.from({ length: 256 }, (_, b) => e4m3ToF32(b));
  const sw = new Float32Array(region.slice(n * k, n * k + n * 4).buffer);
  const order = mmaOrder(k);
  const [want, slop, abs] = [0, 1, 2].map(() => new Float64Array(rows * checked.length));
  const xs = order.map((o) => new Float64Array(o.length));
  const ws = order.map((o) => new Float64Array(o.length));
  for (let t = 0; t < rows; t++)
    for (const [j, r] of checked.entries()) {
      const i = t * checked.length + j;
      let sum = 0;
      let sumAbs = 0;
      let sumSlop = 0;
      order.forEach((o, w) => {
        for (let c = 0; c < o.length; c++) {
          xs[w][c] = o[c] < 0 ? 0 : table[xq[t * k + o[c]]];
          ws[w][c] = o[c] < 0 ? 0 : table[region[r * k + o[c]]];
        }
        const d = fp8Dot(xs[w], 0, ws[w], 0, o.length);
        sum += d.sum;
        sumAbs += d.abs;
        sumSlop += d.slop;
      });
      const scale = s[t] * sw[r];
      want[i] = scale * sum + bias[r];
      slop[i] = scale * sumSlop;
      abs[i] = scale * sumAbs;
    }
  return { want, slop, abs };
}

/** The worst |got − want| as a fraction of `bound`, and in units of 2⁻¹³·Σ|x̂·w| (one truncation at the
 * scale of all products: the unit of the H200's first figures), for the log. */
function worstError(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  bound: (i: number) => number,
  abs: ArrayLike<number>,
): string {
  let ofBound = 0;
  let inUnits = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (bound(i) > 0) ofBound = Math.max(ofBound, err / bound(i));
    if (abs[i] > 0) inUnits = Math.max(inUnits, err / (2 ** -13 * abs[i]));
  }
  return `worst |error| ${ofBound.toFixed(3)} of its bound, ${inUnits.toFixed(3)} × 2⁻¹³·Σ|x̂·w|`;
}

/** Rows 0, stride, 2·stride, … of a [rows, width] array. */
function everyNthRow<T extends Float32Array | Uint8Array>(a: T, width: number, stride: number): T {
  const rows = Math.ceil(a.length / width / stride);
  const out = (a instanceof Uint8Array ? new Uint8Array(rows * width) : new Float32Array(rows * width)) as T;
  for (let j = 0; j < rows; j++) out.set(a.subarray(j * stride * width, (j * stride + 1) * width), j * width);
  return out;
}

describe("gemv_fp8.cu quant_fp8_act: the spec's codes and scales, bit for bit", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  for (const dtype of DTYPES) {
    for (const [m, k] of [
      [1, 16],
      [3, 4096],
      [7, 14336],
      [2, 16400], // past the 2 vectors a thread holds at 1,024 threads (bf16/fp16): the loop reads again
    ] as const) {
      for (const fixed of [undefined, 0.002]) {
        test(`${dtype} m ${m} k ${k} ${fixed === undefined ? "dynamic" : "static"}`, () => {
          const x = activations(m, k, dtype, 7 + m + k);
          const want = codes(x, m, k, fixed);
          const mod = h.module("gemv_fp8.cu", {}, dtype);
          const xq = h.raw(new Uint8Array(m * k).fill(0xa5));
          const s = h.filled(m, "fp32", 0xff);
          const xhat = h.filled(m * k, "fp32", 0xff);
          const fixedPtr = fixed === undefined ? (0n as never) : h.raw(Float32Array.of(fixed));
          const l = fp8QuantLaunch(m, k, ELEMENT_BYTES[dtype]);
          h.run(
            mod,
            l.kernel,
            [l.grid],
            [l.block],
            [ptr(h.upload(x, dtype)), ptr(xq), ptr(s), ptr(fixedPtr), ptr(xhat), i32(m), i32(k)],
          );
          assertSameBits(h.download(s, m, "fp32"), want.s, "scales");
          assertSameBits(h.downloadBytes(xq, m * k), want.q, "codes");
          const wantXhat = new Float32Array(m * k);
          for (let j = 0; j < m; j++)
            for (let c = 0; c < k; c++) wantXhat[xhatIndex(j, c, k)] = e4m3ToF32(want.q[j * k + c]);
          assertSameBits(h.download(xhat, m * k, "fp32"), wantXhat, "x̂");
        });
      }
    }
  }
});

// [m, n, k]: k a multiple of 16; n with partial last blocks.
const SHAPES: [number, number, number][] = [
  [1, 7, 16],
  [2, 769, 4096],
  [3, 37, 272],
  [8, 4096, 14336],
];

describe("gemv_fp8.cu gemv_fp8_* and the FP8 GEMM against the CPU reference", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  /** Quantizes x on the device; returns xq, s and x̂ (written only with `withXhat`, as for the bits
   * GEMV; else null, as the other GEMVs and the GEMM pass). */
  function quantizeOnDevice(
    mod: ReturnType<KernelHarness["module"]>,
    x: Float32Array,
    m: number,
    k: number,
    dtype: DTypeName,
    fixed?: number,
    withXhat = false,
  ) {
    const xq = h.raw(new Uint8Array(m * k));
    const s = h.filled(m, "fp32", 0xff);
    const xhat = withXhat ? h.filled(m * k, "fp32", 0xff) : (0n as never);
    const fixedPtr = fixed === undefined ? (0n as never) : h.raw(Float32Array.of(fixed));
    const l = fp8QuantLaunch(m, k, ELEMENT_BYTES[dtype]);
    h.run(
      mod,
      l.kernel,
      [l.grid],
      [l.block],
      [ptr(h.upload(x, dtype)), ptr(xq), ptr(s), ptr(fixedPtr), ptr(xhat), i32(m), i32(k)],
    );
    return { xq, s, xhat };
  }

  /** gemv_fp8_bits_r4u2w4 from x̂ gives gemv_fp8_r2uUw4's outputs from xq bit for bit, over a
   * [2·inter, k] weight. */
  function bitsEqualsFma(dtype: DTypeName, m: number, inter: number, k: number) {
    const region = fp8Weights(2 * inter, k, 11 + inter);
    const x = activations(m, k, dtype, 6 + m);
    const mod = h.module("gemv_fp8.cu", {}, dtype);
    const { xq, s, xhat } = quantizeOnDevice(mod, x, m, k, dtype, undefined, true);
    const q = h.raw(region.subarray(0, 2 * inter * k));
    const sw = h.raw(region.slice(2 * inter * k, 2 * inter * k + 2 * inter * 4));
    const bd = h.upload(roundTo(randn(2 * inter, 17, 0.1), dtype), dtype);
    const [fma, bits, n] = [fp8GemvLaunch(2 * inter, k), fp8GemvBitsLaunch(2 * inter), 2 * inter];
    const out = (l: { kernel: string; grid: number; block: number }, xIn: typeof xq) => {
      const y = h.filled(m * n, dtype, 0xff);
      const args = [ptr(xIn), ptr(s), ptr(q), ptr(sw), ptr(bd), ptr(y), i32(m), i32(n), i32(k)];
      h.run(mod, l.kernel, [l.grid], [l.block], args);
      return h.download(y, m * n, dtype);
    };
    const want = out(fma, xq);
    assert.ok(want.every(Number.isFinite), `${fma.kernel}: every output written`);
    assertSameBits(out(bits, xhat), want, `${bits.kernel} vs ${fma.kernel} ${dtype} m ${m}`);
  }

  for (const dtype of DTYPES) {
    for (const [m, n, k] of SHAPES) {
      test(`gemv ${dtype} m ${m} n ${n} k ${k}`, () => {
        const region = fp8Weights(n, k, 3 + n);
        const x = activations(m, k, dtype, 1 + m + n);
        const bias = roundTo(randn(n, 3, 0.1), dtype);
        const { want, absSum } = reference(x, region, bias, m, n, k);
        const mod = h.module("gemv_fp8.cu", {}, dtype);
        const { xq, s } = quantizeOnDevice(mod, x, m, k, dtype);
        const q = h.raw(region.subarray(0, n * k));
        const sw = h.raw(region.slice(n * k, n * k + n * 4));
        const bd = h.upload(bias, dtype);
        const chosen = fp8GemvLaunch(n, k);
        const outs: Float32Array[] = [];
        for (const u of [4, 8]) {
          const kernel = chosen.kernel.replace(/u\d+w4$/, `u${u}w4`);
          const y = h.filled(m * n, dtype, 0xff);
          const args = [ptr(xq), ptr(s), ptr(q), ptr(sw), ptr(bd), ptr(y), i32(m), i32(n), i32(k)];
          h.run(mod, kernel, [chosen.grid], [chosen.block], args);
          outs.push(h.download(y, m * n, dtype));
          assertWithin(
            outs[outs.length - 1],
            want,
            (i) => 2 ** -21 * absSum[i] + U[dtype] * Math.abs(want[i]) + 1e-30,
            `${kernel} ${dtype}`,
          );
        }
        assertSameBits(outs[0], outs[1], "r2u4w4 vs r2u8w4");
      });

      test(`gemv_fp8_mma ${dtype} m ${m} n ${n} k ${k}`, () => {
        const region = fp8Weights(n, k, 3 + n);
        const x = activations(m, k, dtype, 1 + m + n);
        const bias = roundTo(randn(n, 3, 0.1), dtype);
        const mod = h.module("gemv_fp8.cu", {}, dtype);
        const { xq, s } = quantizeOnDevice(mod, x, m, k, dtype);
        const q = h.raw(region.subarray(0, n * k));
        const sw = h.raw(region.slice(n * k, n * k + n * 4));
        const l = fp8GemvMmaLaunch(n);
        const y = h.filled(m * n, dtype, 0xff);
        const args = [
          ptr(xq),
          ptr(s),
          ptr(q),
          ptr(sw),
          ptr(h.upload(bias, dtype)),
          ptr(y),
          i32(m),
          i32(n),
          i32(k),
        ];
        h.run(mod, l.kernel, [l.grid], [l.block], args);
        // Every output is checked written; every stride-th row (≤ 512) against the reference.
        const all = h.download(y, m * n, dtype);
        assert.ok(all.every(Number.isFinite), "every output written");
        const stride = Math.ceil(n / 512);
        const checked = Array.from({ length: Math.ceil(n / stride) }, (_, j) => j * stride);
        const got = Float32Array.from({ length: m * checked.length }, (_, i) => {
          const [t, j] = [Math.floor(i / checked.length), i % checked.length];
          return all[t * n + checked[j]];
        });
        const xCodes = h.downloadBytes(xq, m * k);
        const ref = mmaReference(xCodes, h.download(s, m, "fp32"), region, bias, n, k, checked);
        const bound = (i: number) => ref.slop[i] + U[dtype] * Math.abs(ref.want[i]) + FLOOR[dtype];
        console.log(
          `${l.kernel} ${dtype} m ${m} n ${n} k ${k}: ${worstError(got, ref.want, bound, ref.abs)}`,
        );
        assertWithin(got, ref.want, bound, `${l.kernel} ${dtype}`);
      });

      /** The gated kernel from `gatedLaunch` equals `plainLaunch`'s GEMV over the fused weight, then
       * gated_act_silu, bit for bit. */
      const gatedEqualsUnfused = (
        plainLaunch: (rows: number, k: number) => { kernel: string; grid: number; block: number },
        gatedLaunch: (inter: number) => { kernel: string; grid: number; block: number },
      ) => {
        const region = fp8Weights(2 * n, k, 5 + n);
        const x = activations(m, k, dtype, 2 + m);
        const mod = h.module("gemv_fp8.cu", {}, dtype);
        const act = h.module("activation.cu", {}, dtype);
        const { xq, s } = quantizeOnDevice(mod, x, m, k, dtype);
        const q = h.raw(region.subarray(0, 2 * n * k));
        const sw = h.raw(region.slice(2 * n * k, 2 * n * k + 2 * n * 4));
        const bd = h.upload(roundTo(randn(2 * n, 13, 0.1), dtype), dtype);
        const plain = plainLaunch(2 * n, k);
        const gateUp = h.filled(m * 2 * n, dtype, 0xff);
        h.run(
          mod,
          plain.kernel,
          [plain.grid],
          [plain.block],
          [ptr(xq), ptr(s), ptr(q), ptr(sw), ptr(bd), ptr(gateUp), i32(m), i32(2 * n), i32(k)],
        );
        const want = h.filled(m * n, dtype, 0xff);
        h.run(act, "gated_act_silu", [64], [256], [ptr(gateUp), ptr(want), i32(m), i32(n)]);
        const got = h.filled(m * n, dtype, 0xff);
        const l = gatedLaunch(n);
        h.run(
          mod,
          l.kernel,
          [l.grid],
          [l.block],
          [ptr(xq), ptr(s), ptr(q), ptr(sw), ptr(bd), ptr(got), i32(m), i32(n), i32(k)],
        );
        assertSameBits(h.download(got, m * n, dtype), h.download(want, m * n, dtype), l.kernel);
      };

      test(`gemv_fp8_mma_gated ${dtype} m ${m} inter ${n} k ${k}`, () =>
        gatedEqualsUnfused(
          (rows) => fp8GemvMmaLaunch(rows),
          (inter) => fp8GemvMmaGatedLaunch("silu", inter),
        ));

      test(`gated ${dtype} m ${m} inter ${n} k ${k}`, () =>
        gatedEqualsUnfused(fp8GemvLaunch, (inter) => fp8GemvGatedLaunch("silu", inter)));
    }

    for (const [inter, k] of [
      [37, 2064],
      [2048, 4096],
    ] as const)
      test(`gemv_fp8_bits ${dtype} inter ${inter} k ${k}: gemv_fp8's bits, m = 1 … 8`, () => {
        for (let m = 1; m <= 8; m++) bitsEqualsFma(dtype, m, inter, k);
      });

    // [m, n, k, static scale]: the runtime's row buckets (16, 512) and one not a power of two.
    for (const [m, n, k, fixed] of [
      [16, 64, 256, undefined],
      [512, 4096, 4096, undefined],
      [300, 1008, 14336, undefined],
      [16, 640, 256, 0.01],
    ] as const) {
      test(`FP8 GEMM ${dtype} m ${m} n ${n} k ${k} ${fixed === undefined ? "dynamic" : "static"}`, () => {
        const region = fp8Weights(n, k, 9 + n);
        const x = activations(m, k, dtype, 4 + m);
        const bias = roundTo(randn(n, 3, 0.1), dtype);
        const mod = h.module("gemv_fp8.cu", {}, dtype);
        const act = h.module("activation.cu", {}, dtype);
        const { xq, s } = quantizeOnDevice(mod, x, m, k, dtype, fixed);
        const q = h.raw(region.subarray(0, n * k));
        const sw = h.raw(region.slice(n * k, n * k + n * 4));
        const bd = h.upload(bias, dtype);
        const tag = `FP8 GEMM ${dtype} m ${m} n ${n} k ${k}`;
        // The reference: the format's y = s[t]·sw[r]·Σ e4m3·e4m3 (+ bias) in doubles, from the codes
        // quant_fp8_act wrote (bit for bit the spec's: the first suite), with the model's bound per
        // output (tolerances.ts fp8Dot). The host checks every stride-th row (≤ 16, whose exact sums in
        // doubles are most of this file's time on the CPU; the GEMMs run whole).
        const stride = Math.ceil(m / 16);
        const sample = <T extends Float32Array | Uint8Array>(a: T, width: number) =>
          everyNthRow(a, width, stride);
        const ref = formatReference(
          sample(h.downloadBytes(xq, m * k), k),
          sample(h.download(s, m, "fp32"), 1),
          region,
          bias,
          n,
          k,
        );
        /** got within the model's accumulation bound (scaled), one rounding to the dtype and `extra`. */
        const check = (
          got: Float32Array,
          want: Float64Array,
          what: string,
          extra?: (i: number) => number,
        ) => {
          const bound = (i: number) =>
            ref.slop[i] + U[dtype] * Math.abs(want[i]) + (extra?.(i) ?? 0) + FLOOR[dtype];
          console.log(`${tag} ${what}: ${worstError(got, want, bound, ref.abs)}`);
          assertWithin(got, want, bound, `${tag} ${what}`);
          assert.ok(got.every(Number.isFinite), `${what}: every output written`);
        };

        // The fallback Fp8Linears takes where cuBLASLt has no outer-vector algorithm: unit scales, fp32
        // out, then fp8_scale_rows. Its fp32 sums, before any scale, against the exact sums of the codes:
        // the model's own quantity.
        const acc = h.filled(m * n, "fp32", 0xff);
        const unit = Gemm.create(h.device, {
          m,
          n,
          k,
          dtypeIn: dtype,
          dtypeOut: "fp32",
          fp8: true,
          fp8UnitScales: true,
        });
        try {
          unit.run(h.stream, xq, q, acc);
          h.stream.synchronize();
        } finally {
          unit.dispose();
        }
        const sums = sample(h.download(acc, m * n, "fp32"), n);
        const sumBound = (i: number) => ref.sumSlop[i];
        console.log(`${tag} unit-scale sums: ${worstError(sums, ref.sums, sumBound, ref.sumAbs)}`);
        assertWithin(sums, ref.sums, sumBound, `${tag} unit-scale sums`);
        const y2 = h.filled(m * n, dtype, 0xff);
        const e = fp8ScaleRowsLaunch(m, n);
        h.run(
          mod,
          e.kernel,
          [e.grid],
          [e.block],
          [ptr(acc), ptr(s), ptr(sw), ptr(bd), ptr(y2), i32(m), i32(n)],
        );
        check(sample(h.download(y2, m * n, dtype), n), ref.biased, "unit scales + fp8_scale_rows");

        // Outer-vector scales, where this cuBLASLt has them (fp8_gemm_plan.ts falls back otherwise):
        // with the bias epilogue, and without it — alone (bias-free linears) and then bias_add (biased
        // linears whose bias epilogue cuBLASLt refuses), one more rounding, of the unbiased value.
        for (const withBias of [true, false]) {
          let g: Gemm;
          try {
            g = Gemm.create(h.device, {
              m,
              n,
              k,
              dtypeIn: dtype,
              dtypeOut: dtype,
              bias: withBias,
              fp8: true,
            });
          } catch (err) {
            if (!(err instanceof CublasError)) throw err;
            console.log(`${tag} outer-vector, bias ${withBias}: refused (${err.message})`);
            continue;
          }
          const y = h.filled(m * n, dtype, 0xff);
          try {
            g.run(h.stream, xq, q, y, withBias ? bd : undefined, { x: s, w: sw });
            h.stream.synchronize();
          } finally {
            g.dispose();
          }
          if (withBias) {
            check(sample(h.download(y, m * n, dtype), n), ref.biased, "outer-vector, bias epilogue");
            continue;
          }
          check(sample(h.download(y, m * n, dtype), n), ref.unbiased, "outer-vector, no bias");
          h.run(act, "bias_add", [64], [256], [ptr(y), ptr(bd), i32(m), i32(n)]);
          check(
            sample(h.download(y, m * n, dtype), n),
            ref.biased,
            "outer-vector + bias_add",
            (i) => U[dtype] * Math.abs(ref.unbiased[i]),
          );
        }
      });
    }
  }
});
