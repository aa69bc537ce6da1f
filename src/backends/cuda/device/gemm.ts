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
import { ELEMENT_BYTES } from "../../../dtype.ts";
import { InvalidArgumentError } from "../../../errors.ts";
import type { HeuristicResult } from "../ffi/cublaslt.ts";
import { CublasError } from "../ffi/errors.ts";
import type { DevicePtr } from "../ffi/handles.ts";
import { DeviceBuffer } from "./buffer.ts";
import {
  createPlan,
  describeGemm,
  destroyPlan,
  type FullConfig,
  type GemmConfig,
  heuristics,
  inputBytes,
  layouts,
  matmul,
  normalize,
  type Plan,
  takesScales,
} from "./cublaslt_descriptors.ts";
import type { CudaDevice } from "./device.ts";
import { timeOnStream } from "./event.ts";
import { Stream } from "./stream.ts";

export type { GemmConfig };

type Operand = DeviceBuffer | DevicePtr;

export class Gemm implements Disposable {
  /** GPU milliseconds per run of the chosen algorithm, when chosen by tune(). */
  measuredMs: number | null = null;
  private plan: Plan | null;
  private readonly workspace: DeviceBuffer;
  /** Whether the workspace is this GEMM's own (freed by dispose) or one its owner shares. */
  private readonly ownsWorkspace: boolean;

  private constructor(
    readonly device: CudaDevice,
    readonly config: Readonly<FullConfig>,
    plan: Plan,
    private readonly choice: HeuristicResult,
    shared?: DeviceBuffer,
  ) {
    this.plan = plan;
    this.ownsWorkspace = shared === undefined;
    this.workspace = shared ?? DeviceBuffer.alloc(device, choice.workspaceBytes);
    device.liveObjects++;
  }

  /** The opaque 64-byte cublasLtMatmulAlgo_t; an engine stores it and passes it back as options.algo. */
  get algo(): Uint8Array {
    return this.choice.algo.slice();
  }
  get workspaceBytes(): number {
    return this.choice.workspaceBytes;
  }

  /** A GEMM using `options.algo` if given (checked), else the heuristic's first choice. With
   * `options.workspace` (at least maxWorkspaceBytes) it runs in that buffer instead of its own: GEMMs
   * queued on one stream may share one, which their owner frees after them. */
  static create(
    device: CudaDevice,
    config: GemmConfig,
    options: { algo?: Uint8Array; workspace?: DeviceBuffer } = {},
  ): Gemm {
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
      const ws = options.workspace;
      if (ws && ws.bytes < choice.workspaceBytes)
        throw new InvalidArgumentError(
          `a shared GEMM workspace of ${ws.bytes} bytes is smaller than the ${choice.workspaceBytes} bytes ${describeGemm(full)} needs`,
        );
      return new Gemm(device, full, plan, choice, ws);
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
      const { m, n, k, dtypeOut } = full;
      const x = scratch(m * k * inputBytes(full));
      const w = scratch(n * k * inputBytes(full));
      const y = scratch(m * n * ELEMENT_BYTES[dtypeOut]);
      // 0x3c3c3c3c: 0.0115 in fp32, a scale for every row; 0x3c is 1.5 in E4M3.
      const scales = takesScales(full) ? { x: scratch(m * 4).ptr, w: scratch(n * 4).ptr } : undefined;
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
            stream.handle,
            x.ptr,
            w.ptr,
            y.ptr,
            bias?.ptr,
            scales,
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
          `no candidate ran for ${describeGemm(full)}`,
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

  /** Queues y = x · Wᵀ (+ bias) on `stream`. Operands are device buffers or pointers (see class comment).
   * An fp8 GEMM with outer-vector scales needs `scales`: x's [m] and W's [n] fp32 vectors. */
  run(
    stream: Stream,
    x: Operand,
    w: Operand,
    y: Operand,
    bias?: Operand,
    scales?: { x: Operand; w: Operand },
  ): void {
    const plan = this.plan;
    if (plan === null) throw new Error("Gemm is disposed");
    const { m, n, k, dtypeOut } = this.config;
    const inBytes = inputBytes(this.config);
    if (takesScales(this.config) !== (scales !== undefined)) {
      throw new InvalidArgumentError(
        `this GEMM ${takesScales(this.config) ? "needs" : "takes no"} scale vectors; run() got ${scales ? "" : "no "}scales`,
      );
    }
    if (this.config.bias !== (bias !== undefined)) {
      throw new InvalidArgumentError(
        `this GEMM was created with bias: ${this.config.bias}; run() got ${bias ? "a" : "no"} bias`,
      );
    }
    const ptr = (name: string, op: Operand, bytes: number, alignment = this.config.alignment): DevicePtr => {
      if (op instanceof DeviceBuffer && op.bytes < bytes) {
        throw new RangeError(`GEMM ${name} needs ${bytes} bytes; the buffer has ${op.bytes}`);
      }
      const p = op instanceof DeviceBuffer ? op.ptr : op;
      if (p % BigInt(alignment) !== 0n) {
        throw new RangeError(`GEMM ${name} at 0x${p.toString(16)} is not ${alignment}-byte aligned`);
      }
      return p;
    };
    matmul(
      plan,
      this.config,
      this.choice.algo,
      this.workspace.ptr,
      this.choice.workspaceBytes,
      stream.handle,
      ptr("x", x, m * k * inBytes),
      ptr("W", w, n * k * inBytes),
      ptr("y", y, m * n * ELEMENT_BYTES[dtypeOut]),
      bias === undefined ? undefined : ptr("bias", bias, n * ELEMENT_BYTES[dtypeOut]),
      // Scale vectors: 16-byte aligned (an fp8 weight's scales follow its q bytes, k a multiple of 16).
      scales && { x: ptr("x scales", scales.x, m * 4, 16), w: ptr("W scales", scales.w, n * 4, 16) },
    );
  }

  /** Destroys the descriptors and frees its own workspace (not a shared one). Idempotent. */
  dispose(): void {
    if (this.plan === null) return;
    destroyPlan(this.plan);
    this.plan = null;
    if (this.ownsWorkspace) this.workspace.dispose();
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
