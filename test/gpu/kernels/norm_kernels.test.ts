// kernels/rmsnorm.cu and kernels/layernorm.cu against rmsNorm / addRmsNorm / layerNorm of
// src/backends/cpu/kernels/norm.ts: every dtype, odd widths (scalar path) and multiples of 8 (16-byte
// vector path), the recommended block and a small one (the kernels loop over any block).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { layerNorm, rmsNorm } from "../../../src/backends/cpu/kernels/norm.ts";
import type { DevicePtr } from "../../../src/backends/cuda/device/index.ts";
import {
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
import { TOLERANCES } from "./tolerances.ts";

const ROWS = 7;
const WIDTHS = [7, 769, 5125, 128, 4096];

describe("rmsnorm.cu", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  for (const dtype of DTYPES) {
    for (const width of WIDTHS) {
      it(`rms_norm ${dtype} width ${width}`, () => {
        const mod = h.module("rmsnorm.cu", { WIDTH: width }, dtype);
        const n = ROWS * width;
        const x = roundTo(randn(n, 11 + width, 3, 0.25), dtype);
        const w = roundTo(randn(width, 12 + width), dtype);
        const eps = 1e-5;
        const want = new Float32Array(n);
        rmsNorm(x, w, eps, ROWS, width, want);
        for (const block of [normBlock(width, dtype), 64]) {
          const out = h.filled(n, dtype, 0xff);
          const xd = h.upload(x, dtype);
          h.run(
            mod,
            "rms_norm",
            [ROWS],
            [block],
            [ptr(xd), ptr(h.upload(w, dtype)), ptr(out), f32(eps), i32(ROWS)],
          );
          const got = h.download(out, n, dtype);
          assertWithin(
            got,
            want,
            (i) => TOLERANCES.rmsNorm.bound(dtype, { want: want[i], scale: 0 }),
            `block ${block}`,
          );
          // In place (out = x) gives the same values.
          h.run(
            mod,
            "rms_norm",
            [ROWS],
            [block],
            [ptr(xd), ptr(h.upload(w, dtype)), ptr(xd), f32(eps), i32(ROWS)],
          );
          assert.deepEqual(h.download(xd, n, dtype), got, "in place");
        }
      });

      it(`add_rms_norm ${dtype} width ${width}: in place, and to another buffer alike`, () => {
        const mod = h.module("rmsnorm.cu", { WIDTH: width }, dtype);
        const n = ROWS * width;
        const residual = roundTo(randn(n, 21 + width), dtype);
        const x = roundTo(randn(n, 22 + width), dtype);
        const w = roundTo(randn(width, 23 + width), dtype);
        const eps = 1e-6;
        const [xd, wd] = [h.upload(x, dtype), h.upload(w, dtype)];
        const run = (rin: DevicePtr, rout: DevicePtr, out: DevicePtr) =>
          h.run(
            mod,
            "add_rms_norm",
            [ROWS],
            [normBlock(width, dtype)],
            [ptr(rin), ptr(xd), ptr(wd), ptr(out), ptr(rout), f32(eps), i32(ROWS)],
          );
        const rd = h.upload(residual, dtype);
        const out = h.filled(n, dtype, 0xff);
        run(rd, rd, out);
        const apartIn = h.upload(residual, dtype);
        const apartOut = h.filled(n, dtype, 0xff);
        const out2 = h.filled(n, dtype, 0xff);
        run(apartIn, apartOut, out2);
        assert.deepEqual(
          h.download(apartOut, n, dtype),
          h.download(rd, n, dtype),
          "residual sum, out of place",
        );
        assert.deepEqual(h.download(apartIn, n, dtype), residual, "the input residual is left as it was");
        assert.deepEqual(h.download(out2, n, dtype), h.download(out, n, dtype), "normalised, out of place");
        // The residual is the fp32 sum rounded to T (TOLERANCES.add) …
        const sum = new Float32Array(n);
        for (let i = 0; i < n; i++) sum[i] = residual[i] + x[i];
        const gotResidual = h.download(rd, n, dtype);
        assertWithin(
          gotResidual,
          sum,
          (i) => TOLERANCES.add.bound(dtype, { want: sum[i], scale: 0 }),
          "residual",
        );
        // … and out is the norm of the residual as stored (HF normalises the T residual).
        const want = new Float32Array(n);
        rmsNorm(gotResidual, w, eps, ROWS, width, want);
        const got = h.download(out, n, dtype);
        assertWithin(got, want, (i) => TOLERANCES.rmsNorm.bound(dtype, { want: want[i], scale: 0 }), "out");
      });
    }
  }
});

describe("layernorm.cu", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** (|x| + |mean|)·rstd·|w| + |b| per element: the magnitude the fp32 roundings scale with. */
  function scales(
    x: Float32Array,
    w: Float32Array | null,
    b: Float32Array | null,
    width: number,
    eps: number,
  ): Float64Array {
    const s = new Float64Array(x.length);
    for (let r = 0; r < ROWS; r++) {
      let mean = 0;
      for (let i = 0; i < width; i++) mean += x[r * width + i];
      mean /= width;
      let v = 0;
      for (let i = 0; i < width; i++) v += (x[r * width + i] - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / width + eps);
      for (let i = 0; i < width; i++) {
        s[r * width + i] =
          (Math.abs(x[r * width + i]) + Math.abs(mean)) * rstd * (w ? Math.abs(w[i]) : 1) +
          (b ? Math.abs(b[i]) : 0) +
          1;
      }
    }
    return s;
  }

  for (const dtype of DTYPES) {
    for (const width of WIDTHS) {
      for (const affine of [true, false]) {
        it(`layer_norm ${dtype} width ${width}${affine ? "" : " (no weight, no bias)"}`, () => {
          const mod = h.module("layernorm.cu", { WIDTH: width }, dtype);
          const n = ROWS * width;
          const x = roundTo(randn(n, 31 + width, 2, 1.5), dtype);
          const w = affine ? roundTo(randn(width, 32 + width), dtype) : null;
          const b = affine ? roundTo(randn(width, 33 + width), dtype) : null;
          const eps = 1e-5;
          const want = new Float32Array(n);
          layerNorm(x, w, b, eps, ROWS, width, want);
          const out = h.filled(n, dtype, 0xff);
          h.run(
            mod,
            "layer_norm",
            [ROWS],
            [normBlock(width, dtype)],
            [
              ptr(h.upload(x, dtype)),
              w ? ptr(h.upload(w, dtype)) : NULL,
              b ? ptr(h.upload(b, dtype)) : NULL,
              ptr(out),
              f32(eps),
              i32(ROWS),
            ],
          );
          const s = scales(x, w, b, width, eps);
          const got = h.download(out, n, dtype);
          assertWithin(
            got,
            want,
            (i) => TOLERANCES.layerNorm.bound(dtype, { want: want[i], scale: s[i] }),
            "out",
          );
        });
      }

      it(`add_layer_norm ${dtype} width ${width}`, () => {
        const mod = h.module("layernorm.cu", { WIDTH: width }, dtype);
        const n = ROWS * width;
        const residual = roundTo(randn(n, 41 + width), dtype);
        const x = roundTo(randn(n, 42 + width), dtype);
        const w = roundTo(randn(width, 43 + width), dtype);
        const b = roundTo(randn(width, 44 + width), dtype);
        const eps = 1e-5;
        const rd = h.upload(residual, dtype);
        const out = h.filled(n, dtype, 0xff);
        h.run(
          mod,
          "add_layer_norm",
          [ROWS],
          [64],
          [
            ptr(rd),
            ptr(h.upload(x, dtype)),
            ptr(h.upload(w, dtype)),
            ptr(h.upload(b, dtype)),
            ptr(out),
            f32(eps),
            i32(ROWS),
          ],
        );
        const sum = new Float32Array(n);
        for (let i = 0; i < n; i++) sum[i] = residual[i] + x[i];
        const gotResidual = h.download(rd, n, dtype);
        assertWithin(
          gotResidual,
          sum,
          (i) => TOLERANCES.add.bound(dtype, { want: sum[i], scale: 0 }),
          "residual",
        );
        const want = new Float32Array(n);
        layerNorm(gotResidual, w, b, eps, ROWS, width, want);
        const s = scales(gotResidual, w, b, width, eps);
        const got = h.download(out, n, dtype);
        assertWithin(
          got,
          want,
          (i) => TOLERANCES.layerNorm.bound(dtype, { want: want[i], scale: s[i] }),
          "out",
        );
      });
    }
  }
});
