// Build step for --quantize int4-awq with --backend cuda: AWQ's calibration forward and both searches
// run on GPU 0 (docs/QUANTIZATION.md). Compiles, in one parallel NVRTC batch, the plan's kernel modules
// in fp32 for the calibration backend (cudaCalibrationBackend (calibration_backend.ts)) and kernels/awq_search.cu for the
// searches' error energies (backends/cuda/awq_energies.ts). Neither is stored in the engine.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AwqEnergies } from "../../backends/cuda/awq_energies.ts";
import { CudaDevice } from "../../backends/cuda/device/index.ts";
import { cubinBlobName, KERNELS_DIR, moduleSource, moduleSpecs } from "../../backends/cuda/kernel_modules.ts";
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { Plan } from "../../engine/format.ts";
import { CALIBRATION_KV_BLOCK } from "../calibration_run.ts";
import type { AwqTarget } from "../passes/awq/awq.ts";
import type { EnergyDevice } from "../passes/awq/energy_device.ts";
import { compileAll } from "./parallel_compile.ts";

/** AWQ on GPU 0 for `plan`, calibrating in windows of at most `window` tokens. */
export function cudaAwqTarget(model: ModelConfig, plan: Plan, window: number): AwqTarget {
  const device = CudaDevice.open(0);
  let arch: string;
  try {
    arch = device.properties.nvrtcArch;
  } finally {
    device.dispose();
  }
  const specs = moduleSpecs(model, plan, "fp32", CALIBRATION_KV_BLOCK);
  const options = (defines: Record<string, number>) => ({ arch, defines, includeDirs: [KERNELS_DIR] });
  const cubins = compileAll([
    ...specs.map((spec) => ({ source: moduleSource(spec), name: spec.file, options: options(spec.defines) })),
    {
      source: readFileSync(join(KERNELS_DIR, "awq_search.cu"), "utf8"),
      name: "awq_search.cu",
      options: options({}),
    },
  ]);
  const awqCubin = cubins[specs.length];
  return {
    calibration: {
      backend: "cuda",
      cubins: new Map(specs.map((spec, i) => [cubinBlobName(spec.key), cubins[i]])),
      maxTokens: window,
    },
    openEnergies: (): EnergyDevice => AwqEnergies.open(awqCubin),
  };
}
