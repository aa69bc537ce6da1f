// The builder's calibration on the GPU (int4-awq): the CUDA backend over a plan and fp32 weights held in
// memory (memory_engine.ts), calling `observe` with every linear's input, copied to the host before the
// linear runs. Every step runs eagerly with nothing fused across a linear's input (no graphs, no PDL,
// the gated activation as its own kernel; fp32 linears run on cuBLASLt, never in a gated GEMV
// epilogue), so every input exists as a buffer.
import { CalibrationMemoryError } from "../../engine/calibration.ts";
import type { LinearInputObserver } from "../backend.ts";
import { CudaBackend } from "./cuda_backend.ts";
import { CudaDevice } from "./device/index.ts";
import { type MemoryEngineSpec, memoryEngine } from "./memory_engine.ts";
import { cudaTuning } from "./tuning.ts";

/** Opens GPU 0 for calibration; CalibrationMemoryError when the fp32 weights do not fit its free memory. */
export function cudaCalibrationBackend(spec: MemoryEngineSpec, observe: LinearInputObserver): CudaBackend {
  const engine = memoryEngine(spec);
  const bytes = engine.header.weights.reduce((n, w) => n + w.byteLength, 0);
  const device = CudaDevice.open(0);
  let free: number;
  let name: string;
  try {
    free = device.memoryInfo().free;
    name = device.name;
  } finally {
    device.dispose();
  }
  if (bytes > free) {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    throw new CalibrationMemoryError(
      `--quantize int4-awq with --backend cuda calibrates over fp32 weights: ${gib(bytes)}, but GPU 0 (${name}) has ${gib(free)} free; ` +
        "free the GPU, or build with --backend cpu (the same engine, calibrated on the CPU, far slower)",
    );
  }
  const tuning = cudaTuning({ graphs: false, pdl: false, fuseGatedAct: false, ropeFuse: false });
  const backend = CudaBackend.fromEngine(engine, tuning);
  backend.observeLinears(observe);
  return backend;
}
