// Linears over weight-only quantized weights (int8-wo, int4-wo; int4-zp from AWQ / GPTQ) on the GPU:
// decode steps run kernels/gemv_wo.cu's GEMV (gemv_zp.cu's for int4-zp) over the quantized bytes, larger
// batches up to KILN_WO_GEMM_MAX_M rows gemm_wo.cu's tensor-core GEMM, also over the quantized bytes
// (the step launcher decides which: linear_route.ts); every other step dequantizes the weight into a
// scratch buffer of the engine dtype (dequant_woB, dequant_zp) and hands it to the same cuBLASLt GEMM an
// unquantized weight would use.
//
// One scratch serves every linear: a step's kernels run in stream order and dequant_woB waits for the
// kernel before it (PDL: pdl.cuh), so the next dequantization never overwrites a weight a GEMM still
// reads. It holds the largest quantized weight in the engine dtype (the 8B's gate_up: 28672 × 4096 ×
// 2 bytes), allocated with the backend and freed by dispose(), before KV sizing reads free memory.
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import { type CudaDevice, DeviceBuffer, type DevicePtr, type KernelArg } from "./device/index.ts";
import { woGemmKernels, woGemmLaunch, zpGemmTakes } from "./gemm_wo_variants.ts";
import {
  dequantLaunch,
  dequantScratchBytes,
  woBits,
  woGemvGatedLaunch,
  woGemvLaunch,
} from "./gemv_wo_variants.ts";
import { zpDequantLaunch, zpGemvGatedLaunch, zpGemvLaunch, zpGemvTakes } from "./gemv_zp_variants.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import type { DeviceWeights, QuantizedWeight } from "./weights.ts";

/** Dynamic shared memory a kernel may take without opting in. */
const DEFAULT_SHARED_BYTES = 48 * 1024;

/** A linear's activations: x [rows, k], the optional bias [n] and y [rows, n] (or the gated [rows, inter]). */
export interface LinearArgs {
  x: DevicePtr;
  bias: DevicePtr | null;
  y: DevicePtr;
  rows: number;
}

export class QuantizedLinears {
  private constructor(
    private readonly kernels: KernelLauncher,
    /** Dequantized weights, [n, k] of the engine dtype; null when the engine has no quantized weight. */
    private readonly scratch: DeviceBuffer | null,
    /** The GPU's SMs: gemm_wo's tile keeps its grid at half of them or more (woGemmLaunch). */
    private readonly smCount: number,
  ) {}

  /** The scratch for `weights`' largest quantized weight in `dtype` (none for an unquantized engine). */
  static allocate(
    device: CudaDevice,
    kernels: KernelLauncher,
    weights: DeviceWeights,
    dtype: DTypeName,
  ): QuantizedLinears {
    const bytes = dequantScratchBytes(weights.allQuantized, ELEMENT_BYTES[dtype]);
    const scratch = bytes > 0 ? DeviceBuffer.alloc(device, bytes) : null;
    return new QuantizedLinears(kernels, scratch, device.smCount);
  }

  /** gemv_woB over `w` ([n, k], n = w.rows), or with `gatedAct` the gated kernel writing act(gate)·up
   * for the fused gate_up weight ([2·inter, k]). */
  gemv(w: QuantizedWeight, a: LinearArgs, gatedAct?: string): void {
    const n = gatedAct ? w.rows / 2 : w.rows;
    if (w.zp) {
      this.gemvZp(w, w.zp, a, n, gatedAct);
      return;
    }
    const { kernel, grid, block } = gatedAct
      ? woGemvGatedLaunch(w.format, gatedAct, n)
      : woGemvLaunch(w.format, n, w.cols);
    const args: KernelArg[] = [
      { ptr: a.x },
      { ptr: w.q },
      { ptr: w.scales },
      { ptr: a.bias ?? (0n as DevicePtr) },
      { ptr: a.y },
      { i32: a.rows },
      { i32: n },
      { i32: w.cols },
    ];
    this.kernels.launch("gemv_wo", kernel, [grid], block, args);
  }

  /** Whether gemv() has a kernel for `w`'s shape (int4-zp: k a multiple of 32); else dequantize. */
  static gemvTakes(w: QuantizedWeight): boolean {
    return !w.zp || zpGemvTakes(w.cols);
  }

  /** gemm_wo's GEMM over `w` ([n, k], n = w.rows) for a.rows rows: y = x·Wᵀ (+ bias); or with
   * `gatedAct` the gated kernel writing act(gate)·up for the fused gate_up weight ([2·inter, k]). */
  gemm(w: QuantizedWeight, a: LinearArgs, gatedAct?: string): void {
    const n = gatedAct ? w.rows / 2 : w.rows;
    const format = w.zp ? "zp" : woBits(w.format);
    const { kernel, grid, block, sharedBytes } = woGemmLaunch(format, a.rows, n, gatedAct, this.smCount);
    const args: KernelArg[] = w.zp
      ? [
          { ptr: a.x },
          { ptr: w.q },
          { ptr: w.scales },
          { ptr: w.zp.zeros },
          { ptr: a.bias ?? (0n as DevicePtr) },
          { ptr: a.y },
          { i32: a.rows },
          { i32: n },
          { i32: w.cols },
          { i32: w.zp.groupSize },
        ]
      : [
          { ptr: a.x },
          { ptr: w.q },
          { ptr: w.scales },
          { ptr: a.bias ?? (0n as DevicePtr) },
          { ptr: a.y },
          { i32: a.rows },
          { i32: n },
          { i32: w.cols },
        ];
    this.kernels.launch("gemm_wo", kernel, grid, block, args, sharedBytes);
  }

  /** Readies gemm()'s kernels for `w` (with `gatedAct`: the gated ones): the dynamic shared memory of
   * every tile it may take (the tile depends on the rows and the weight's grid) above the default 48 KiB
   * is opted in now, before any decode graph is captured. */
  prepareGemm(w: QuantizedWeight, gatedAct?: string): void {
    for (const { kernel, sharedBytes } of woGemmKernels(w.zp ? "zp" : woBits(w.format), gatedAct))
      if (sharedBytes > DEFAULT_SHARED_BYTES)
        this.kernels.reserveSharedMemory("gemm_wo", kernel, sharedBytes);
  }

  /** Whether gemm() has a kernel for `w` (int4-zp: gemm_wo_variants.ts zpGemmTakes); else dequantize. */
  static gemmTakes(w: QuantizedWeight): boolean {
    return !w.zp || zpGemmTakes(w.cols, w.zp.groupSize, w.zp.gIdx !== null, w.zp.zerosExact);
  }

  /** gemv_zp[_any] over the int4-zp weight `w` for n output features (gated: n = inter). */
  private gemvZp(
    w: QuantizedWeight,
    zp: NonNullable<QuantizedWeight["zp"]>,
    a: LinearArgs,
    n: number,
    act?: string,
  ) {
    const actOrder = zp.gIdx !== null;
    const mma = zp.zerosExact; // gemv_zp_mma's (q − z) must be exact in 16 bits
    const { kernel, grid, block } = act
      ? zpGemvGatedLaunch(act, n, zp.groupSize, actOrder, mma)
      : zpGemvLaunch(n, w.cols, zp.groupSize, actOrder, mma);
    this.kernels.launch("gemv_zp", kernel, [grid], block, [
      { ptr: a.x },
      { ptr: w.q },
      { ptr: w.scales },
      { ptr: zp.zeros },
      { ptr: zp.gIdx ?? (0n as DevicePtr) },
      { ptr: a.bias ?? (0n as DevicePtr) },
      { ptr: a.y },
      { i32: a.rows },
      { i32: n },
      { i32: w.cols },
      { i32: zp.groupSize },
    ]);
  }

  /** Queues the dequantization of `w` into the scratch; returns the scratch's address, where the
   * weight [rows, cols] lies in the engine dtype until the next call. */
  dequantize(w: QuantizedWeight): DevicePtr {
    if (!this.scratch) throw new Error("internal: a quantized weight but no dequantization scratch");
    if (w.zp) {
      const { kernel, grid, block } = zpDequantLaunch(w.rows, w.cols);
      this.kernels.launch("gemv_zp", kernel, [grid], block, [
        { ptr: w.q },
        { ptr: w.scales },
        { ptr: w.zp.zeros },
        { ptr: w.zp.gIdx ?? (0n as DevicePtr) },
        { ptr: this.scratch.ptr },
        { i32: w.rows },
        { i32: w.cols },
        { i32: w.zp.groupSize },
      ]);
      return this.scratch.ptr;
    }
    const { kernel, grid, block } = dequantLaunch(w.format, w.rows, w.cols);
    this.kernels.launch("gemv_wo", kernel, [grid], block, [
      { ptr: w.q },
      { ptr: w.scales },
      { ptr: this.scratch.ptr },
      { i32: w.rows },
      { i32: w.cols },
    ]);
    return this.scratch.ptr;
  }

  dispose(): void {
    this.scratch?.dispose();
  }
}
