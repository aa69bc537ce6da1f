// kernels/activation.cu against gatedAct / act of src/backends/cpu/kernels/activation.ts and the CPU
// backend's elementwise add: every HF activation, every dtype, odd widths (one element per thread)
// and multiples of 8 (16-byte vectors), including the extremes (±large, NaN, −0).
import { after, afterEach, before, describe, it } from "node:test";
import { act, gatedAct } from "../../../src/backends/cpu/kernels/activation.ts";
import type { HiddenAct } from "../../../src/checkpoint/model_config.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import {
  assertWithin,
  DTYPES,
  ELEM_BYTES,
  i32,
  KernelHarness,
  noGpu,
  ptr,
  randn,
  roundTo,
} from "./harness.ts";
import { TOLERANCES } from "./tolerances.ts";

const ACTS: HiddenAct[] = ["silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu"];
const ROWS = 7;
const WIDTHS = [7, 769, 5125, 1024];

/** The CUDA backend's grid: one 16-byte vector per thread of 256, capped. */
function grid(n: number, dtype: DTypeName): number {
  return Math.max(1, Math.min(Math.ceil(n / (256 * (16 / ELEM_BYTES[dtype]))), 65535));
}

/** randn·2 with a few extremes planted at the start. */
function inputs(n: number, seed: number, dtype: DTypeName): Float32Array {
  const x = randn(n, seed, 2);
  const extremes = [-200, 200, Number.NaN, -0, 0, -12, 12, 1e-3];
  for (let i = 0; i < Math.min(extremes.length, n); i++) x[i] = extremes[i];
  return roundTo(x, dtype);
}

describe("activation.cu", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  for (const dtype of DTYPES) {
    for (const inter of WIDTHS) {
      for (const a of ACTS) {
        it(`${a} ${dtype} width ${inter}: gated_act, gated_act2 and act`, () => {
          const mod = h.module("activation.cu", {}, dtype);
          const n = ROWS * inter;
          const gateUp = inputs(2 * n, inter + 1, dtype);
          const want = new Float32Array(n);
          gatedAct(gateUp, ROWS, inter, a, want);
          const scale = new Float64Array(n);
          const gate = new Float32Array(n);
          const up = new Float32Array(n);
          for (let r = 0; r < ROWS; r++) {
            for (let i = 0; i < inter; i++) {
              gate[r * inter + i] = gateUp[r * 2 * inter + i];
              up[r * inter + i] = gateUp[r * 2 * inter + inter + i];
              scale[r * inter + i] = Math.abs(gate[r * inter + i] * up[r * inter + i]);
            }
          }
          const bound = (i: number) => TOLERANCES.gatedAct.bound(dtype, { want: want[i], scale: scale[i] });

          const out = h.filled(n, dtype, 0xff);
          h.run(
            mod,
            `gated_act_${a}`,
            [grid(n, dtype)],
            [256],
            [ptr(h.upload(gateUp, dtype)), ptr(out), i32(ROWS), i32(inter)],
          );
          assertWithin(h.download(out, n, dtype), want, bound, `gated_act_${a}`);

          // Separate gate and up, output over gate (in place).
          const g = h.upload(gate, dtype);
          h.run(
            mod,
            `gated_act2_${a}`,
            [3],
            [64],
            [ptr(g), ptr(h.upload(up, dtype)), ptr(g), i32(ROWS), i32(inter)],
          );
          assertWithin(h.download(g, n, dtype), want, bound, `gated_act2_${a}`);

          // Plain activation over all of gate_up (the scale of act alone is |x|).
          const plain = new Float32Array(2 * n);
          act(gateUp, 2 * n, a, plain);
          const x = h.upload(gateUp, dtype);
          h.run(mod, `act_${a}`, [grid(2 * n, dtype)], [256], [ptr(x), ptr(x), i32(2 * n)]);
          assertWithin(
            h.download(x, 2 * n, dtype),
            plain,
            (i) => TOLERANCES.gatedAct.bound(dtype, { want: plain[i], scale: Math.abs(gateUp[i]) }),
            `act_${a}`,
          );
        });
      }

      it(`bias_add and residual_add ${dtype} width ${inter}`, () => {
        const mod = h.module("activation.cu", {}, dtype);
        const n = ROWS * inter;
        const x = roundTo(randn(n, inter + 5), dtype);
        const bias = roundTo(randn(inter, inter + 6), dtype);
        const y = roundTo(randn(n, inter + 7), dtype);
        const xb = h.upload(x, dtype);
        h.run(
          mod,
          "bias_add",
          [grid(n, dtype)],
          [256],
          [ptr(xb), ptr(h.upload(bias, dtype)), i32(ROWS), i32(inter)],
        );
        const withBias = new Float32Array(n);
        for (let i = 0; i < n; i++) withBias[i] = x[i] + bias[i % inter];
        const gotBias = h.download(xb, n, dtype);
        assertWithin(
          gotBias,
          withBias,
          (i) => TOLERANCES.add.bound(dtype, { want: withBias[i], scale: 0 }),
          "bias_add",
        );

        const out = h.filled(n, dtype, 0xff);
        h.run(
          mod,
          "residual_add",
          [5],
          [128],
          [ptr(out), ptr(h.upload(gotBias, dtype)), ptr(h.upload(y, dtype)), i32(n)],
        );
        const sum = new Float32Array(n);
        for (let i = 0; i < n; i++) sum[i] = gotBias[i] + y[i];
        assertWithin(
          h.download(out, n, dtype),
          sum,
          (i) => TOLERANCES.add.bound(dtype, { want: sum[i], scale: 0 }),
          "residual_add",
        );
      });
    }
  }
});
