// The one place that maps a backend name to its implementation: the runtime opens a backend here and
// the engine cache asks here what a target's engines depend on, so neither names backends/cpu or
// backends/cuda. The table is static: Session.open is synchronous and Node 20 has no synchronous
// dynamic import of an ES module, so choosing lazily would make opening a model asynchronous.
import type { ModelConfig } from "../checkpoint/model_config.ts";
import type { BackendName } from "../engine/build_config.ts";
import type { Plan } from "../engine/format.ts";
import type { LoadedEngine } from "../engine/reader.ts";
import type { ExecutionBackend, LinearInputObserver, StepInput } from "./backend.ts";
import { CpuBackend } from "./cpu/cpu_backend.ts";
import { cudaCalibrationBackend } from "./cuda/calibration_backend.ts";
import { CudaBackend } from "./cuda/cuda_backend.ts";
import { CudaDevice } from "./cuda/device/index.ts";
import { kernelSourcesHash } from "./cuda/kernel_modules.ts";
import type { CudaTuning } from "./cuda/tuning.ts";
import { checkKvCacheDtype, type KvCacheDtype } from "./kv_cache_dtype.ts";

export type { CudaTuning, LinearInputObserver };

interface BackendEntry {
  /** The engine's plan and weights loaded onto this backend (the CUDA backend takes its tuning), its
   * KV pool stored as `kvCacheDtype` (checked by checkKvCacheDtype first). */
  open(engine: LoadedEngine, kvCacheDtype: KvCacheDtype, cudaTuning?: CudaTuning): ExecutionBackend;
  /** What an engine built for this backend depends on besides the checkpoint and the build config
   * (a part of its cache key); "" when nothing. */
  targetIdentity(): string;
}

const BACKENDS: Readonly<Record<BackendName, BackendEntry>> = {
  cpu: {
    open: (engine, kvCacheDtype) => CpuBackend.fromEngine(engine, kvCacheDtype),
    targetIdentity: () => "",
  },
  // A CUDA engine is compiled for one GPU architecture from kiln's kernel sources.
  cuda: {
    open: (engine, kvCacheDtype, cudaTuning) => CudaBackend.fromEngine(engine, cudaTuning, kvCacheDtype),
    targetIdentity: () => `${cudaArch()}:${kernelSourcesHash()}`,
  },
};

/** Loads `engine` onto the named backend, its KV cache stored as `kvCacheDtype` (default "auto"); the
 * caller disposes the result. A dtype the backend cannot store is refused before anything opens
 * (KvCacheDtypeUnsupportedError). */
export function openBackend(
  engine: LoadedEngine,
  name: BackendName,
  cudaTuning?: CudaTuning,
  kvCacheDtype: KvCacheDtype = "auto",
): ExecutionBackend {
  checkKvCacheDtype(name, kvCacheDtype);
  return BACKENDS[name].open(engine, kvCacheDtype, cudaTuning);
}

/** The cache-key part for engines of the named backend on this machine ("" for the CPU). */
export function targetIdentity(name: BackendName): string {
  return BACKENDS[name].targetIdentity();
}

/** The NVRTC architecture of GPU 0, e.g. "sm_90a". */
function cudaArch(): string {
  const device = CudaDevice.open(0);
  try {
    return device.properties.nvrtcArch;
  } finally {
    device.dispose();
  }
}

/** Where the builder's calibration runs: the CPU backend (the reference), or GPU 0 through the CUDA
 * backend, given the plan's fp32 kernel modules compiled for it (by cubinBlobName; the builder's CUDA
 * target compiles them) and the most tokens one calibration step carries. */
export type CalibrationTarget =
  | { backend: "cpu" }
  | { backend: "cuda"; cubins: ReadonlyMap<string, Uint8Array>; maxTokens: number };

/** A backend over a plan and fp32 weights held in memory, before any engine exists, calling `observe`
 * with every linear op's input x [rows, inFeatures] (fp32, on either backend): the builder runs
 * calibration text through the network it is building (AWQ). The caller allocates its KV cache and
 * disposes it. */
export function openCalibrationBackend(
  model: ModelConfig,
  plan: Plan,
  weights: Map<string, Float32Array>,
  kvBlockSize: number,
  observe: LinearInputObserver,
  target: CalibrationTarget = { backend: "cpu" },
): ExecutionBackend & { forward(step: StepInput): Float32Array } {
  if (target.backend === "cuda")
    return cudaCalibrationBackend(
      { model, plan, weights, blobs: target.cubins, kvBlockSize, maxTokens: target.maxTokens },
      observe,
    );
  return new CpuBackend(model, plan, weights, kvBlockSize, new Map(), "auto", observe);
}
