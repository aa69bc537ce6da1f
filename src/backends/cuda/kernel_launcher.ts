// The engine's compiled kernel modules (cubins stored in the engine for its GPU), loaded once, and the
// one place kiln kernels are launched from: on the backend's stream, with programmatic dependent launch
// when the current step asks for it, and never the kernels KILN_SKIP_KERNELS leaves out.
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { DTypeName } from "../../dtype.ts";
import { EngineError } from "../../engine/errors.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import { checkDecodeMmaCurrent } from "./decode_mma.ts";
import { type CudaDevice, CudaModule, type KernelArg, type Stream } from "./device/index.ts";
import { CudaError } from "./ffi/errors.ts";
import { cubinBlobName, type ModuleKey, moduleSpecs, quantizedModules } from "./kernel_modules.ts";

export class KernelLauncher {
  /** PDL for the launches of the current step: decode-sized steps only (≤ PDL_MAX_ROWS rows), whose
   * GEMMs (our GEMV, or cuBLASLt's single-wave kernels from 3 rows) leave SMs free for kernels that wait.
   * Larger steps' cuBLASLt GEMMs may release dependents early: a waiting kernel's CTAs would then hold
   * SM slots the GEMM's later waves need. Set by the backend before each step's launches. */
  pdl = false;

  private constructor(
    private readonly stream: Stream,
    private readonly modules: Map<ModuleKey, CudaModule>,
    private readonly skip: ReadonlySet<string>,
  ) {}

  /** Loads every module the engine's plan needs; a missing one is an EngineError naming the fix. */
  static load(
    device: CudaDevice,
    stream: Stream,
    engine: LoadedEngine,
    model: ModelConfig,
    dtype: DTypeName,
    kvBlockSize: number,
    skip: ReadonlySet<string>,
  ): KernelLauncher {
    const modules = new Map<ModuleKey, CudaModule>();
    const needs = quantizedModules(engine.header.weights.map((w) => w.format));
    for (const spec of moduleSpecs(model, engine.header.plan, dtype, kvBlockSize, needs)) {
      const cubin = engine.readBlob(cubinBlobName(spec.key));
      if (!cubin)
        throw new EngineError(
          `engine ${engine.dir} lacks the compiled kernel module "${spec.key}"; rebuild it with kiln build --backend cuda`,
        );
      modules.set(spec.key, CudaModule.load(device, cubin));
    }
    const launcher = new KernelLauncher(stream, modules, skip);
    try {
      checkDecodeMmaCurrent(engine.dir, (k) => launcher.hasKernel("attn_decode_mma", k));
    } catch (e) {
      launcher.dispose();
      throw e;
    }
    return launcher;
  }

  /** Whether the engine has module `mod` (the sampler and the GEMVs are optional). */
  has(mod: ModuleKey): boolean {
    return this.modules.has(mod);
  }

  /** Whether module `mod` exports `kernel` (an engine compiled before a kernel was added lacks it). */
  hasKernel(mod: ModuleKey, kernel: string): boolean {
    const m = this.modules.get(mod);
    if (!m) return false;
    try {
      m.kernel(kernel);
      return true;
    } catch (e) {
      if (e instanceof CudaError && e.errorName === "CUDA_ERROR_NOT_FOUND") return false;
      throw e;
    }
  }

  launch(
    mod: ModuleKey,
    kernel: string,
    grid: [number, number?, number?],
    block: number,
    args: KernelArg[],
    sharedBytes = 0,
  ): void {
    if (grid.some((d) => d === 0)) return; // nothing to do (e.g. no logit rows in a prefill chunk)
    if (this.skip.has(kernel)) return;
    const m = this.modules.get(mod);
    if (!m) throw new Error(`internal: module ${mod} not loaded`);
    // Every kiln kernel waits for its predecessor itself (griddepcontrol.wait), so it may be launched
    // early; cuBLASLt's kernels do not, and keep plain launches (Gemm.run).
    const dims: [number, number, number] = [grid[0], grid[1] ?? 1, grid[2] ?? 1];
    m.kernel(kernel).launch(this.stream, dims, [block, 1, 1], sharedBytes, args, { pdl: this.pdl });
  }

  /** Opts `kernel` in to `bytes` of dynamic shared memory now, outside any graph capture, so that its
   * launches (a decode graph's first among them) change no function attribute. */
  reserveSharedMemory(mod: ModuleKey, kernel: string, bytes: number): void {
    const m = this.modules.get(mod);
    if (!m) throw new Error(`internal: module ${mod} not loaded`);
    m.kernel(kernel).setMaxDynamicSharedBytes(bytes);
  }

  dispose(): void {
    for (const m of this.modules.values()) m.dispose();
    this.modules.clear();
  }
}
