// The kernels against Hugging Face transformers / torch themselves: fixtures/hf_kernels.json holds
// inputs and HF's fp32 CPU outputs, written by fixtures/gen_hf_kernels.py (transformers 5.17,
// torch 2.11). Where torch's fp32 math functions (SLEEF pow/exp/cos/sin/tanh, an Abramowitz–Stegun
// erf) or its fp32 summation order differ from ours, the tolerance says so; everything else is exact.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import {
  act,
  applyRope,
  argmax,
  kvCacheWrite,
  layerNorm,
  linear,
  logSoftmax,
  pagedAttention,
  rmsNorm,
  ropeInvFreq,
} from "../../../src/backends/cpu/kernels/index.ts";
import type { HiddenAct, RopeScaling } from "../../../src/checkpoint/model_config.ts";
import { assertClose, assertSame, EPS32 } from "./helpers.ts";

// Every array of numbers in the fixture holds fp32 values (written as the shortest decimal that
// round-trips): load them as Float32Array so they compare bit for bit.
const fx = JSON.parse(readFileSync(new URL("./fixtures/hf_kernels.json", import.meta.url), "utf8"), (_, v) =>
  Array.isArray(v) && v.length > 0 && v.every((e) => typeof e === "number") ? new Float32Array(v) : v,
);
const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

interface RopeCase {
  name: string;
  theta: number;
  headDim: number;
  rotaryDim: number;
  maxPositionEmbeddings: number;
  params: Record<string, number | string>;
  seqLen: number;
  invFreq: Float32Array;
  attentionScaling: number;
  positions: Float32Array;
  numHeads: number;
  x: Float32Array;
  rotated: Float32Array;
}

/** HF rope_parameters → our RopeScaling (for "dynamic", HF reads config.max_position_embeddings). */
function scalingOf(c: RopeCase): RopeScaling {
  const p = c.params;
  switch (p.rope_type) {
    case "linear":
      return { type: "linear", factor: Number(p.factor) };
    case "dynamic":
      return {
        type: "dynamic",
        factor: Number(p.factor),
        originalMaxPositionEmbeddings: c.maxPositionEmbeddings,
      };
    case "llama3":
      return {
        type: "llama3",
        factor: Number(p.factor),
        lowFreqFactor: Number(p.low_freq_factor),
        highFreqFactor: Number(p.high_freq_factor),
        originalMaxPositionEmbeddings: Number(p.original_max_position_embeddings),
      };
    default:
      return { type: "default" };
  }
}

describe("kernels against HF transformers (fp32, CPU)", () => {
  for (const c of fx.rope as RopeCase[]) {
    it(`RoPE ${c.name}: inv_freq and rotation`, () => {
      const { invFreq, attentionScaling } = ropeInvFreq(
        { theta: c.theta, rotaryDim: c.rotaryDim, scaling: scalingOf(c) },
        c.seqLen,
      );
      assert.equal(attentionScaling, c.attentionScaling);
      if (c.params.rope_type === "dynamic" && c.seqLen > c.maxPositionEmbeddings) {
        // The grown base is not a round number, and torch's SLEEF powf then rounds differently from
        // the correctly rounded pow in a few of the values: at most 2 fp32 ulps (2 × 2^-23 relative).
        assertClose(invFreq, c.invFreq, (i) => 2 * EPS32 * c.invFreq[i], "inv_freq");
      } else {
        assertSame(invFreq, c.invFreq, "inv_freq");
      }

      // The rotation, from HF's own inv_freq: torch's fp32 cos/sin (SLEEF, ≤ 1 ulp) differ from the
      // correctly rounded ones in a few percent of angles, which moves an output by ≤ 2 ulps of the
      // pair's magnitude; the products and the sum are the same fp32 ops.
      const x = f32(c.x);
      const n = c.positions.length;
      const positions = new Int32Array(c.positions);
      applyRope(x, n, c.numHeads, c.headDim, c.rotaryDim, positions, f32(c.invFreq), c.attentionScaling);
      const half = c.rotaryDim / 2;
      assertClose(
        x,
        c.rotated,
        (i) => {
          const d = i % c.headDim;
          if (d >= c.rotaryDim) return 0; // pass-through dims are untouched
          const mate = d < half ? i + half : i - half;
          return 4 * EPS32 * (Math.abs(c.x[i]) + Math.abs(c.x[mate]));
        },
        "rotated",
      );
    });
  }

  it("LlamaRMSNorm", () => {
    const r = fx.rmsNorm;
    const out = new Float32Array(r.m * r.d);
    rmsNorm(f32(r.x), f32(r.weight), r.eps, r.m, r.d, out);
    // Same fp32 ops in the same order, except that torch sums the squares in fp32 in its vectorised
    // order and we sum them in double: the variance of a row can differ by an ulp, which moves rstd
    // and then each output by up to ~3 ulps (seen: one row of three, 3 ulps).
    assertClose(out, r.out, (i) => 4 * EPS32 * Math.abs(r.out[i]), "rmsNorm");
  });

  it("torch.nn.LayerNorm", () => {
    const r = fx.layerNorm;
    const out = new Float32Array(r.m * r.d);
    layerNorm(f32(r.x), f32(r.weight), f32(r.bias), r.eps, r.m, r.d, out);
    // torch's fp32 Welford mean/variance may be a few ulps off ours (double), which scales every
    // x * rstd - mean * rstd of the row: bound 8 ulps of (|x| + |mean|) * rstd * |w| + |b|.
    const ref = fx.layerNorm;
    assertClose(
      out,
      ref.out,
      (i) => {
        const row = Math.floor(i / r.d);
        const xs: Float32Array = r.x.slice(row * r.d, (row + 1) * r.d);
        const mean = xs.reduce((a, v) => a + v, 0) / r.d;
        const rstd = 1 / Math.sqrt(xs.reduce((a, v) => a + (v - mean) ** 2, 0) / r.d + r.eps);
        const j = i % r.d;
        return (
          8 *
          EPS32 *
          ((Math.abs(r.x[i]) + Math.abs(mean)) * rstd * Math.abs(r.weight[j]) + Math.abs(r.bias[j]))
        );
      },
      "layerNorm",
    );
  });

  for (const name of ["silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu"] as HiddenAct[]) {
    it(`ACT2FN["${name}"]`, () => {
      const x = f32(fx.activations.x);
      const out = new Float32Array(x.length);
      act(x, x.length, name, out);
      const want: Float32Array = fx.activations[name];
      // torch's SLEEF exp/tanh (≤ 1 ulp) and its Abramowitz–Stegun erf (≤ 1.5e-7 absolute) against
      // our correctly rounded ones: a few ulps of |x|, the scale of the intermediates.
      assertClose(out, want, (i) => 4 * EPS32 * (Math.abs(x[i]) + Math.abs(want[i])), name);
    });
  }

  it("nn.functional.linear", () => {
    const r = fx.linear;
    const out = new Float32Array(r.m * r.n);
    linear(f32(r.x), f32(r.w), f32(r.bias), r.m, r.k, r.n, out);
    // torch sums k products in fp32: worst case k × 2^-24 × Σ|x w| (we sum in double).
    assertClose(
      out,
      r.out,
      (i) => {
        const [row, col] = [Math.floor(i / r.n), i % r.n];
        let scale = Math.abs(r.bias[col]);
        for (let t = 0; t < r.k; t++) scale += Math.abs(r.x[row * r.k + t] * r.w[col * r.k + t]);
        return (r.k + 1) * 2 ** -24 * scale;
      },
      "linear",
    );
  });

  it("eager attention with masking_utils' causal and sliding-window masks", () => {
    const a = fx.attention;
    const shape = { numHeads: a.H, numKvHeads: a.HKV, headDim: a.D };
    // Our convention (attention.ts): position p sees j <= p and j > p - window. HF's mask functions:
    for (let p = 0; p < a.S; p++) {
      for (let j = 0; j < a.S; j++) {
        assert.equal(a.causalAllowed[p][j], j <= p, `causal ${p},${j}`);
        assert.equal(a.window4Allowed[p][j], j <= p && j > p - 4, `window ${p},${j}`);
      }
    }
    const blockSize = 4;
    const blockTable = new Int32Array([2, 0, 1]);
    const kCache = new Float32Array(3 * blockSize * a.HKV * a.D);
    const vCache = new Float32Array(kCache.length);
    const slots = Int32Array.from({ length: a.S }, (_, p) => blockTable[Math.floor(p / 4)] * 4 + (p % 4));
    kvCacheWrite(f32(a.k), f32(a.v), slots, a.S, a.HKV, a.D, kCache, vCache);
    const maxV = a.v.reduce((m: number, v: number) => Math.max(m, Math.abs(v)), 0);
    for (const [key, slidingWindow] of [
      ["causal", null],
      ["window4", 4],
    ] as const) {
      const out = new Float32Array(a.S * a.H * a.D);
      pagedAttention({
        q: f32(a.q),
        kCache,
        vCache,
        blockSize,
        ...shape,
        seqs: [{ queryStart: 0, queryLen: a.S, contextLen: a.S, blockTable }],
        scale: a.scale,
        slidingWindow,
        out,
      });
      // HF's fp32 matmuls, exp and sum against our double: well under 2^-20 max|v| for |score| < 8.
      assertClose(out, a[key], 2 ** -20 * maxV, key);
    }
  });

  it("torch.log_softmax and torch.argmax", () => {
    const r = fx.logSoftmax;
    const out = new Float32Array(r.x.length);
    logSoftmax(f32(r.x), r.x.length, out);
    // torch sums exp in fp32; a few ulps of |x| + |logsumexp|.
    const lse = r.x[0] - r.out[0];
    assertClose(out, r.out, (i) => 4 * EPS32 * (Math.abs(r.x[i]) + Math.abs(lse)), "log_softmax");
    assert.equal(argmax(f32(r.x), r.x.length), r.argmax);
  });
});
