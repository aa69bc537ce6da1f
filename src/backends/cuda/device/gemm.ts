// A linear layer's GEMM through cuBLASLt, in Hugging Face layout (row-major):
//
//   y[m, n] = x[m, k] · W[n, k]ᵀ (+ bias[n])        m = tokens, n = out features, k = in features
//
// cuBLASLt is column-major, and a row-major R[r, c] is the column-major Rᵀ[c, r] with ld = c. So we
// compute yᵀ = W · xᵀ in column-major without moving any data:
//   A = W  seen as col-major [k, n] (ld k), op(A) = T → [n, k]
//   B = x  seen as col-major [k, m] (ld k), op(B) = N
//   D = y  seen as col-major [n, m] (ld n)   (C = D, beta = 0); the bias epilogue adds bias[row] = bias[n].
// The algorithm comes from the heuristic (create), from timing the top candidates (tune), or from an
// engine that stored `algo` (create with options.algo, validated by cublasLtMatmulAlgoCheck).
import type { DTypeName } from "../../../dtype.ts";
import { InvalidArgumentError } from "../../../errors.ts";
import {
  CUBLAS_COMPUTE_32F,
  CUBLAS_COMPUTE_32F_FAST_TF32,
  CUBLAS_OP_N,
  CUBLAS_OP_T,
  CUBLASLT_EPILOGUE_BIAS,
  CUBLASLT_EPILOGUE_DEFAULT,
  CUBLASLT_MATMUL_DESC,
  CUBLASLT_MATMUL_PREF,
  CUDA_R_16BF,
  CUDA_R_16F,
  CUDA_R_32F,
  type CublasLt,
  type HeuristicResult,
  i32Attr,
  type LtHandle,
  type LtMatmulDesc,
  type LtMatrixLayout,
  u32Attr,
  u64Attr,
} from "../ffi/cublaslt.ts";
import { CublasError } from "../ffi/errors.ts";
import type { DevicePtr } from "../ffi/handles.ts";
import { DeviceBuffer } from "./buffer.ts";
import type { CudaDevice } from "./device.ts";
import { timeOnStream } from "./event.ts";
import { Stream } from "./stream.ts";

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
}

type FullConfig = Required<GemmConfig>;

const ELEMENT_BYTES: Record<DTypeName, number> = { fp32: 4, fp16: 2, bf16: 2 };
const CUDA_TYPE: Record<DTypeName, number> = { fp32: CUDA_R_32F, fp16: CUDA_R_16F, bf16: CUDA_R_16BF };

/** Descriptors for one problem: the matmul desc and the layouts of A (= W), B (= x) and C/D (= y). */
interface Plan {
  api: CublasLt;
  handle: LtHandle;
  desc: LtMatmulDesc;
  a: LtMatrixLayout;
  b: LtMatrixLayout;
  d: LtMatrixLayout;
}

type Operand = DeviceBuffer | DevicePtr;

export class Gemm implements Disposable {
  /** GPU milliseconds per run of the chosen algorithm, when chosen by tune(). */
  measuredMs: number | null = null;
  private plan: Plan | null;
  private readonly workspace: DeviceBuffer;

  private constructor(
    readonly device: CudaDevice,
    readonly config: Readonly<FullConfig>,
    plan: Plan,
    private readonly choice: HeuristicResult,
  ) {
    this.plan = plan;
    this.workspace = DeviceBuffer.alloc(device, choice.workspaceBytes);
    device.liveObjects++;
  }

  /** The opaque 64-byte cublasLtMatmulAlgo_t; an engine stores it and passes it back as options.algo. */
  get algo(): Uint8Array {
    return this.choice.algo.slice();
  }
  get workspaceBytes(): number {
    return this.choice.workspaceBytes;
  }

  /** A GEMM using `options.algo` if given (checked), else the heuristic's first choice. */
  static create(device: CudaDevice, config: GemmConfig, options: { algo?: Uint8Array } = {}): Gemm {
    const full = normalize(config);
    const plan = createPlan(device, full);
    try {
      const choice = options.algo
        ? plan.api.algoCheck(plan.handle, plan.desc, layouts(plan), options.algo)
        : heuristics(plan, full, 1)[0];
      if (choice.workspaceBytes > full.maxWorkspaceBytes) {
        throw new InvalidArgumentError(
          `the stored GEMM algorithm needs ${choice.workspaceBytes} bytes of workspace; the limit is ${full.maxWorkspaceBytes}`,
        );
      }
      return new Gemm(device, full, plan, choice);
    } catch (e) {
      destroyPlan(plan);
      throw e;
    }
  }

  /** The heuristic's top `count` algorithms for `config`, best estimate first. */
  static heuristics(device: CudaDevice, config: GemmConfig, count = 8): HeuristicResult[] {
    const full = normalize(config);
    const plan = createPlan(device, full);
    try {
      return heuristics(plan, full, count);
    } finally {
      destroyPlan(plan);
    }
  }

  /**
   * Times the heuristic's top `candidates` on scratch operands and keeps the fastest (build time, on
   * the target GPU). Candidates that fail to run are skipped.
   */
  static tune(
    device: CudaDevice,
    config: GemmConfig,
    options: { candidates?: number; iterations?: number; warmup?: number } = {},
  ): Gemm {
    const { candidates = 8, iterations = 20, warmup = 3 } = options;
    const full = normalize(config);
    const plan = createPlan(device, full);
    const owned: Disposable[] = [];
    try {
      const results = heuristics(plan, full, candidates);
      const stream = Stream.create(device);
      owned.push(stream);
      const scratch = (bytes: number) => {
        const buf = DeviceBuffer.alloc(device, bytes);
        owned.push(buf);
        buf.fillBytes(stream, 0x3c); // 0x3c3c… is a small finite value in fp32, fp16 and bf16
        return buf;
      };
      const { m, n, k, dtypeIn, dtypeOut } = full;
      const x = scratch(m * k * ELEMENT_BYTES[dtypeIn]);
      const w = scratch(n * k * ELEMENT_BYTES[dtypeIn]);
      const y = scratch(m * n * ELEMENT_BYTES[dtypeOut]);
      const bias = full.bias ? scratch(n * ELEMENT_BYTES[dtypeOut]) : null;
      const ws = scratch(Math.max(0, ...results.map((r) => r.workspaceBytes)));
      let best: { result: HeuristicResult; ms: number } | null = null;
      for (const result of results) {
        const run = () =>
          matmul(
            plan,
            full,
            result.algo,
            ws.ptr,
            result.workspaceBytes,
            stream,
            x.ptr,
            w.ptr,
            y.ptr,
            bias?.ptr,
          );
        try {
          for (let i = 0; i < warmup; i++) run();
          const ms =
            timeOnStream(stream, () => {
              for (let i = 0; i < iterations; i++) run();
            }) / iterations;
          if (!best || ms < best.ms) best = { result, ms };
        } catch (e) {
          if (!(e instanceof CublasError)) throw e;
        }
      }
      stream.synchronize();
      if (!best)
        throw new CublasError(
          "cublasLtMatmul",
          15,
          "CUBLAS_STATUS_NOT_SUPPORTED",
          `no candidate ran for ${describe(full)}`,
        );
      const gemm = new Gemm(device, full, plan, best.result);
      gemm.measuredMs = best.ms;
      return gemm;
    } catch (e) {
      destroyPlan(plan);
      throw e;
    } finally {
      for (const o of owned.reverse()) o[Symbol.dispose]();
    }
  }

  /** Queues y = x · Wᵀ (+ bias) on `stream`. Operands are device buffers or pointers (see class comment). */
  run(stream: Stream, x: Operand, w: Operand, y: Operand, bias?: Operand): void {
    const plan = this.plan;
    if (plan === null) throw new Error("Gemm is disposed");
    const { m, n, k, dtypeIn, dtypeOut } = this.config;
    if (this.config.bias !== (bias !== undefined)) {
      throw new InvalidArgumentError(
        `this GEMM was created with bias: ${this.config.bias}; run() got ${bias ? "a" : "no"} bias`,
      );
    }
    const ptr = (name: string, op: Operand, bytes: number): DevicePtr => {
      if (op instanceof DeviceBuffer && op.bytes < bytes) {
        throw new RangeError(`GEMM ${name} needs ${bytes} bytes; the buffer has ${op.bytes}`);
      }
      const p = op instanceof DeviceBuffer ? op.ptr : op;
      if (p % BigInt(this.config.alignment) !== 0n) {
        throw new RangeError(
          `GEMM ${name} at 0x${p.toString(16)} is not ${this.config.alignment}-byte aligned`,
        );
      }
      return p;
    };
    matmul(
      plan,
      this.config,
      this.choice.algo,
      this.workspace.ptr,
      this.choice.workspaceBytes,
      stream,
      ptr("x", x, m * k * ELEMENT_BYTES[dtypeIn]),
      ptr("W", w, n * k * ELEMENT_BYTES[dtypeIn]),
      ptr("y", y, m * n * ELEMENT_BYTES[dtypeOut]),
      bias === undefined ? undefined : ptr("bias", bias, n * ELEMENT_BYTES[dtypeOut]),
    );
  }

  /** Destroys the descriptors and frees the workspace. Idempotent. */
  dispose(): void {
    if (this.plan === null) return;
    destroyPlan(this.plan);
    this.plan = null;
    this.workspace.dispose();
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function normalize(config: GemmConfig): FullConfig {
  const full: FullConfig = {
    dtypeOut: config.dtypeIn,
    bias: false,
    computeFp32Exact: true,
    alignment: 256,
    maxWorkspaceBytes: 32 * 1024 * 1024,
    ...config,
  };
  for (const dim of ["m", "n", "k"] as const) {
    const v = full[dim];
    if (!Number.isInteger(v) || v < 1 || v >= 2 ** 31)
      throw new InvalidArgumentError(`GEMM ${dim} = ${v} must be in [1, 2^31)`);
  }
  if (full.dtypeIn === "fp32" && full.dtypeOut !== "fp32") {
    throw new InvalidArgumentError(
      `cuBLASLt has no fp32-input GEMM with a ${full.dtypeOut} output; use dtypeOut fp32`,
    );
  }
  return full;
}

function describe(c: FullConfig): string {
  return `m=${c.m} n=${c.n} k=${c.k} ${c.dtypeIn}→${c.dtypeOut}${c.bias ? " +bias" : ""}`;
}

function layouts(plan: Plan) {
  return { a: plan.a, b: plan.b, c: plan.d, d: plan.d };
}

function createPlan(device: CudaDevice, c: FullConfig): Plan {
  const { api, handle } = device.blasLt();
  const compute =
    c.dtypeIn === "fp32" && !c.computeFp32Exact ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const created: (() => void)[] = [];
  try {
    const desc = api.matmulDescCreate(compute, CUDA_R_32F);
    created.push(() => api.matmulDescDestroy(desc));
    api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.TRANSA, i32Attr(CUBLAS_OP_T));
    api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.TRANSB, i32Attr(CUBLAS_OP_N));
    const epilogue = c.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    api.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC.EPILOGUE, u32Attr(epilogue));
    const layout = (type: number, rows: number, cols: number) => {
      const l = api.matrixLayoutCreate(type, rows, cols, rows);
      created.push(() => api.matrixLayoutDestroy(l));
      return l;
    };
    const a = layout(CUDA_TYPE[c.dtypeIn], c.k, c.n); // W as col-major [k, n]
    const b = layout(CUDA_TYPE[c.dtypeIn], c.k, c.m); // x as col-major [k, m]
    const d = layout(CUDA_TYPE[c.dtypeOut], c.n, c.m); // y as col-major [n, m]
    return { api, handle, desc, a, b, d };
  } catch (e) {
    for (const destroy of created.reverse()) destroy();
    throw e;
  }
}

function destroyPlan(plan: Plan): void {
  plan.api.matrixLayoutDestroy(plan.d);
  plan.api.matrixLayoutDestroy(plan.b);
  plan.api.matrixLayoutDestroy(plan.a);
  plan.api.matmulDescDestroy(plan.desc);
}

function heuristics(plan: Plan, c: FullConfig, count: number): HeuristicResult[] {
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
        `no algorithm for ${describe(c)}`,
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

function matmul(
  plan: Plan,
  c: FullConfig,
  algo: Uint8Array,
  workspace: DevicePtr,
  workspaceBytes: number,
  stream: Stream,
  x: DevicePtr,
  w: DevicePtr,
  y: DevicePtr,
  bias: DevicePtr | undefined,
): void {
  if (c.bias)
    plan.api.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC.BIAS_POINTER, u64Attr(bias ?? 0n));
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
    stream: stream.handle,
  });
}
