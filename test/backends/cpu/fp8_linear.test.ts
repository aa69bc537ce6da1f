// The CPU backend's linear with an fp8 weight (engine/fp8_format.ts): the weight dequantized at load and
// the input quantized per token (dynamic) or by the region's static input scale, before the product.
// A hand-computed case, a random case against an independent E4M3 rounding, and an unquantized linear
// that stays exact.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CpuBackend } from "../../../src/backends/cpu/cpu_backend.ts";
import { quantizeFp8 } from "../../../src/builder/passes/quantize_fp8.ts";
import type { Plan, WeightEntry } from "../../../src/engine/format.ts";
import type { LoadedEngine } from "../../../src/engine/reader.ts";
import type { WeightFormatParams } from "../../../src/engine/weight_format.ts";
import { randn } from "./helpers.ts";

interface Tensor {
  shape: number[];
  bytes: Uint8Array;
  format?: "fp8";
  params?: WeightFormatParams;
}

const f32Bytes = (values: number[] | Float32Array) => new Uint8Array(Float32Array.from(values).buffer);

/** An in-memory engine of one plan: x = embedding(ids) [T, k], y = x · wᵀ + b [T, n]. */
function engineOf(k: number, n: number, tensors: Record<string, Tensor>): LoadedEngine {
  const plan: Plan = {
    ops: [
      { kind: "embedding", out: "x", width: k, weight: "emb" },
      { kind: "linear", x: "x", out: "y", inFeatures: k, outFeatures: n, weight: "w", bias: "b" },
    ],
    output: "y",
  };
  let offset = 0;
  const regions = new Map<number, Uint8Array>();
  const weights: WeightEntry[] = Object.entries(tensors).map(([name, t]) => {
    regions.set(offset, t.bytes);
    const entry: WeightEntry = { name, dtype: "F32", shape: t.shape, offset, byteLength: t.bytes.length };
    if (t.format) Object.assign(entry, { format: t.format, params: t.params });
    offset += t.bytes.length;
    return entry;
  });
  return {
    config: { model: { vocabSize: 2, numLayers: 0, numKvHeads: 1, headDim: 1 }, build: { kvBlockSize: 1 } },
    header: { plan, weights },
    readWeight: (e: { offset: number }) => regions.get(e.offset),
  } as unknown as LoadedEngine;
}

/** y [T, n] for token ids 0..T-1 (rows of `emb`). */
function run(engine: LoadedEngine, T: number): Float32Array {
  const backend = CpuBackend.fromEngine(engine);
  const rows = Int32Array.from({ length: T }, (_, i) => i);
  return backend.forward({ tokenIds: rows, positions: rows, slotMapping: rows, seqs: [], logitRows: rows });
}

/** The fp8 region of hand-picked E4M3 codes, row scales and (static) input scale. */
function region(codes: number[], scales: number[], inputScale?: number): Uint8Array {
  return new Uint8Array([...codes, ...f32Bytes(inputScale === undefined ? scales : [...scales, inputScale])]);
}

// x rows: [3.5, 0.3, -1.1, 0] and [0.007, -0.875, 0.0625, 0.04]; w (codes × row scale):
// row 0: 1, -1.5, 0.5, 2 (0x38 0xbc 0x30 0x40) × 0.5;  row 1: 3, 0, -3, 0.25 (0x44 0x00 0xc4 0x28) × 2.
const X = [3.5, 0.3, -1.1, 0, 0.007, -0.875, 0.0625, 0.04];
const CODES = [0x38, 0xbc, 0x30, 0x40, 0x44, 0x00, 0xc4, 0x28];
const W = [0.5, -0.75, 0.25, 1, 6, 0, -6, 0.5]; // the dequantized weight
const B = [0.5, -1];

function handEngine(inputScale?: number): LoadedEngine {
  return engineOf(4, 2, {
    emb: { shape: [2, 4], bytes: f32Bytes(X) },
    w: {
      shape: [2, 4],
      bytes: region(CODES, [0.5, 2], inputScale),
      format: "fp8",
      params: { activation: inputScale === undefined ? "dynamic" : "static" },
    },
    b: { shape: [2], bytes: f32Bytes(B) },
  });
}

/** x̂ · Wᵀ + B in double, for x̂ [2, 4]. */
function product(xq: number[]): number[] {
  const out: number[] = [];
  for (let r = 0; r < 2; r++)
    for (let j = 0; j < 2; j++) {
      let s = B[j];
      for (let t = 0; t < 4; t++) s += xq[r * 4 + t] * W[j * 4 + t];
      out.push(s);
    }
  return out;
}

describe("CPU linear with an fp8 weight", () => {
  test("dynamic: each token's input scaled by max|x| / 448 and rounded to E4M3 (by hand)", () => {
    // Row 0: s = 3.5 / 448 = 2^-7; x / s = 448, 38.4 → 40, -140.8 → -144, 0 (steps of 4 and 16 there).
    // Row 1: s = 0.875 / 448 = 2^-9; x / s = 3.584 → 3.5, -448, 32, 20.48 → 20 (steps of 0.25 and 2).
    const xq = [3.5, 40 / 128, -144 / 128, 0, 3.5 / 512, -0.875, 0.0625, 20 / 512];
    assert.deepEqual([...run(handEngine(), 2)], [1.734375, 26.75, 1.21435546875, -1.314453125]);
    assert.deepEqual([...run(handEngine(), 2)], product(xq));
  });

  test("static: the region's input scale for every token, saturating at ±448 × scale (by hand)", () => {
    // s = 2^-8. Row 0: x / s = 896 → 448 (saturated: 3.5 becomes 1.75), 76.8 → 80, -281.6 → -288, 0.
    // Row 1: x / s = 1.792 → 1.75, -224, 16, 10.24 → 10: the same x̂ as dynamic's 2^-9 here.
    const xq = [1.75, 80 / 256, -288 / 256, 0, 1.75 / 256, -0.875, 0.0625, 10 / 256];
    const got = [...run(handEngine(2 ** -8), 2)];
    assert.deepEqual(got, [0.859375, 16.25, 1.21435546875, -1.314453125]);
    assert.deepEqual(got, product(xq));
  });

  test("random sizes: equals the format computed here with a brute-force E4M3 rounding", () => {
    const [T, k, n] = [3, 37, 5];
    const x = randn(T * k, 11);
    x[5] = 40; // an outlier: the rest of its row lands on small E4M3 steps and subnormals
    const w = randn(n * k, 12, 0.1);
    const fp8 = quantizeFp8(w, [n, k]);
    const scales = new Float32Array(fp8.slice(n * k).buffer);
    const wq = Array.from({ length: n * k }, (_, i) => nearestE4m3(fp8[i]) * scales[Math.floor(i / k)]);
    for (const inputScale of [undefined, 0.01]) {
      const tensors: Record<string, Tensor> = {
        emb: { shape: [T, k], bytes: f32Bytes(x) },
        w: {
          shape: [n, k],
          bytes: inputScale === undefined ? fp8 : new Uint8Array([...fp8, ...f32Bytes([inputScale])]),
          format: "fp8",
          params: { activation: inputScale === undefined ? "dynamic" : "static" },
        },
        b: { shape: [n], bytes: f32Bytes(new Float32Array(n)) },
      };
      const got = run(engineOf(k, n, tensors), T);
      for (let r = 0; r < T; r++) {
        const row = x.subarray(r * k, (r + 1) * k);
        const s = inputScale ?? Math.fround(Math.max(...row.map(Math.abs)) / 448);
        const xq = [...row].map((v) => Math.fround(roundE4m3(Math.fround(v / s)) * s));
        for (let j = 0; j < n; j++) {
          let want = 0;
          let mag = 0;
          for (let t = 0; t < k; t++) {
            want += xq[t] * wq[j * k + t];
            mag += Math.abs(xq[t] * wq[j * k + t]);
          }
          // Same products, another summation order, one fp32 rounding: a few ulps of Σ|x̂ w|.
          const tol = 4 * 2 ** -24 * mag;
          assert.ok(
            Math.abs(got[r * n + j] - want) <= tol,
            `${inputScale} [${r},${j}] ${got[r * n + j]} ${want}`,
          );
        }
      }
    }
  });

  test("a plain weight's input is not quantized", () => {
    const e = engineOf(4, 2, {
      emb: { shape: [2, 4], bytes: f32Bytes(X) },
      w: { shape: [2, 4], bytes: f32Bytes(W) },
      b: { shape: [2], bytes: f32Bytes(B) },
    });
    assert.deepEqual([...run(e, 2)], product(X.map(Math.fround)).map(Math.fround));
  });
});

/** Every finite non-negative E4M3 value, by code (0x00..0x7e), from the format's definition. */
const E4M3_VALUES = Array.from({ length: 0x7f }, (_, c) =>
  c < 8 ? c * 2 ** -9 : (1 + (c & 7) / 8) * 2 ** ((c >> 3) - 7),
);

/** The value of a code byte. */
function nearestE4m3(code: number): number {
  const v = E4M3_VALUES[code & 0x7f];
  return code & 0x80 ? -v : v;
}

/** v rounded to the nearest E4M3 value (ties to the even code), saturating at ±448. */
function roundE4m3(v: number): number {
  const a = Math.min(Math.abs(v), 448);
  let best = 0;
  for (let c = 1; c < E4M3_VALUES.length; c++) {
    const d = Math.abs(E4M3_VALUES[c] - a) - Math.abs(E4M3_VALUES[best] - a);
    if (d < 0 || (d === 0 && c % 2 === 0)) best = c;
  }
  return Math.sign(v) * E4M3_VALUES[best];
}
