// Named errors of the CUDA binding layer. Every CUresult / nvrtcResult / cublasStatus_t that is not
// success becomes one of these in the binding layer; callers never see raw codes.
import { KilnError } from "../../../errors.ts";

const UNAVAILABLE_FIX = "install the NVIDIA driver / CUDA 13 toolkit, or use --backend cpu";

/** One place a shared library was looked for, and why it was not used. */
export interface LibraryAttempt {
  /** Absolute path, or a bare soname resolved by the dynamic loader (LD_LIBRARY_PATH, ldconfig). */
  candidate: string;
  reason: string;
}

/** No usable GPU stack: a library is missing, or the driver reports no usable device. */
export class CudaUnavailableError extends KilnError {
  readonly attempts: readonly LibraryAttempt[];
  constructor(what: string, attempts: readonly LibraryAttempt[] = [], options?: { cause?: unknown }) {
    // One line; the places searched (often a dozen) are details, printed with --verbose.
    const tried =
      attempts.length === 1
        ? ` (tried ${attempts[0].candidate}: ${attempts[0].reason})`
        : attempts.length > 1
          ? ` (--verbose lists the ${attempts.length} places searched)`
          : "";
    super(`CUDA is not available: ${what} Fix: ${UNAVAILABLE_FIX}${tried}.`, {
      ...options,
      details: attempts.map((a) => `tried ${a.candidate}: ${a.reason}`),
    });
    this.attempts = attempts;
  }
}

/** A CUDA driver call returned a CUresult other than CUDA_SUCCESS. */
export class CudaError extends KilnError {
  constructor(
    /** The driver entry point, e.g. "cuMemAlloc_v2". */
    readonly call: string,
    /** The raw CUresult, for code that must branch on it (e.g. CUDA_ERROR_NO_DEVICE = 100). */
    readonly code: number,
    /** e.g. "CUDA_ERROR_OUT_OF_MEMORY" (from cuGetErrorName). */
    readonly errorName: string,
    description: string,
    detail?: string,
  ) {
    super(`${call} failed: ${errorName} (${code}): ${description}${detail ? ` [${detail}]` : ""}`);
  }
}

/** A kernel launched with another number of arguments than its cubin declares (a stale cubin, or a
 * caller out of step with the kernel's signature): caught before cuLaunchKernel, which would read
 * argument pointers past the array it is given. */
export class KernelArgumentError extends KilnError {
  constructor(
    readonly kernel: string,
    readonly expected: number,
    readonly got: number,
  ) {
    super(
      `kernel ${kernel} takes ${expected} arguments but was launched with ${got}; the cubin and its caller disagree (rebuild the engine with kiln build if it predates this kiln)`,
    );
  }
}

/** An NVRTC call failed; for compilation failures `log` holds the compiler's output. */
export class NvrtcError extends KilnError {
  constructor(
    readonly call: string,
    readonly code: number,
    readonly errorName: string,
    /** The program name given to nvrtcCreateProgram, e.g. "rmsnorm.cu". */
    readonly program: string,
    readonly log: string,
  ) {
    // One line naming the first error of the log; the whole log is details (--verbose).
    const lines = log.split("\n").filter((l) => l.trim() !== "");
    const first = lines.find((l) => /error/i.test(l)) ?? lines[0];
    const more = lines.length > 1 ? ` (--verbose prints the ${lines.length}-line log)` : "";
    super(`${call} failed for ${program}: ${errorName} (${code})${first ? `: ${first.trim()}` : ""}${more}`, {
      details: lines,
    });
  }
}

/** A cuBLASLt call returned a cublasStatus_t other than CUBLAS_STATUS_SUCCESS. */
export class CublasError extends KilnError {
  constructor(
    readonly call: string,
    readonly code: number,
    /** e.g. "CUBLAS_STATUS_NOT_SUPPORTED" (from cublasLtGetStatusName). */
    readonly statusName: string,
    detail?: string,
  ) {
    super(`${call} failed: ${statusName} (${code})${detail ? `: ${detail}` : ""}`);
  }
}
