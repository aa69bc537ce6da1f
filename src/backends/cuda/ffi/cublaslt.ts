// Bindings for cuBLASLt (GEMMs). Signatures and enum values are checked against the headers of
// cuBLAS 13.1 (cublasLt.h, cublas_api.h from the nvidia-cublas 13.1.1.3 wheel) and CUDA 13.0
// library_types.h; the line numbers in comments refer to those files.
import type { LibraryHandle } from "koffi";
import { bindFirst, type CFunction, out64, outI32 } from "./bind.ts";
import { CublasError, CudaUnavailableError } from "./errors.ts";
import type { CuStream, DevicePtr } from "./handles.ts";
import { loadLibrary } from "./library.ts";

declare const brand: unique symbol;
export type LtHandle = bigint & { readonly [brand]: "cublasLtHandle_t" };
export type LtMatmulDesc = bigint & { readonly [brand]: "cublasLtMatmulDesc_t" };
export type LtMatrixLayout = bigint & { readonly [brand]: "cublasLtMatrixLayout_t" };
export type LtPreference = bigint & { readonly [brand]: "cublasLtMatmulPreference_t" };

/** cudaDataType_t (library_types.h lines 59-63). */
export const CUDA_R_32F = 0;
export const CUDA_R_16F = 2;
export const CUDA_R_16BF = 14;
/** FP8 E4M3 (library_types.h CUDA_R_8F_E4M3). */
export const CUDA_R_8F_E4M3 = 28;

/** cublasComputeType_t (cublas_api.h lines 206-212). 32F is true fp32; TF32 only with _FAST_TF32 (77). */
export const CUBLAS_COMPUTE_32F = 68;
export const CUBLAS_COMPUTE_32F_PEDANTIC = 69;
export const CUBLAS_COMPUTE_32F_FAST_TF32 = 77;

/** cublasOperation_t (cublas_api.h lines 109-110). */
export const CUBLAS_OP_N = 0;
export const CUBLAS_OP_T = 1;

/** cublasLtMatmulDescAttributes_t (cublasLt.h lines 1274-1547). */
export const CUBLASLT_MATMUL_DESC = {
  SCALE_TYPE: 1, // int32_t (cudaDataType)
  POINTER_MODE: 2, // int32_t
  TRANSA: 3, // int32_t (cublasOperation_t)
  TRANSB: 4, // int32_t
  EPILOGUE: 7, // uint32_t (cublasLtEpilogue_t)
  BIAS_POINTER: 8, // const void*
  BIAS_DATA_TYPE: 26, // int32_t (cudaDataType), default -1 = type of D
  A_SCALE_POINTER: 17, // const void*: A's scale (FP8 inputs), as A_SCALE_MODE says
  B_SCALE_POINTER: 18, // const void*
  A_SCALE_MODE: 31, // int32_t (cublasLtMatmulMatrixScale_t), default SCALAR_32F
  B_SCALE_MODE: 32, // int32_t
  // int8_t, default 0: FP8 "fast accumulation" off, i.e. the tensor cores' partial sums are promoted to
  // fp32 periodically. Like the scale attributes, the value comes from public bindings, not a header here.
  FAST_ACCUM: 25,
} as const;

/** cublasLtMatmulMatrixScale_t: OUTER_VEC_32F = one fp32 scale per row of op(A) (M of them) or per
 * column of op(B) (N of them), FP8 inputs only (cuBLAS 12.9+). Not yet checked against a header here:
 * the values agree with NVIDIA's nvmath bindings and PyTorch's use; the GPU tests exercise them. */
export const CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F = 3;

/** cublasLtEpilogue_t (cublasLt.h lines 1936, 1953). */
export const CUBLASLT_EPILOGUE_DEFAULT = 1;
export const CUBLASLT_EPILOGUE_BIAS = 4;

/** cublasLtMatrixLayoutAttribute_t (cublasLt.h lines 1113-1155); layouts default to column-major. */
export const CUBLASLT_MATRIX_LAYOUT = { TYPE: 0, ORDER: 1, ROWS: 2, COLS: 3, LD: 4, BATCH_COUNT: 5 } as const;

/** cublasLtMatmulPreferenceAttributes_t (cublasLt.h lines 2082-2133). */
export const CUBLASLT_MATMUL_PREF = {
  SEARCH_MODE: 0, // uint32_t
  MAX_WORKSPACE_BYTES: 1, // uint64_t, default 0
  MIN_ALIGNMENT_A_BYTES: 5, // uint32_t, default 256
  MIN_ALIGNMENT_B_BYTES: 6,
  MIN_ALIGNMENT_C_BYTES: 7,
  MIN_ALIGNMENT_D_BYTES: 8,
} as const;

/** cublasLtMatmulAlgoConfigAttributes_t (cuBLAS 12+ cublasLt.h): what a cublasLtMatmulAlgo_t is configured
 * with; TILE_ID … STAGES_ID are uint32_t, INNER_SHAPE_ID and CLUSTER_SHAPE_ID uint16_t. The values agree
 * with NVIDIA's cuBLAS documentation and public bindings; read only, to describe an algorithm. */
export const CUBLASLT_ALGO_CONFIG = {
  ID: 0,
  TILE_ID: 1,
  SPLITK_NUM: 2,
  REDUCTION_SCHEME: 3,
  CTA_SWIZZLING: 4,
  CUSTOM_OPTION: 5,
  STAGES_ID: 6,
  INNER_SHAPE_ID: 7,
  CLUSTER_SHAPE_ID: 8,
} as const;
const ALGO_CONFIG_ATTRS = new Set<number>(Object.values(CUBLASLT_ALGO_CONFIG));
const ALGO_CONFIG_U16 = new Set<number>([
  CUBLASLT_ALGO_CONFIG.INNER_SHAPE_ID,
  CUBLASLT_ALGO_CONFIG.CLUSTER_SHAPE_ID,
]);

/** cublasStatus_t names (cublas_api.h lines 90-99), for when cublasLtGetStatusName is missing. */
const STATUS_NAMES: Record<number, string> = {
  0: "CUBLAS_STATUS_SUCCESS",
  1: "CUBLAS_STATUS_NOT_INITIALIZED",
  3: "CUBLAS_STATUS_ALLOC_FAILED",
  7: "CUBLAS_STATUS_INVALID_VALUE",
  8: "CUBLAS_STATUS_ARCH_MISMATCH",
  11: "CUBLAS_STATUS_MAPPING_ERROR",
  13: "CUBLAS_STATUS_EXECUTION_FAILED",
  14: "CUBLAS_STATUS_INTERNAL_ERROR",
  15: "CUBLAS_STATUS_NOT_SUPPORTED",
  16: "CUBLAS_STATUS_LICENSE_ERROR",
};

/** sizeof(cublasLtMatmulAlgo_t): uint64_t data[8] (cublasLt.h lines 113-115). */
export const MATMUL_ALGO_BYTES = 64;
/**
 * cublasLtMatmulHeuristicResult_t (cublasLt.h lines 2221-2245): algo [0, 64), size_t workspaceSize
 * at 64, cublasStatus_t state at 72, float wavesCount at 76, int reserved[4] at 80; 96 bytes.
 */
const HEURISTIC_RESULT_BYTES = 96;

export interface HeuristicResult {
  /** The opaque cublasLtMatmulAlgo_t; store it to skip the heuristic next time (same cuBLAS version). */
  algo: Uint8Array;
  workspaceBytes: number;
  /** 1.0 ≈ one full wave of the GPU's SMs. */
  wavesCount: number;
}

/** Raw value for a descriptor attribute: a typed array of exactly the attribute's size. */
export type AttrValue = Int8Array | Int32Array | Uint32Array | BigUint64Array | BigInt64Array;
export const i8Attr = (v: number): Int8Array => Int8Array.of(v);
export const i32Attr = (v: number): Int32Array => Int32Array.of(v);
export const u32Attr = (v: number): Uint32Array => Uint32Array.of(v);
export const u64Attr = (v: bigint | number): BigUint64Array => BigUint64Array.of(BigInt(v));

const H = "uint64_t";
const PROTOS = {
  cublasLtGetVersion: ["size_t", []],
  cublasLtGetStatusName: ["const char *", ["int"]],
  cublasLtCreate: ["int", ["void *"]],
  cublasLtDestroy: ["int", [H]],
  cublasLtMatmulDescCreate: ["int", ["void *", "int", "int"]],
  cublasLtMatmulDescSetAttribute: ["int", [H, "int", "void *", "size_t"]],
  cublasLtMatmulDescDestroy: ["int", [H]],
  cublasLtMatrixLayoutCreate: ["int", ["void *", "int", "uint64_t", "uint64_t", "int64_t"]],
  cublasLtMatrixLayoutSetAttribute: ["int", [H, "int", "void *", "size_t"]],
  cublasLtMatrixLayoutDestroy: ["int", [H]],
  cublasLtMatmulPreferenceCreate: ["int", ["void *"]],
  cublasLtMatmulPreferenceSetAttribute: ["int", [H, "int", "void *", "size_t"]],
  cublasLtMatmulPreferenceDestroy: ["int", [H]],
  cublasLtMatmulAlgoGetHeuristic: ["int", [H, H, H, H, H, H, H, "int", "void *", "void *"]],
  cublasLtMatmulAlgoCheck: ["int", [H, H, H, H, H, H, "void *", "void *"]],
  cublasLtMatmulAlgoConfigGetAttribute: ["int", ["void *", "int", "void *", "size_t", "void *"]],
  cublasLtMatmul: ["int", [H, H, "void *", H, H, H, H, "void *", H, H, H, H, "void *", H, "size_t", H]],
} as const;
type Fn = keyof typeof PROTOS;
/** Entry points an older cuBLASLt may lack: bound when present, refused by call() when not. */
const OPTIONAL_FNS = ["cublasLtGetStatusName", "cublasLtMatmulAlgoConfigGetAttribute"] as const;
type Optional = (typeof OPTIONAL_FNS)[number];
const OPTIONAL = new Set<Fn>(OPTIONAL_FNS);

export class CublasLt {
  private readonly fns: Partial<Record<Fn, CFunction>> & Record<Exclude<Fn, Optional>, CFunction>;

  constructor(
    lib: LibraryHandle,
    readonly path: string,
  ) {
    const fns: Partial<Record<Fn, CFunction>> = {};
    for (const [key, [result, params]] of Object.entries(PROTOS) as [Fn, (typeof PROTOS)[Fn]][]) {
      try {
        fns[key] = bindFirst(lib, [key], result, params).fn;
      } catch (e) {
        if (!OPTIONAL.has(key)) throw e; // older cuBLASLt may lack these
      }
    }
    this.fns = fns as CublasLt["fns"];
  }

  statusName(code: number): string {
    const fromLib = this.fns.cublasLtGetStatusName?.(code) as string | null | undefined;
    return fromLib ?? STATUS_NAMES[code] ?? `CUBLAS_STATUS_${code}`;
  }

  private call(key: Exclude<Fn, "cublasLtGetStatusName" | "cublasLtGetVersion">, ...args: unknown[]): void {
    const fn = this.fns[key];
    if (!fn)
      throw new CublasError(key, 15, "CUBLAS_STATUS_NOT_SUPPORTED", `not in this cuBLASLt (${this.path})`);
    const r = fn(...args) as number;
    if (r !== 0) throw new CublasError(key, r, this.statusName(r));
  }

  /** e.g. 130101 for 13.1.1. */
  version(): number {
    return Number(this.fns.cublasLtGetVersion());
  }

  create(): LtHandle {
    const h = out64();
    this.call("cublasLtCreate", h);
    return h[0] as LtHandle;
  }
  destroy(handle: LtHandle): void {
    this.call("cublasLtDestroy", handle);
  }

  matmulDescCreate(computeType: number, scaleType: number): LtMatmulDesc {
    const d = out64();
    this.call("cublasLtMatmulDescCreate", d, computeType, scaleType);
    return d[0] as LtMatmulDesc;
  }
  matmulDescSetAttribute(desc: LtMatmulDesc, attr: number, value: AttrValue): void {
    this.call("cublasLtMatmulDescSetAttribute", desc, attr, value, value.byteLength);
  }
  matmulDescDestroy(desc: LtMatmulDesc): void {
    this.call("cublasLtMatmulDescDestroy", desc);
  }

  /** A column-major `rows × cols` matrix with leading dimension `ld` (elements). */
  matrixLayoutCreate(type: number, rows: number, cols: number, ld: number): LtMatrixLayout {
    const l = out64();
    this.call("cublasLtMatrixLayoutCreate", l, type, rows, cols, ld);
    return l[0] as LtMatrixLayout;
  }
  matrixLayoutSetAttribute(layout: LtMatrixLayout, attr: number, value: AttrValue): void {
    this.call("cublasLtMatrixLayoutSetAttribute", layout, attr, value, value.byteLength);
  }
  matrixLayoutDestroy(layout: LtMatrixLayout): void {
    this.call("cublasLtMatrixLayoutDestroy", layout);
  }

  preferenceCreate(): LtPreference {
    const p = out64();
    this.call("cublasLtMatmulPreferenceCreate", p);
    return p[0] as LtPreference;
  }
  preferenceSetAttribute(pref: LtPreference, attr: number, value: AttrValue): void {
    this.call("cublasLtMatmulPreferenceSetAttribute", pref, attr, value, value.byteLength);
  }
  preferenceDestroy(pref: LtPreference): void {
    this.call("cublasLtMatmulPreferenceDestroy", pref);
  }

  /** Up to `requested` algorithms, best estimate first; only those whose state is SUCCESS. */
  algoGetHeuristic(
    handle: LtHandle,
    desc: LtMatmulDesc,
    layouts: { a: LtMatrixLayout; b: LtMatrixLayout; c: LtMatrixLayout; d: LtMatrixLayout },
    pref: LtPreference,
    requested: number,
  ): HeuristicResult[] {
    const raw = new Uint8Array(HEURISTIC_RESULT_BYTES * requested);
    const count = outI32();
    const { a, b, c, d } = layouts;
    this.call("cublasLtMatmulAlgoGetHeuristic", handle, desc, a, b, c, d, pref, requested, raw, count);
    const results: HeuristicResult[] = [];
    for (let i = 0; i < count[0]; i++) {
      const r = decodeHeuristicResult(
        raw.subarray(i * HEURISTIC_RESULT_BYTES, (i + 1) * HEURISTIC_RESULT_BYTES),
      );
      if (r.state === 0) results.push(r.result);
    }
    return results;
  }

  /** Validates a stored algo against the descriptors; returns its workspace need. Throws CublasError. */
  algoCheck(
    handle: LtHandle,
    desc: LtMatmulDesc,
    layouts: { a: LtMatrixLayout; b: LtMatrixLayout; c: LtMatrixLayout; d: LtMatrixLayout },
    algo: Uint8Array,
  ): HeuristicResult {
    const raw = new Uint8Array(HEURISTIC_RESULT_BYTES);
    const { a, b, c, d } = layouts;
    this.call("cublasLtMatmulAlgoCheck", handle, desc, a, b, c, d, algoBytes(algo), raw);
    return { ...decodeHeuristicResult(raw).result, algo: algo.slice() };
  }

  /** One configuration attribute of an algorithm (CUBLASLT_ALGO_CONFIG), e.g. its split-K count. */
  algoConfig(algo: Uint8Array, attr: number): number {
    if (!ALGO_CONFIG_ATTRS.has(attr))
      throw new RangeError(`unknown cublasLtMatmulAlgoConfigAttributes_t ${attr}`);
    const size = ALGO_CONFIG_U16.has(attr) ? 2 : 4;
    const buf = new Uint8Array(size);
    this.call("cublasLtMatmulAlgoConfigGetAttribute", algoBytes(algo), attr, buf, size, out64());
    const view = new DataView(buf.buffer);
    return size === 2 ? view.getUint16(0, true) : view.getUint32(0, true);
  }

  /** D = alpha·op(A)·op(B) + beta·C (+ epilogue); alpha/beta are host scalars of the scale type. */
  matmul(args: {
    handle: LtHandle;
    desc: LtMatmulDesc;
    alpha: Float32Array;
    a: DevicePtr;
    aLayout: LtMatrixLayout;
    b: DevicePtr;
    bLayout: LtMatrixLayout;
    beta: Float32Array;
    c: DevicePtr;
    cLayout: LtMatrixLayout;
    d: DevicePtr;
    dLayout: LtMatrixLayout;
    algo: Uint8Array | null;
    workspace: DevicePtr;
    workspaceBytes: number;
    stream: CuStream;
  }): void {
    const x = args;
    this.call(
      "cublasLtMatmul",
      x.handle,
      x.desc,
      x.alpha,
      x.a,
      x.aLayout,
      x.b,
      x.bLayout,
      x.beta,
      x.c,
      x.cLayout,
      x.d,
      x.dLayout,
      x.algo ? algoBytes(x.algo) : null,
      x.workspace,
      x.workspaceBytes,
      x.stream,
    );
  }
}

/** Parses one cublasLtMatmulHeuristicResult_t (layout above). Exported for tests. */
export function decodeHeuristicResult(raw: Uint8Array): { result: HeuristicResult; state: number } {
  const view = new DataView(raw.buffer, raw.byteOffset, HEURISTIC_RESULT_BYTES);
  return {
    result: {
      algo: raw.slice(0, MATMUL_ALGO_BYTES),
      workspaceBytes: Number(view.getBigUint64(64, true)),
      wavesCount: view.getFloat32(76, true),
    },
    state: view.getInt32(72, true),
  };
}

function algoBytes(algo: Uint8Array): Uint8Array {
  if (algo.byteLength !== MATMUL_ALGO_BYTES) {
    throw new RangeError(`a cublasLtMatmulAlgo_t is ${MATMUL_ALGO_BYTES} bytes, got ${algo.byteLength}`);
  }
  return algo;
}

let cublasLt: CublasLt | null = null;

/** The process-wide cuBLASLt binding. Throws CudaUnavailableError when libcublasLt cannot be found. */
export function loadCublasLt(): CublasLt {
  if (cublasLt) return cublasLt;
  const { lib, path } = loadLibrary("cublasLt");
  try {
    cublasLt = new CublasLt(lib, path);
  } catch (e) {
    throw new CudaUnavailableError(`cuBLASLt at ${path} lacks an entry point kiln needs (${e}).`, [], {
      cause: e,
    });
  }
  return cublasLt;
}
