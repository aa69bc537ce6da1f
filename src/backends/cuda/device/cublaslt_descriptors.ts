// cuBLASLt descriptors for one GEMM problem (the "plan"), the heuristic query and the matmul call
// behind Gemm (gemm.ts, which explains the row-major ↔ column-major mapping used here).
import { type DTypeName, ELEMENT_BYTES } from "../../../dtype.ts";
import { InvalidArgumentError } from "../../../errors.ts";
import {
  CUBLAS_COMPUTE_32F,
  CUBLAS_COMPUTE_32F_FAST_TF32,
  CUBLAS_OP_N,
  CUBLAS_OP_T,
  CUBLASLT_EPILOGUE_BIAS,
  CUBLASLT_EPILOGUE_DEFAULT,
  CUBLASLT_MATMUL_DESC,
  CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F,
  CUBLASLT_MATMUL_PREF,
  CUDA_R_8F_E4M3,
  CUDA_R_16BF,
  CUDA_R_16F,
  CUDA_R_32F,
  type CublasLt,
  type HeuristicResult,
  i8Attr,
  i32Attr,
  type LtHandle,
  type LtMatmulDesc,
  type LtMatrixLayout,
  u32Attr,
  u64Attr,
} from "../ffi/cublaslt.ts";
import { CublasError } from "../ffi/errors.ts";
import type { CuStream, DevicePtr } from "../ffi/handles.ts";
import { DeviceBuffer } from "./buffer.ts";
import type { CudaDevice } from "./device.ts";

export interface GemmConfig {
  /** Rows of x and y (tokens). */
  m: number;
  /** Output features: rows of W, columns of y. */
  n: number;
  /** Input features: columns of x and W. */
  k: number;
  dtypeIn: DTypeName;
  /** Default: dtypeIn. fp32 inputs need an fp32 output. */
  dtypeOut?: DTypeName;
  /** y += bias[n] in the epilogue (bias has dtypeOut). */
  bias?: boolean;
  /** fp32 inputs: true (default) = CUBLAS_COMPUTE_32F, true fp32; false allows TF32. Others accumulate in fp32. */
  computeFp32Exact?: boolean;
  /** Byte alignment the algorithm may assume for x, W, y and bias (default 256, what cuMemAlloc gives). */
  alignment?: number;
  /** Most workspace the algorithm may use (default 32 MiB, NVIDIA's advice for Hopper). */
  maxWorkspaceBytes?: number;
  /** x and W are E4M3 bytes (sm_89+), scaled by fp32 vectors: y[t, r] = xScale[t]·wScale[r]·Σ x·w
   * (cuBLASLt's OUTER_VEC_32F scale modes; run() takes the two vectors). dtypeIn is then unused and
   * dtypeOut is y's type. Default false. */
  fp8?: boolean;
  /** With fp8: no scale vectors (cuBLASLt's default unit scalars), y = Σ x·w, for where cuBLASLt has
   * no outer-vector FP8 algorithm (the caller scales y). Default false. */
  fp8UnitScales?: boolean;
}

export type FullConfig = Required<GemmConfig>;

const CUDA_TYPE: Record<DTypeName, number> = { fp32: CUDA_R_32F, fp16: CUDA_R_16F, bf16: CUDA_R_16BF };

/** Descriptors for one problem: the matmul desc and the layouts of A (= W), B (= x) and C/D (= y). */
export interface Plan {
  api: CublasLt;
  handle: LtHandle;
  desc: LtMatmulDesc;
  a: LtMatrixLayout;
  b: LtMatrixLayout;
  d: LtMatrixLayout;
  /** Outer-vector FP8: what A_SCALE_POINTER and B_SCALE_POINTER point at until matmul() sets each
   * call's vectors. cuBLASLt's heuristic refuses a vector scale mode whose pointers are unset
   * (CUBLAS_STATUS_INVALID_VALUE: the mode "requires a custom pointer"); it reads nothing there. */
  scalePlaceholder: DeviceBuffer | null;
}

export function normalize(config: GemmConfig): FullConfig {
  const full: FullConfig = {
    dtypeOut: config.dtypeIn,
    bias: false,
    computeFp32Exact: true,
    alignment: 256,
    maxWorkspaceBytes: 32 * 1024 * 1024,
    fp8: false,
    fp8UnitScales: false,
    ...config,
  };
  for (const dim of ["m", "n", "k"] as const) {
    const v = full[dim];
    if (!Number.isInteger(v) || v < 1 || v >= 2 ** 31)
      throw new InvalidArgumentError(`GEMM ${dim} = ${v} must be in [1, 2^31)`);
  }
  if (!full.fp8 && full.dtypeIn === "fp32" && full.dtypeOut !== "fp32") {
    throw new InvalidArgumentError(
      `cuBLASLt has no fp32-input GEMM with a ${full.dtypeOut} output; use dtypeOut fp32`,
    );
  }
  return full;
}

export function describeGemm(c: FullConfig): string {
  return `m=${c.m} n=${c.n} k=${c.k} ${c.fp8 ? "e4m3" : c.dtypeIn}→${c.dtypeOut}${c.bias ? " +bias" : ""}`;
}

/** Bytes of one element of x and W. */
export const inputBytes = (c: FullConfig): number => (c.fp8 ? 1 : ELEMENT_BYTES[c.dtypeIn]);

/** Whether run() takes scale vectors: an fp8 GEMM with outer-vector scales. */
export const takesScales = (c: FullConfig): boolean => c.fp8 && !c.fp8UnitScales;

export function layouts(plan: Plan) {
  return { a: plan.a, b: plan.b, c: plan.d, d: plan.d };
}

export function createPlan(device: CudaDevice, c: FullConfig): Plan {
  const { api, handle } = device.blasLt();
  const compute =
    c.dtypeIn === "fp32" && !c.computeFp32Exact ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const created: (() => void)[] = [];
  let scalePlaceholder: DeviceBuffer | null = null;
  try {
    const desc = api.matmulDescCreate(compute, CUDA_R_32F);
    created.push(() => api.matmulDescDestroy(desc));
    api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.TRANSA, i32Attr(CUBLAS_OP_T));
    api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.TRANSB, i32Attr(CUBLAS_OP_N));
    // FP8: no fast accumulation, stated rather than left to the default: Hopper's FP8 tensor cores keep
    // partial sums in reduced precision, and only the periodic promotion to fp32 bounds that error.
    if (c.fp8) api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.FAST_ACCUM, i8Attr(0));
    if (c.fp8 && !c.fp8UnitScales) {
      // FP8 is "TN" only (op(A) = T, op(B) = N), which this mapping is; A = W: one scale per row of
      // op(A) (output feature), B = x: one per column of op(B) (token).
      const outer = i32Attr(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F);
      api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.A_SCALE_MODE, outer);
      api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.B_SCALE_MODE, outer);
      const placeholder = DeviceBuffer.alloc(device, 256);
      created.push(() => placeholder.dispose());
      scalePlaceholder = placeholder;
      api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.A_SCALE_POINTER, u64Attr(placeholder.ptr));
      api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.B_SCALE_POINTER, u64Attr(placeholder.ptr));
    }
    const epilogue = c.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.EPILOGUE, u32Attr(epilogue));
    // The bias is in D's dtype. Stated for FP8: there cuBLASLt's default bias type is not D's (an fp32
    // D reads a bf16 bias), so an fp32 bias would be read as pairs of bf16; a type it lacks is refused.
    if (c.bias && c.fp8) {
      api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.BIAS_DATA_TYPE, i32Attr(CUDA_TYPE[c.dtypeOut]));
    }
    const layout = (type: number, rows: number, cols: number) => {
      const l = api.matrixLayoutCreate(type, rows, cols, rows);
      created.push(() => api.matrixLayoutDestroy(l));
      return l;
    };
    const typeIn = c.fp8 ? CUDA_R_8F_E4M3 : CUDA_TYPE[c.dtypeIn];
    const a = layout(typeIn, c.k, c.n); // W as col-major [k, n]
    const b = layout(typeIn, c.k, c.m); // x as col-major [k, m]
    const d = layout(CUDA_TYPE[c.dtypeOut], c.n, c.m); // y as col-major [n, m]
    return { api, handle, desc, a, b, d, scalePlaceholder };
  } catch (e) {
    for (const destroy of created.reverse()) destroy();
    throw e;
  }
}

export function destroyPlan(plan: Plan): void {
  plan.api.matrixLayoutDestroy(plan.d);
  plan.api.matrixLayoutDestroy(plan.b);
  plan.api.matrixLayoutDestroy(plan.a);
  plan.api.matmulDescDestroy(plan.desc);
  plan.scalePlaceholder?.dispose();
}

export function heuristics(plan: Plan, c: FullConfig, count: number): HeuristicResult[] {
  const { api } = plan;
  const pref = api.preferenceCreate();
  try {
    api.preferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF.MAX_WORKSPACE_BYTES, u64Attr(c.maxWorkspaceBytes));
    for (const attr of [
      CUBLASLT_MATMUL_PREF.MIN_ALIGNMENT_A_BYTES,
      CUBLASLT_MATMUL_PREF.MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF.MIN_ALIGNMENT_C_BYTES,
      CUBLASLT_MATMUL_PREF.MIN_ALIGNMENT_D_BYTES,
    ]) {
      api.preferenceSetAttribute(pref, attr, u32Attr(c.alignment));
    }
    const results = api.algoGetHeuristic(plan.handle, plan.desc, layouts(plan), pref, count);
    if (results.length === 0) {
      throw new CublasError(
        "cublasLtMatmulAlgoGetHeuristic",
        15,
        "CUBLAS_STATUS_NOT_SUPPORTED",
        `no algorithm for ${describeGemm(c)}`,
      );
    }
    return results;
  } finally {
    api.preferenceDestroy(pref);
  }
}

// alpha = 1, beta = 0 as host fp32 scalars (scale type CUDA_R_32F; read during the call).
const ALPHA = Float32Array.of(1);
const BETA = Float32Array.of(0);

export function matmul(
  plan: Plan,
  c: FullConfig,
  algo: Uint8Array,
  workspace: DevicePtr,
  workspaceBytes: number,
  stream: CuStream,
  x: DevicePtr,
  w: DevicePtr,
  y: DevicePtr,
  bias: DevicePtr | undefined,
  scales?: { x: DevicePtr; w: DevicePtr },
): void {
  if (c.bias)
    plan.api.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC.BIAS_POINTER, u64Attr(bias ?? 0n));
  if (c.fp8 && !c.fp8UnitScales) {
    if (!scales) throw new Error("internal: an FP8 GEMM needs its scale vectors");
    plan.api.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC.A_SCALE_POINTER, u64Attr(scales.w));
    plan.api.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC.B_SCALE_POINTER, u64Attr(scales.x));
  }
  plan.api.matmul({
    handle: plan.handle,
    desc: plan.desc,
    alpha: ALPHA,
    a: w,
    aLayout: plan.a,
    b: x,
    bLayout: plan.b,
    beta: BETA,
    c: y,
    cLayout: plan.d,
    d: y,
    dLayout: plan.d,
    algo,
    workspace,
    workspaceBytes,
    stream,
  });
}
