// kernels/rmsnorm.cu's fused fp8 entries (rms_norm_q8, add_rms_norm_q8: the norms of an fp8 engine that
// quantize their output for the fp8 linears reading it, src/backends/cuda/norm_quant.ts) against the two
// launches they replace: rms_norm / add_rms_norm, then gemv_fp8.cu's quant_fp8_act over the stored
// output. Bit for bit, every byte: out, residual_out, the E4M3 codes xq, the scales s and x̂ (the bits
// GEMV's input), each buffer of the two runs filled with a different byte first, so an element either
// leaves unwritten differs, and nothing written past the rows (the fills kept there). quant_fp8_act itself
// is checked against the fp8 format in gemv_fp8.test.ts.
// Every dtype; widths 4096 (one vector a thread: the register path), 264 (not a multiple of 16, so no x̂;
// a partial last warp), 272 (17 vectors of 16), 14336 (past 1,024 threads' vectors in fp32, and at the
// 64-thread block in every dtype: the loop path, then the stored row quantized); dynamic scales and two
// static ones (0.002 saturates much of a row at ±448); 7 rows, one of them zero; the launch's block
// (launch_geometry.ts normBlock) and 64 threads.
import { after, afterEach, before, describe, it } from "node:test";
import type { KernelArg } from "../../../src/backends/cuda/device/index.ts";
import { fp8QuantLaunch } from "../../../src/backends/cuda/fp8_variants.ts";
import { normBlock } from "../../../src/backends/cuda/launch_geometry.ts";
import { type DTypeName, ELEMENT_BYTES } from "../../../src/dtype.ts";
import {
  assertSameBits,
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

const ROWS = 7;
const WIDTHS = [4096, 264, 272, 14336];
/** Extra elements past each output, which must keep their fill. */
const TAIL = 16;

/** [ROWS, width] in `dtype`: rows of magnitudes 2^-6 … 2^6, row 1 zero. */
function rows(width: number, dtype: DTypeName, seed: number): Float32Array {
  const x = randn(ROWS * width, seed);
  for (let r = 0; r < ROWS; r++) for (let c = 0; c < width; c++) x[r * width + c] *= 2 ** (2 * r - 6);
  x.fill(0, width, 2 * width);
  return roundTo(x, dtype);
}

describe("rmsnorm.cu rms_norm_q8 / add_rms_norm_q8: the norm then quant_fp8_act, bit for bit", {
  skip: noGpu,
}, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** The outputs of one run, every byte of them (and TAIL elements past each) filled with `fill`. */
  function outputs(width: number, dtype: DTypeName, fill: number) {
    const n = ROWS * width;
    const bytes = (count: number) => h.raw(new Uint8Array(count).fill(fill));
    return {
      out: bytes((n + TAIL) * ELEMENT_BYTES[dtype]),
      residual: bytes((n + TAIL) * ELEMENT_BYTES[dtype]),
      xq: bytes(n + TAIL),
      s: bytes((ROWS + TAIL) * 4),
      xhat: bytes((n + TAIL) * 4),
    };
  }
  type Outputs = ReturnType<typeof outputs>;

  /** Every output's bytes, as stored. */
  function read(o: Outputs, width: number, dtype: DTypeName) {
    const n = ROWS * width;
    const e = ELEMENT_BYTES[dtype];
    return {
      out: h.downloadBytes(o.out, (n + TAIL) * e),
      residual: h.downloadBytes(o.residual, (n + TAIL) * e),
      xq: h.downloadBytes(o.xq, n + TAIL),
      s: h.downloadBytes(o.s, (ROWS + TAIL) * 4),
      xhat: h.downloadBytes(o.xhat, (n + TAIL) * 4),
    };
  }

  for (const dtype of DTYPES) {
    for (const width of WIDTHS) {
      for (const add of [false, true]) {
        const name = add ? "add_rms_norm" : "rms_norm";
        it(`${name}_q8 ${dtype} width ${width}`, () => {
          const norm = h.module("rmsnorm.cu", { WIDTH: width }, dtype);
          const quant = h.module("gemv_fp8.cu", {}, dtype);
          const residual = h.upload(rows(width, dtype, 31 + width), dtype);
          const x = h.upload(rows(width, dtype, 32 + width), dtype);
          const w = h.upload(roundTo(randn(width, 33 + width), dtype), dtype);
          const eps = 1e-5;
          const withXhat = width % 16 === 0 ? [false, true] : [false]; // x̂ is laid out in 16-feature vectors
          const e = ELEMENT_BYTES[dtype];
          const n = ROWS * width;
          for (const block of [normBlock(width, e), 64])
            for (const fixed of [undefined, 0.002, 0.05])
              for (const xhat of withXhat) {
                const kind = fixed === undefined ? "dynamic" : `static ${fixed}`;
                const what = `block ${block} ${kind}${xhat ? " x̂" : ""}`;
                const scale = fixed === undefined ? NULL : ptr(h.raw(Float32Array.of(fixed)));
                const norms = (o: Outputs): KernelArg[] =>
                  add
                    ? [ptr(residual), ptr(x), ptr(w), ptr(o.out), ptr(o.residual)]
                    : [ptr(x), ptr(w), ptr(o.out)];
                const q8 = (o: Outputs): KernelArg[] => [
                  ptr(o.xq),
                  ptr(o.s),
                  scale,
                  xhat ? ptr(o.xhat) : NULL,
                ];
                // The pair of launches an unfused step runs …
                const want = outputs(width, dtype, 0xa5);
                h.run(norm, name, [ROWS], [block], [...norms(want), f32(eps), i32(ROWS)]);
                const l = fp8QuantLaunch(ROWS, width, e);
                h.run(
                  quant,
                  l.kernel,
                  [l.grid],
                  [l.block],
                  [ptr(want.out), ...q8(want), i32(ROWS), i32(width)],
                );
                // … and the fused kernel.
                const got = outputs(width, dtype, 0x5a);
                h.run(norm, `${name}_q8`, [ROWS], [block], [...norms(got), ...q8(got), f32(eps), i32(ROWS)]);
                const [a, b] = [read(got, width, dtype), read(want, width, dtype)];
                // The first `count` elements of `bytes` each the same; every byte after them its fill.
                const same = (k: keyof typeof a, count: number, bytes: number) => {
                  const end = count * bytes;
                  assertSameBits(a[k].subarray(0, end), b[k].subarray(0, end), `${what}: ${k}`);
                  const rest = (fill: number) => new Uint8Array(a[k].length - end).fill(fill);
                  assertSameBits(a[k].subarray(end), rest(0x5a), `${what}: past ${k}`);
                  assertSameBits(b[k].subarray(end), rest(0xa5), `${what}: the pair, past ${k}`);
                };
                same("out", n, e);
                same("residual", add ? n : 0, e);
                same("xq", n, 1);
                same("s", ROWS, 4);
                same("xhat", xhat ? n : 0, 4);
              }
        });
      }
    }
  }
});
