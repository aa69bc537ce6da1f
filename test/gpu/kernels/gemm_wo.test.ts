// kernels/gemm_wo.cu (the tensor-core GEMM over weight-only quantized weights, steps of 9…256 rows) on
// the GPU against the CPU reference of each format: int8-wo / int4-wo weights quantized by the builder's
// quantizer and dequantized by engine/weight_format.ts, int4-zp regions encoded by int4_zp_format.ts (laid
// out as the backend uploads them) and dequantized by it — what the CPU backend computes with — then
// linear(). Every tile (m16n64, m32n64, m64n128) on every shape, whichever the runtime would pick; m 9,
// 16, 17, 64, 100, 256; n with partial tiles (37, 769); k not a multiple of 128 (padded groups; int4-zp:
// partial stages and groups); bias and none.
// Tolerance (the kernel's arithmetic; kernels/emulation/gemm_wo_check.cpp checks the same bound's exact
// form on the CPU emulator): the products x·q (x·(q − z)) are exact; a product meets the mma accumulations
// of its group's partial (steps = ceil(min(G, k) / 16)), one scale multiply, one accumulator add per
// group, 3 warp-reduction adds and the bias add. The tensor cores' fp32 accumulation aligns the 16
// products and the accumulator to the largest exponent and may truncate each (Fasi et al., "Numerical
// behavior of NVIDIA tensor cores", 2021): up to 17 ulps (2⁻²³) of Σ|terms| per mma; the other operations
// round once. The reference's own error: its fp32 weight (one rounding of q·s) and its fp32 store,
// 2⁻²⁴·(Σ|x·w| + |want|). Then one rounding of kiln_t (U of |want|, FLOOR near zero):
//   |got − want| ≤ (17·steps + groups + 6)·2⁻²³·Σ|x·w| + 2⁻²⁴·(Σ|x·w| + |want|) + U·|want| + FLOOR.
// Also: every output written (y starts as NaN bytes) and the same bits on a second run. The gated kernels
// (silu; the other activations differ only in activations.cuh's functor, which the GEMVs' tests cover):
// bit for bit the plain kernel over the fused [2·inter, k] weight, then activation.cu's gated_act_silu.
import { after, afterEach, before, describe, test } from "node:test";
import { linear } from "../../../src/backends/cpu/kernels/linear.ts";
import { offsetPtr } from "../../../src/backends/cuda/device/index.ts";
import { type WoGemmFormat, woGemmLaunch } from "../../../src/backends/cuda/gemm_wo_variants.ts";
import { int4ZpDeviceLayout } from "../../../src/backends/cuda/int4_zp_weights.ts";
import { quantize } from "../../../src/builder/passes/quantize_weights.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import { dequantizeInt4Zp, encodeInt4Zp } from "../../../src/engine/int4_zp_format.ts";
import { dequantize, type IntWoFormat, quantizedDataBytes } from "../../../src/engine/weight_format.ts";
import {
  assertSameBits,
  assertWithin,
  i32,
  KernelHarness,
  NULL,
  noGpu,
  ptr,
  randn,
  roundTo,
} from "./harness.ts";
import { FLOOR, U } from "./tolerances.ts";

const DTYPES16: readonly DTypeName[] = ["fp16", "bf16"];
const ROWS = [9, 16, 17, 64, 100, 256];
/** Rows that select each tile (woGemmLaunch): every test runs all three. */
const TILE_ROWS = [16, 32, 64];

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

interface Weight {
  /** The weight's kernel arguments: q, scales (int4-zp: and zeros). */
  args: ReturnType<typeof ptr>[];
  /** The CPU backend's fp32 weight [n, k]. */
  w: Float32Array;
  groupSize: number;
}

function intWo(h: KernelHarness, format: IntWoFormat, n: number, k: number, seed: number): Weight {
  const bytes = quantize(randn(n * k, seed, 0.05), [n, k], format);
  const q = h.raw(bytes);
  const scales = h.raw(bytes.slice(quantizedDataBytes([n, k], format)));
  return { args: [ptr(q), ptr(scales)], w: dequantize(bytes, [n, k], format), groupSize: 128 };
}

/** A random int4-zp weight (integer zero points 0…16, as AWQ / GPTQ store them) as the backend lays it out. */
function int4Zp(h: KernelHarness, n: number, k: number, groupSize: number, seed: number): Weight {
  const next = rng(seed);
  const groups = Math.ceil(k / groupSize);
  const q = new Uint8Array(n * k).map(() => next() % 16);
  const scales = randn(n * groups, seed + 1, 0.01).map((v) => Math.abs(v) + 1e-4);
  const zeros = new Float32Array(n * groups).map(() => next() % 17);
  const { bytes, params } = encodeInt4Zp({ rows: n, cols: k, groupSize, q, scales, zeros, gIdx: null });
  const l = int4ZpDeviceLayout([n, k], params);
  const dev = new Uint8Array(l.deviceBytes).fill(0xa5); // the padding: garbage, never read
  for (const s of l.segments) dev.set(bytes.subarray(s.src, s.src + s.bytes), s.dst);
  const base = h.raw(dev);
  return {
    args: [ptr(base), ptr(offsetPtr(base, l.scales)), ptr(offsetPtr(base, l.zeros))],
    w: dequantizeInt4Zp(bytes, [n, k], params),
    groupSize,
  };
}

/** Runs every tile over `weight` for m rows and checks each against the CPU's linear(). */
function checkAllTiles(
  h: KernelHarness,
  format: WoGemmFormat,
  weight: Weight,
  dtype: DTypeName,
  m: number,
  n: number,
  k: number,
  withBias: boolean,
) {
  const x = roundTo(randn(m * k, 1 + m + n, 0.5), dtype);
  const bias = withBias ? roundTo(randn(n, 3, 0.1), dtype) : null;
  const want = new Float32Array(m * n);
  linear(x, weight.w, bias, m, k, n, want);
  const absSum = new Float32Array(m * n);
  linear(x.map(Math.abs), weight.w.map(Math.abs), bias?.map(Math.abs) ?? null, m, k, n, absSum);
  const steps = Math.ceil(Math.min(weight.groupSize, k) / 16);
  const groups = Math.ceil(k / weight.groupSize);
  const bound = (i: number) =>
    (17 * steps + groups + 6) * 2 ** -23 * absSum[i] +
    2 ** -24 * (absSum[i] + Math.abs(want[i])) +
    U[dtype] * Math.abs(want[i]) +
    FLOOR[dtype];
  const mod = h.module("gemm_wo.cu", { GEMV_ACT: 0 }, dtype); // the plain kernels only
  const xd = h.upload(x, dtype);
  const bd = bias ? ptr(h.upload(bias, dtype)) : NULL;
  const tail = format === "zp" ? [i32(m), i32(n), i32(k), i32(weight.groupSize)] : [i32(m), i32(n), i32(k)];
  for (const tileRows of TILE_ROWS) {
    const l = woGemmLaunch(format, tileRows, n);
    const bm = Number(/_m(\d+)n/.exec(l.kernel)?.[1]);
    const grid: [number, number] = [Math.ceil(m / bm), l.grid[1]];
    const outs: Float32Array[] = [];
    for (let run = 0; run < 2; run++) {
      const y = h.filled(m * n, dtype, 0xff);
      const args = [ptr(xd), ...weight.args.slice(0, format === "zp" ? 3 : 2), bd, ptr(y), ...tail];
      h.run(mod, l.kernel, grid, [l.block], args, l.sharedBytes);
      outs.push(h.download(y, m * n, dtype));
    }
    assertWithin(outs[0], want, bound, `${l.kernel} ${dtype} m ${m}`);
    assertSameBits(outs[1], outs[0], `${l.kernel}: a second run`);
  }
}

describe("gemm_wo.cu gemm_woB_*: int8-wo / int4-wo", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [n, k]: k a multiple of 8 (16-byte rows of x), not of 128.
  const SHAPES: [number, number][] = [
    [37, 8],
    [769, 1032],
    [136, 4096],
  ];
  for (const format of ["int8-wo", "int4-wo"] as const)
    for (const dtype of DTYPES16)
      for (const [n, k] of SHAPES)
        for (const m of ROWS)
          test(`${format} ${dtype} m ${m} n ${n} k ${k}`, () => {
            const weight = intWo(h, format, n, k, 2 + k + n);
            checkAllTiles(h, format === "int8-wo" ? 8 : 4, weight, dtype, m, n, k, (m + n) % 2 === 1);
          });
});

describe("gemm_wo.cu gemm_zp_*: int4-zp", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [n, k, G]: k and G multiples of 32 (what the runtime routes here).
  const SHAPES: [number, number, number][] = [
    [37, 96, 32],
    [769, 1056, 128],
    [136, 4096, 64],
    [37, 1056, 256],
  ];
  for (const dtype of DTYPES16)
    for (const [n, k, g] of SHAPES)
      for (const m of ROWS)
        test(`${dtype} m ${m} n ${n} k ${k} G ${g}`, () => {
          checkAllTiles(h, "zp", int4Zp(h, n, k, g, 5 + k + n), dtype, m, n, k, (m + n) % 2 === 0);
        });
});

describe("gemm_wo.cu gated kernels: equal to the plain kernel then gated_act", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  // [m, inter, k]: partial feature blocks (BN / 2 = 32 or 64 features a CTA), k a multiple of 32.
  const GATED: [number, number, number][] = [
    [9, 37, 1056],
    [64, 769, 96],
    [256, 68, 1056],
  ];
  for (const format of [8, 4, "zp"] as const)
    for (const dtype of DTYPES16)
      for (const [m, inter, k] of GATED)
        test(`${format === "zp" ? "int4-zp" : `int${format}-wo`} ${dtype} m ${m} inter ${inter} k ${k}`, () => {
          const weight =
            format === "zp"
              ? int4Zp(h, 2 * inter, k, 32, 9 + k)
              : intWo(h, format === 8 ? "int8-wo" : "int4-wo", 2 * inter, k, 9 + k);
          const x = roundTo(randn(m * k, 7 + m, 0.5), dtype);
          const bd = ptr(h.upload(roundTo(randn(2 * inter, 13, 0.1), dtype), dtype));
          const mod = h.module("gemm_wo.cu", { GEMV_ACT: 1 }, dtype);
          const act = h.module("activation.cu", {}, dtype);
          const xd = h.upload(x, dtype);
          const tail = (n: number) =>
            format === "zp" ? [i32(m), i32(n), i32(k), i32(weight.groupSize)] : [i32(m), i32(n), i32(k)];
          for (const tileRows of TILE_ROWS) {
            const plain = woGemmLaunch(format, tileRows, 2 * inter);
            const gated = woGemmLaunch(format, tileRows, inter, "silu");
            const bm = Number(/_m(\d+)n/.exec(plain.kernel)?.[1]);
            const gateUp = h.filled(m * 2 * inter, dtype, 0xff);
            h.run(
              mod,
              plain.kernel,
              [Math.ceil(m / bm), plain.grid[1]],
              [plain.block],
              [ptr(xd), ...weight.args, bd, ptr(gateUp), ...tail(2 * inter)],
              plain.sharedBytes,
            );
            const want = h.filled(m * inter, dtype, 0xff);
            h.run(act, "gated_act_silu", [64], [256], [ptr(gateUp), ptr(want), i32(m), i32(inter)]);
            const got = h.filled(m * inter, dtype, 0xff);
            h.run(
              mod,
              gated.kernel,
              [Math.ceil(m / bm), gated.grid[1]],
              [gated.block],
              [ptr(xd), ...weight.args, bd, ptr(got), ...tail(inter)],
              gated.sharedBytes,
            );
            assertSameBits(
              h.download(got, m * inter, dtype),
              h.download(want, m * inter, dtype),
              gated.kernel,
            );
          }
        });
});
