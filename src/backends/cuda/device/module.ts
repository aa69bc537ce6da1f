// A loaded cubin (CudaModule) and its kernels. Kernels are compiled by NVRTC at engine build time
// (ffi/nvrtc.ts) and loaded from the engine; `launch` takes typed arguments (ffi/kernel_args.ts).
import type { LaunchOptions } from "../ffi/driver.ts";
import type { Dim3 } from "../ffi/driver_enums.ts";
import { CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES } from "../ffi/driver_enums.ts";
import { KernelArgumentError } from "../ffi/errors.ts";
import type { CuFunction, CuModule } from "../ffi/handles.ts";
import type { KernelArg } from "../ffi/kernel_args.ts";
import type { CudaDevice } from "./device.ts";
import type { Stream } from "./stream.ts";

export type { Dim3, KernelArg, LaunchOptions };

/** Dynamic shared memory a kernel may use without opting in (48 KiB on every GPU since Volta). */
const DEFAULT_DYNAMIC_SHARED_BYTES = 48 * 1024;

export class CudaModule implements Disposable {
  private module: CuModule | null;
  private readonly kernels = new Map<string, Kernel>();

  private constructor(
    readonly device: CudaDevice,
    handle: CuModule,
  ) {
    this.module = handle;
  }

  /** Loads a cubin into the device's context. */
  static load(device: CudaDevice, cubin: Uint8Array): CudaModule {
    device.assertOpen();
    const handle = device.driver.moduleLoadData(cubin);
    device.liveObjects++;
    return new CudaModule(device, handle);
  }

  get handle(): CuModule {
    if (this.module === null) throw new Error("CudaModule is disposed");
    return this.module;
  }

  assertLoaded(): void {
    if (this.module === null) throw new Error("CudaModule is disposed");
  }

  /** The `extern "C"` kernel `name` (throws CudaError CUDA_ERROR_NOT_FOUND naming it if absent). */
  kernel(name: string): Kernel {
    let k = this.kernels.get(name);
    if (!k) {
      k = new Kernel(this, name, this.device.driver.moduleGetFunction(this.handle, name));
      this.kernels.set(name, k);
    }
    return k;
  }

  /** Unloads the module; its kernels become unusable. Idempotent. */
  dispose(): void {
    if (this.module === null) return;
    this.device.driver.moduleUnload(this.module);
    this.module = null;
    this.kernels.clear();
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

export class Kernel {
  private maxDynamicShared = DEFAULT_DYNAMIC_SHARED_BYTES;
  /** Parameters the cubin declares (null: the driver cannot tell); read at the first launch. */
  private params: number | null | undefined;

  constructor(
    readonly module: CudaModule,
    readonly name: string,
    private readonly fn: CuFunction,
  ) {}

  /** Opts in to more than 48 KiB of dynamic shared memory (up to the device's optin limit). */
  setMaxDynamicSharedBytes(bytes: number): void {
    this.module.assertLoaded();
    this.module.device.driver.funcSetAttribute(
      this.fn,
      CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
      bytes,
    );
    this.maxDynamicShared = bytes;
  }

  /**
   * Queues the kernel on `stream`; opts in to `sharedBytes` of dynamic shared memory when above 48 KiB.
   * `options.pdl`: programmatic dependent launch where the device supports it (CudaDevice.pdlCapable),
   * else a plain launch; only for kernels that follow kernels/pdl.cuh's rule (every kiln kernel).
   */
  launch(
    stream: Stream,
    grid: Dim3,
    block: Dim3,
    sharedBytes: number,
    args: readonly KernelArg[],
    options: LaunchOptions = {},
  ): void {
    this.module.assertLoaded();
    const device = this.module.device;
    if (this.params === undefined) this.params = device.driver.funcParamCount(this.fn);
    if (this.params !== null && args.length !== this.params)
      throw new KernelArgumentError(this.name, this.params, args.length);
    if (sharedBytes > this.maxDynamicShared) this.setMaxDynamicSharedBytes(sharedBytes);
    const pdl = options.pdl === true && device.pdlCapable;
    device.driver.launchKernel(this.fn, grid, block, sharedBytes, stream.handle, args, { pdl });
  }
}
