// QuantizedLinears' gemm_wo launches (src/backends/cuda/quantized_linears.ts), on the CPU through a
// recording stand-in for the kernel launcher: the kernel, grid, block and shared memory woGemmLaunch
// gives, the arguments in gemm_wo.cu's order (n = inter for the gated kernel, int4-zp's zeros and group
// size), the tile kept at half the SMs' CTAs or more, and prepareGemm opting every tile's kernel in to
// its shared memory before any graph capture.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { CudaDevice, DevicePtr, KernelArg } from "../../../src/backends/cuda/device/index.ts";
import { woGemmKernels, woGemmLaunch } from "../../../src/backends/cuda/gemm_wo_variants.ts";
import type { KernelLauncher } from "../../../src/backends/cuda/kernel_launcher.ts";
import { QuantizedLinears } from "../../../src/backends/cuda/quantized_linears.ts";
import type { DeviceWeights, QuantizedWeight } from "../../../src/backends/cuda/weights.ts";

interface Launch {
  mod: string;
  kernel: string;
  grid: number[];
  block: number;
  args: KernelArg[];
  sharedBytes: number;
}

/** QuantizedLinears over a launcher that records its calls (no quantized weight: no scratch, no device
 * but its SM count; 0: the tile by the rows alone). */
function recording(smCount = 0) {
  const launches: Launch[] = [];
  const reserved: [string, string, number][] = [];
  const kernels = {
    launch: (
      mod: string,
      kernel: string,
      grid: number[],
      block: number,
      args: KernelArg[],
      sharedBytes = 0,
    ) => launches.push({ mod, kernel, grid, block, args, sharedBytes }),
    reserveSharedMemory: (mod: string, kernel: string, bytes: number) => reserved.push([mod, kernel, bytes]),
  } as unknown as KernelLauncher;
  const weights = { allQuantized: [] } as unknown as DeviceWeights;
  const q = QuantizedLinears.allocate({ smCount } as CudaDevice, kernels, weights, "bf16");
  return { q, launches, reserved };
}

const p = (v: number) => BigInt(v) as DevicePtr;
const intWo: QuantizedWeight = { format: "int4-wo", rows: 2 * 14336, cols: 4096, q: p(1), scales: p(2) };
const zp: QuantizedWeight = {
  format: "int4-zp",
  rows: 4096,
  cols: 14336,
  q: p(1),
  scales: p(2),
  zp: { zeros: p(3), gIdx: null, groupSize: 128, zerosExact: true },
};
const args = { x: p(10), bias: null, y: p(11), rows: 100 };

describe("QuantizedLinears gemm_wo launches", () => {
  test("int-wo: woGemmLaunch's shape, arguments x, q, scales, bias, y, m, n, k", () => {
    const { q, launches } = recording();
    q.gemm(intWo, args);
    const l = woGemmLaunch(4, 100, 2 * 14336);
    assert.deepEqual(launches, [
      {
        mod: "gemm_wo",
        kernel: l.kernel,
        grid: l.grid,
        block: 128,
        sharedBytes: l.sharedBytes,
        args: [
          { ptr: p(10) },
          { ptr: p(1) },
          { ptr: p(2) },
          { ptr: p(0) },
          { ptr: p(11) },
          { i32: 100 },
          { i32: 2 * 14336 },
          { i32: 4096 },
        ],
      },
    ]);
  });

  test("gated: the gate_up weight's inter = rows / 2 output features", () => {
    const { q, launches } = recording();
    q.gemm(intWo, { ...args, rows: 16 }, "silu");
    assert.equal(launches[0].kernel, "gemm_wo4_m16n64_gated_silu");
    assert.deepEqual(launches[0].grid, [1, 14336 / 32]);
    assert.deepEqual(launches[0].args.slice(5), [{ i32: 16 }, { i32: 14336 }, { i32: 4096 }]);
  });

  test("int4-zp: gemm_zp with the zeros after the scales and the group size last", () => {
    const { q, launches } = recording();
    q.gemm(zp, { ...args, bias: p(12) });
    assert.equal(launches[0].kernel, "gemm_zp_m64n128");
    assert.deepEqual(launches[0].args, [
      { ptr: p(10) },
      { ptr: p(1) },
      { ptr: p(2) },
      { ptr: p(3) },
      { ptr: p(12) },
      { ptr: p(11) },
      { i32: 100 },
      { i32: 4096 },
      { i32: 14336 },
      { i32: 128 },
    ]);
  });

  test("on a GPU of 132 SMs, a grid under 66 CTAs takes the next smaller tile", () => {
    const { q, launches } = recording(132);
    q.gemm(zp, args); // n 4,096 at 100 rows: 2 × 32 CTAs on the 64-row tile, 4 × 64 on the 32-row one
    q.gemm(intWo, args, "silu"); // inter 14,336: 2 × 224 CTAs, kept
    assert.deepEqual(
      launches.map((l) => [l.kernel, l.grid, l.sharedBytes]),
      [
        ["gemm_zp_m32n64", [4, 64], woGemmLaunch("zp", 32, 4096).sharedBytes],
        ["gemm_wo4_m64n128_gated_silu", [2, 224], woGemmLaunch(4, 100, 14336, "silu").sharedBytes],
      ],
    );
  });

  test("prepareGemm opts every tile's kernel of the weight in to its shared memory", () => {
    const { q, reserved } = recording();
    q.prepareGemm(intWo, "silu");
    q.prepareGemm(zp);
    assert.deepEqual(reserved, [
      ...woGemmKernels(4, "silu").map((k) => ["gemm_wo", k.kernel, k.sharedBytes]),
      ...woGemmKernels("zp").map((k) => ["gemm_wo", k.kernel, k.sharedBytes]),
    ]);
    assert.deepEqual(
      reserved.map(([, k]) => k),
      [
        "gemm_wo4_m16n64_gated_silu",
        "gemm_wo4_m32n64_gated_silu",
        "gemm_wo4_m64n128_gated_silu",
        "gemm_zp_m16n64",
        "gemm_zp_m32n64",
        "gemm_zp_m64n128",
      ],
    );
    assert.ok(
      reserved.every(([, , b]) => b > 48 * 1024),
      "each above the default 48 KiB",
    );
  });
});
