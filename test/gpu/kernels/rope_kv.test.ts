// kernels/rope_kv.cu against the CPU pipeline it fuses: rmsNorm over each head (Qwen3 q_norm/k_norm)
// → applyRope (rope.ts, with ropeInvFreq for each scaling type) → kvCacheWrite (paged_kv.ts). Every
// dtype; full and partial rotary; fused qkv input and separate q/k/v (q rotated in place); padding
// tokens (slot −1) leave the pools untouched; per-token inv_freq rows (dynamic NTK).
import { after, afterEach, before, describe, it } from "node:test";
import { rmsNorm } from "../../../src/backends/cpu/kernels/norm.ts";
import { kvCacheWrite } from "../../../src/backends/cpu/kernels/paged_kv.ts";
import { applyRope, ropeInvFreq } from "../../../src/backends/cpu/kernels/rope.ts";
import type { DevicePtr } from "../../../src/backends/cuda/device/index.ts";
import type { RopeConfig } from "../../../src/checkpoint/model_config.ts";
import {
  assertWithin,
  DTYPES,
  f32,
  i32,
  KernelHarness,
  NULL,
  noGpu,
  ptr,
  randn,
  roundTo,
} from "./harness.ts";
import { TOLERANCES } from "./tolerances.ts";

interface Case {
  name: string;
  H: number;
  Hkv: number;
  D: number;
  rope: RopeConfig;
  qkNorm: boolean;
  /** Per token: the seqLen whose inv_freq row it uses (dynamic NTK); null = one row for all. */
  seqLens: number[] | null;
}

const CASES: Case[] = [
  {
    name: "GQA 7/1, head 128, default",
    H: 7,
    Hkv: 1,
    D: 128,
    rope: { theta: 10000, rotaryDim: 128, scaling: { type: "default" } },
    qkNorm: false,
    seqLens: null,
  },
  {
    name: "partial rotary 34 of 80, llama3 scaling",
    H: 4,
    Hkv: 2,
    D: 80,
    rope: {
      theta: 500000,
      rotaryDim: 34,
      scaling: {
        type: "llama3",
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      },
    },
    qkNorm: false,
    seqLens: null,
  },
  {
    name: "Qwen3-style q/k norm, dynamic NTK rows per token",
    H: 8,
    Hkv: 4,
    D: 128,
    rope: {
      theta: 1000000,
      rotaryDim: 128,
      scaling: { type: "dynamic", factor: 2, originalMaxPositionEmbeddings: 64 },
    },
    qkNorm: true,
    seqLens: [16, 16, 16, 5200, 5200, 5200, 5200],
  },
  {
    name: "head 256, linear scaling",
    H: 2,
    Hkv: 1,
    D: 256,
    rope: { theta: 10000, rotaryDim: 256, scaling: { type: "linear", factor: 4 } },
    qkNorm: false,
    seqLens: null,
  },
];

const POSITIONS = Int32Array.from([0, 1, 2, 17, 769, 4095, 5125]);
const SLOTS = Int32Array.from([5, 6, -1, 23, 0, 11, 2]);
const T = POSITIONS.length;
const NUM_SLOTS = 24; // 6 blocks of 4
const EPS = 1e-6;

describe("rope_kv.cu", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  for (const c of CASES) {
    for (const dtype of DTYPES) {
      for (const fused of [true, false]) {
        it(`${c.name} ${dtype} ${fused ? "rope_qkv_fused" : "rope_qkv (q in place)"}`, () => {
          const { H, Hkv, D } = c;
          const RD = c.rope.rotaryDim;
          const half = RD / 2;
          const W = (H + 2 * Hkv) * D;
          const mod = h.module(
            "rope_kv.cu",
            { NUM_HEADS: H, NUM_KV_HEADS: Hkv, HEAD_DIM: D, ROTARY_DIM: RD },
            dtype,
          );
          const qkv = roundTo(randn(T * W, 7 + D + H), dtype);
          const qNormW = roundTo(randn(D, 8, 0.5, 1), dtype);
          const kNormW = roundTo(randn(D, 9, 0.5, 1), dtype);

          // inv_freq table: one row, or one row per distinct seqLen with each token's index.
          const lens = c.seqLens ?? [1];
          const distinct = [...new Set(lens)];
          const rows = distinct.map((len) => ropeInvFreq(c.rope, len));
          const table = new Float32Array(distinct.length * half);
          rows.forEach((r, i) => table.set(r.invFreq, i * half));
          const index = Int32Array.from({ length: T }, (_, t) =>
            c.seqLens ? distinct.indexOf(c.seqLens[t]) : 0,
          );
          const scaling = rows[0].attentionScaling;

          // Reference: split, per-head norm, RoPE token by token (its row), cache write.
          const q = new Float32Array(T * H * D);
          const k = new Float32Array(T * Hkv * D);
          const v = new Float32Array(T * Hkv * D);
          for (let t = 0; t < T; t++) {
            q.set(qkv.subarray(t * W, t * W + H * D), t * H * D);
            k.set(qkv.subarray(t * W + H * D, t * W + (H + Hkv) * D), t * Hkv * D);
            v.set(qkv.subarray(t * W + (H + Hkv) * D, (t + 1) * W), t * Hkv * D);
          }
          const qRaw = q.slice();
          const kRaw = k.slice();
          if (c.qkNorm) {
            rmsNorm(q, qNormW, EPS, T * H, D, q);
            rmsNorm(k, kNormW, EPS, T * Hkv, D, k);
          }
          const qPre = q.slice();
          const kPre = k.slice();
          for (let t = 0; t < T; t++) {
            const r = rows[index[t]];
            applyRope(
              q.subarray(t * H * D, (t + 1) * H * D),
              1,
              H,
              D,
              RD,
              POSITIONS.subarray(t, t + 1),
              r.invFreq,
              scaling,
            );
            applyRope(
              k.subarray(t * Hkv * D, (t + 1) * Hkv * D),
              1,
              Hkv,
              D,
              RD,
              POSITIONS.subarray(t, t + 1),
              r.invFreq,
              scaling,
            );
          }
          const poolLen = NUM_SLOTS * Hkv * D;
          const kWant = new Float32Array(poolLen).fill(Number.NaN);
          const vWant = new Float32Array(poolLen).fill(Number.NaN);
          kvCacheWrite(k, v, SLOTS, T, Hkv, D, kWant, vWant);

          // Kernel: pools start as NaN (all bytes 0xff) so a stray or missing write shows.
          const kCache = h.filled(poolLen, dtype, 0xff);
          const vCache = h.filled(poolLen, dtype, 0xff);
          const common = [
            ptr(h.raw(POSITIONS)),
            ptr(h.raw(SLOTS)),
            ptr(h.raw(table)),
            c.seqLens ? ptr(h.raw(index)) : NULL,
            f32(scaling),
            c.qkNorm ? ptr(h.upload(qNormW, dtype)) : NULL,
            c.qkNorm ? ptr(h.upload(kNormW, dtype)) : NULL,
            f32(EPS),
          ];
          const grid: [number, number] = [T, Math.ceil((H + 2 * Hkv) / 4)];
          let qDst: DevicePtr;
          if (fused) {
            qDst = h.filled(T * H * D, dtype, 0xff);
            h.run(
              mod,
              "rope_qkv_fused",
              grid,
              [128],
              [
                ptr(h.upload(qkv, dtype)),
                ...common,
                ptr(qDst),
                ptr(kCache),
                ptr(vCache),
                i32(T),
                i32(NUM_SLOTS),
                i32(1), // early_trigger: a no-op without PDL; the backend's decode steps cover it with PDL
              ],
            );
          } else {
            const qIn = h.upload(qRaw, dtype);
            const kIn = h.upload(kRaw, dtype);
            const vIn = h.upload(v, dtype);
            qDst = qIn;
            h.run(
              mod,
              "rope_qkv",
              grid,
              [128],
              [
                ptr(qIn),
                ptr(kIn),
                ptr(vIn),
                ...common,
                ptr(qIn),
                ptr(kCache),
                ptr(vCache),
                i32(T),
                i32(NUM_SLOTS),
                i32(0), // early_trigger
              ],
            );
          }

          // Tolerance scale: |x_i| + |x_{i+half}| of the element's rotary pair before RoPE; |x| for
          // pass-through dims (exact in fp32 without a norm; the norm's roundings in T).
          const pairScale = (pre: Float32Array, i: number) => {
            const d = i % D;
            const base = i - d;
            if (d >= RD) return Math.abs(pre[i]);
            const j = d < half ? d : d - half;
            return Math.abs(pre[base + j]) + Math.abs(pre[base + j + half]);
          };
          const gotQ = h.download(qDst, T * H * D, dtype);
          assertWithin(
            gotQ,
            q,
            (i) => TOLERANCES.rope.bound(dtype, { want: q[i], scale: pairScale(qPre, i) }),
            "q",
          );

          // k pool: slot s holds token t's rotated k; compare against the reference pool.
          const kScale = new Float64Array(poolLen);
          SLOTS.forEach((s, t) => {
            if (s < 0) return;
            for (let i = 0; i < Hkv * D; i++) kScale[s * Hkv * D + i] = pairScale(kPre, t * Hkv * D + i);
          });
          assertWithin(
            h.download(kCache, poolLen, dtype),
            kWant,
            (i) => TOLERANCES.rope.bound(dtype, { want: kWant[i], scale: kScale[i] }),
            "k cache",
          );
          assertWithin(h.download(vCache, poolLen, dtype), vWant, () => 0, "v cache");
        });
      }
    }
  }
});
