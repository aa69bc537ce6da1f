// Build step for the CUDA target: compile every kernel module the plan needs with NVRTC for the GPU
// the build runs on (shapes and dtype as macros), and record the target (SM, library versions) so a
// mismatched GPU rejects the engine at load.

import { CudaDevice, Gemm } from "../../backends/cuda/device/index.ts";
import { loadCublasLt } from "../../backends/cuda/ffi/cublaslt.ts";
import { loadNvrtc } from "../../backends/cuda/ffi/nvrtc.ts";
import {
  engineRowLimits,
  GEMM_TABLE_BLOB,
  GEMM_WORKSPACE_BYTES,
  type GemmChoice,
  gemmShapes,
} from "../../backends/cuda/gemm_algorithms.ts";
import {
  cubinBlobName,
  KERNELS_DIR,
  moduleSource,
  moduleSpecs,
  quantizedModules,
} from "../../backends/cuda/kernel_modules.ts";
import { lower } from "../../backends/cuda/lowering.ts";
import { assertFp8Capable } from "../../backends/cuda/weight_formats.ts";
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { DTypeName } from "../../dtype.ts";
import type { BuildConfig } from "../../engine/build_config.ts";
import type { EngineTarget, Plan } from "../../engine/format.ts";
import { compileAll } from "./parallel_compile.ts";

export interface CudaArtifacts {
  target: EngineTarget;
  blobs: { name: string; bytes: Uint8Array }[];
  compileSeconds: number;
}

export function buildCudaArtifacts(
  model: ModelConfig,
  plan: Plan,
  dtype: DTypeName,
  build: {
    kvBlockSize: number;
    maxNumTokens: number;
    maxBatchSize: number;
    quantize: BuildConfig["quantize"];
  },
  /** The engine's weights as stored (their formats: --quantize's, or a pre-quantized checkpoint's). */
  weights: readonly { name: string; format?: string }[] = [],
): CudaArtifacts {
  const formats = new Set(weights.flatMap((w) => (w.format ? [w.format] : [])));
  // fp8 linears run cuBLASLt's FP8 GEMM, planned at load: no engine-dtype GEMM to tune for them.
  const fp8Weights = new Set(weights.filter((w) => w.format === "fp8").map((w) => w.name));
  const t0 = performance.now();
  const kvBlockSize = build.kvBlockSize;
  const device = CudaDevice.open(0);
  try {
    const p = device.properties;
    // Every kernel module at once, one worker thread each (parallel_compile.ts); NVRTC is loaded here
    // first, on the main thread.
    const nvrtc = loadNvrtc();
    const modules = quantizedModules(formats);
    if (modules.fp8) assertFp8Capable("an fp8 engine", p);
    const specs = moduleSpecs(model, plan, dtype, kvBlockSize, modules);
    const cubins = compileAll(
      specs.map((spec) => ({
        source: moduleSource(spec),
        name: spec.file,
        options: { arch: p.nvrtcArch, defines: spec.defines, includeDirs: [KERNELS_DIR] },
      })),
    );
    const blobs = specs.map((spec, i) => ({ name: cubinBlobName(spec.key), bytes: cubins[i] }));
    // GEMM algorithms: time the heuristic's candidates for every shape and keep the fastest.
    const { maxTokens, maxLogitRows } = engineRowLimits(build);
    const table: GemmChoice[] = gemmShapes(
      lower(plan, model),
      dtype,
      maxTokens,
      maxLogitRows,
      fp8Weights,
    ).map((s) => {
      const g = Gemm.tune(
        device,
        {
          m: s.m,
          n: s.n,
          k: s.k,
          dtypeIn: dtype,
          dtypeOut: s.fp32Out ? "fp32" : dtype,
          bias: s.bias,
          maxWorkspaceBytes: GEMM_WORKSPACE_BYTES,
        },
        { candidates: 8, iterations: 10, warmup: 2 },
      );
      try {
        return { ...s, algo: Buffer.from(g.algo).toString("base64"), ms: g.measuredMs ?? 0 };
      } finally {
        g.dispose();
      }
    });
    blobs.push({ name: GEMM_TABLE_BLOB, bytes: new TextEncoder().encode(JSON.stringify(table)) });
    return {
      target: {
        backend: "cuda",
        sm: p.sm,
        nvrtcArch: p.nvrtcArch,
        deviceName: p.name,
        driverVersion: p.driverVersion,
        nvrtcVersion: `${nvrtc.version().major}.${nvrtc.version().minor}`,
        cublasLtVersion: loadCublasLt().version(),
      },
      blobs,
      compileSeconds: (performance.now() - t0) / 1000,
    };
  } finally {
    device.dispose();
  }
}
