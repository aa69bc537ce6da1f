// One GPU, opened through its primary context: properties, memory info, and the per-device handles
// (cuBLASLt) that the other device objects share. Open with CudaDevice.open(), end with dispose().

import { type CublasLt, type LtHandle, loadCublasLt } from "../ffi/cublaslt.ts";
import { type Driver, loadDriver } from "../ffi/driver.ts";
import { CU_DEVICE_ATTRIBUTE, CU_RESULT_UNAVAILABLE } from "../ffi/driver_enums.ts";
import { CudaError, CudaUnavailableError } from "../ffi/errors.ts";
import type { CuContext, CuDevice } from "../ffi/handles.ts";

/** CUDA 12.3: the first driver that captures programmatic dependent launches into graphs. */
export const PDL_MIN_DRIVER_VERSION = 12030;

export interface DeviceProperties {
  ordinal: number;
  /** e.g. "NVIDIA H100 80GB HBM3". */
  name: string;
  computeCapability: readonly [major: number, minor: number];
  /** e.g. "sm_90". */
  sm: string;
  /** The NVRTC target for kernels: the arch-specific "sm_90a" from Hopper on, else `sm`. */
  nvrtcArch: string;
  smCount: number;
  totalMemBytes: number;
  maxSharedMemPerBlockOptin: number;
  l2CacheBytes: number;
  /** CUDA version the driver supports, e.g. 13000 for 13.0. */
  driverVersion: number;
}

export class CudaDevice implements Disposable {
  /** Device memory currently held by live DeviceBuffers of this device. */
  liveBytes = 0;
  /** Live DeviceBuffers / streams / events / modules / graphs / GEMMs, for leak checks. */
  liveObjects = 0;
  private blasLtHandle: LtHandle | null = null;
  private disposed = false;

  private constructor(
    /** The driver binding; device objects call it directly. */
    readonly driver: Driver,
    readonly handle: CuDevice,
    readonly context: CuContext,
    readonly properties: DeviceProperties,
  ) {}

  /**
   * Initializes the driver, retains device `ordinal`'s primary context and makes it current.
   * Throws CudaUnavailableError when there is no driver or no usable device.
   */
  static open(ordinal = 0): CudaDevice {
    const driver = loadDriver();
    try {
      driver.init();
    } catch (e) {
      if (e instanceof CudaError && CU_RESULT_UNAVAILABLE.has(e.code)) {
        throw new CudaUnavailableError(`the driver (${driver.path}) found no usable GPU: ${e.message}.`, [], {
          cause: e,
        });
      }
      throw e;
    }
    const count = driver.deviceGetCount();
    if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) {
      throw new CudaUnavailableError(`GPU ${ordinal} was requested but the driver sees ${count} GPU(s).`);
    }
    const dev = driver.deviceGet(ordinal);
    const attr = (a: number) => driver.deviceGetAttribute(a, dev);
    const major = attr(CU_DEVICE_ATTRIBUTE.COMPUTE_CAPABILITY_MAJOR);
    const minor = attr(CU_DEVICE_ATTRIBUTE.COMPUTE_CAPABILITY_MINOR);
    const sm = `sm_${major}${minor}`;
    const properties: DeviceProperties = {
      ordinal,
      name: driver.deviceGetName(dev),
      computeCapability: [major, minor],
      sm,
      nvrtcArch: major >= 9 ? `${sm}a` : sm,
      smCount: attr(CU_DEVICE_ATTRIBUTE.MULTIPROCESSOR_COUNT),
      totalMemBytes: driver.deviceTotalMem(dev),
      maxSharedMemPerBlockOptin: attr(CU_DEVICE_ATTRIBUTE.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
      l2CacheBytes: attr(CU_DEVICE_ATTRIBUTE.L2_CACHE_SIZE),
      driverVersion: driver.driverGetVersion(),
    };
    const ctx = driver.devicePrimaryCtxRetain(dev);
    try {
      driver.ctxSetCurrent(ctx);
    } catch (e) {
      driver.devicePrimaryCtxRelease(dev);
      throw e;
    }
    return new CudaDevice(driver, dev, ctx, properties);
  }

  get name(): string {
    return this.properties.name;
  }
  get sm(): string {
    return this.properties.sm;
  }
  get smCount(): number {
    return this.properties.smCount;
  }
  get totalMemBytes(): number {
    return this.properties.totalMemBytes;
  }
  get driverVersion(): number {
    return this.properties.driverVersion;
  }

  /**
   * Whether kernels can be launched with programmatic dependent launch: Hopper or newer (the
   * griddepcontrol instructions are sm_90+), cuLaunchKernelEx exported, and a CUDA 12.3+ driver
   * (stream capture of PDL launches into graphs).
   */
  get pdlCapable(): boolean {
    return (
      this.properties.computeCapability[0] >= 9 &&
      this.properties.driverVersion >= PDL_MIN_DRIVER_VERSION &&
      this.driver.hasLaunchKernelEx
    );
  }

  /** Binds this device's context to the calling thread (needed only when several devices are open). */
  makeCurrent(): void {
    this.assertOpen();
    this.driver.ctxSetCurrent(this.context);
  }

  /** Waits for all work on the device. */
  synchronize(): void {
    this.assertOpen();
    this.driver.ctxSynchronize();
  }

  /** Free and total device memory in bytes (cuMemGetInfo). */
  memoryInfo(): { free: number; total: number } {
    this.assertOpen();
    return this.driver.memGetInfo();
  }

  /** The cuBLASLt binding and this device's handle (created on first use, destroyed with the device). */
  blasLt(): { api: CublasLt; handle: LtHandle } {
    this.assertOpen();
    const api = loadCublasLt();
    if (this.blasLtHandle === null) this.blasLtHandle = api.create();
    return { api, handle: this.blasLtHandle };
  }

  assertOpen(): void {
    if (this.disposed) throw new Error(`CudaDevice ${this.properties.ordinal} is disposed`);
  }

  /** Destroys the cuBLASLt handle and releases the primary context. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.blasLtHandle !== null) {
      loadCublasLt().destroy(this.blasLtHandle);
      this.blasLtHandle = null;
    }
    this.driver.devicePrimaryCtxRelease(this.handle);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
