// Typed bindings for the CUDA driver API (libcuda.so.1). Every CUresult other than CUDA_SUCCESS
// becomes a CudaError naming the call; handles are branded bigints (handles.ts).
// Signatures and enum values are from cuda.h of CUDA 13.0 (CUDA_VERSION 13000); versioned entry
// points are bound by their exported names (cuda.h maps e.g. cuMemAlloc → cuMemAlloc_v2, lines 89-172).
import type { LibraryHandle } from "koffi";
import { bindFirst, type CFunction, out64, outI32 } from "./bind.ts";
import {
  CU_EVENT_DEFAULT,
  CU_STREAM_CAPTURE_MODE,
  CU_STREAM_DEFAULT,
  CUDA_ERROR_NOT_READY,
  type Dim3,
  dim3,
} from "./driver_enums.ts";
import { CudaError, CudaUnavailableError } from "./errors.ts";
import type {
  CuContext,
  CuDevice,
  CuEvent,
  CuFunction,
  CuGraph,
  CuGraphExec,
  CuModule,
  CuStream,
  DevicePtr,
  HostPtr,
} from "./handles.ts";
import { type KernelArg, kernelArgsBytes, packKernelArgs } from "./kernel_args.ts";
import { koffi } from "./koffi.ts";
import { LAUNCH_BLOCK_BYTES, packLaunchConfig } from "./launch_config.ts";
import { loadLibrary } from "./library.ts";

/** Host memory a copy reads or writes: a typed array (its view, at its byteOffset) or pinned memory. */
export type HostArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

// name → [result, params, exported names (newest first)]. CUresult is a C enum (int); handles and
// CUdeviceptr are passed as uint64_t; host memory as void*.
const H = "uint64_t";
const PROTOS = {
  cuGetErrorName: ["int", ["int", "void *"]],
  cuGetErrorString: ["int", ["int", "void *"]],
  cuInit: ["int", ["uint32_t"]],
  cuDriverGetVersion: ["int", ["void *"]],
  cuDeviceGetCount: ["int", ["void *"]],
  cuDeviceGet: ["int", ["void *", "int"]],
  cuDeviceGetName: ["int", ["void *", "int", "int"]],
  cuDeviceGetAttribute: ["int", ["void *", "int", "int"]],
  cuDeviceTotalMem: ["int", ["void *", "int"], ["cuDeviceTotalMem_v2"]],
  cuDevicePrimaryCtxRetain: ["int", ["void *", "int"]],
  cuDevicePrimaryCtxRelease: ["int", ["int"], ["cuDevicePrimaryCtxRelease_v2"]],
  cuCtxSetCurrent: ["int", [H]],
  cuCtxSynchronize: ["int", []],
  cuMemAlloc: ["int", ["void *", "size_t"], ["cuMemAlloc_v2"]],
  cuMemFree: ["int", [H], ["cuMemFree_v2"]],
  cuMemAllocHost: ["int", ["void *", "size_t"], ["cuMemAllocHost_v2"]],
  cuMemFreeHost: ["int", ["void *"]],
  cuMemGetInfo: ["int", ["void *", "void *"], ["cuMemGetInfo_v2"]],
  cuMemcpyHtoD: ["int", [H, "void *", "size_t"], ["cuMemcpyHtoD_v2"]],
  cuMemcpyDtoH: ["int", ["void *", H, "size_t"], ["cuMemcpyDtoH_v2"]],
  cuMemcpyHtoDAsync: ["int", [H, "void *", "size_t", H], ["cuMemcpyHtoDAsync_v2"]],
  cuMemcpyDtoHAsync: ["int", ["void *", H, "size_t", H], ["cuMemcpyDtoHAsync_v2"]],
  cuMemcpyDtoDAsync: ["int", [H, H, "size_t", H], ["cuMemcpyDtoDAsync_v2"]],
  cuMemsetD8Async: ["int", [H, "uint8_t", "size_t", H]],
  cuMemsetD32Async: ["int", [H, "uint32_t", "size_t", H]],
  cuStreamCreate: ["int", ["void *", "uint32_t"]],
  cuStreamDestroy: ["int", [H], ["cuStreamDestroy_v2"]],
  cuStreamSynchronize: ["int", [H]],
  cuStreamWaitEvent: ["int", [H, H, "uint32_t"]],
  cuEventCreate: ["int", ["void *", "uint32_t"]],
  cuEventRecord: ["int", [H, H]],
  cuEventSynchronize: ["int", [H]],
  cuEventQuery: ["int", [H]],
  // cuda.h line 172 maps cuEventElapsedTime → _v2 (CUDA 12.8+); older drivers only have the plain name.
  cuEventElapsedTime: ["int", ["void *", H, H], ["cuEventElapsedTime_v2", "cuEventElapsedTime"]],
  cuEventDestroy: ["int", [H], ["cuEventDestroy_v2"]],
  cuModuleLoadData: ["int", ["void *", "void *"]],
  cuModuleGetFunction: ["int", ["void *", H, "const char *"]],
  cuModuleUnload: ["int", [H]],
  cuFuncSetAttribute: ["int", [H, "int", "int"]],
  cuLaunchKernel: [
    "int",
    [
      H,
      "uint32_t",
      "uint32_t",
      "uint32_t",
      "uint32_t",
      "uint32_t",
      "uint32_t",
      "uint32_t",
      H,
      "void *",
      "void *",
    ],
  ],
  cuStreamBeginCapture: ["int", [H, "int"], ["cuStreamBeginCapture_v2"]],
  cuStreamEndCapture: ["int", [H, "void *"]],
  cuGraphInstantiateWithFlags: ["int", ["void *", H, "uint64_t"]],
  cuGraphLaunch: ["int", [H, H]],
  cuGraphExecDestroy: ["int", [H]],
  cuGraphDestroy: ["int", [H]],
} as const satisfies Record<string, readonly [string, readonly string[], (readonly string[])?]>;

type Fn = keyof typeof PROTOS;

// Entry points kiln can do without (older drivers): bound when exported, else null.
const OPTIONAL_PROTOS = {
  // CUDA 11.8+; programmatic dependent launch needs it (else kernels go through cuLaunchKernel).
  cuLaunchKernelEx: ["int", ["void *", H, "void *", "void *"]],
  // CUDA 12.4+; lets a launch check its argument count (Kernel.launch).
  cuFuncGetParamInfo: ["int", [H, "size_t", "void *", "void *"]],
} as const satisfies Record<string, readonly [string, readonly string[]]>;

type OptionalFn = keyof typeof OPTIONAL_PROTOS;

/** How a kernel is launched beyond its shape. */
export interface LaunchOptions {
  /**
   * Programmatic dependent launch (CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION): the kernel
   * may start while the previous kernel on the stream drains, and must wait for it itself
   * (kernels/pdl.cuh). Ignored (a plain launch) where cuLaunchKernelEx is not exported.
   */
  pdl?: boolean;
}

/** The driver API, one method per entry point; every failure throws CudaError. */
export class Driver {
  /** The exported name bound for each entry point (e.g. cuMemAlloc → "cuMemAlloc_v2"). */
  readonly boundNames: Readonly<Record<Fn, string>>;
  private readonly fns: Record<Fn, CFunction>;
  private readonly optional: Record<OptionalFn, CFunction | null>;
  // Stable (non-moving) memory for cuLaunchKernel's void** block; see kernel_args.ts.
  private argBlock: bigint | null = null;
  private argBlockBytes = 0;
  private argView: Uint8Array | null = null;
  // Stable memory for cuLaunchKernelEx's CUlaunchConfig and its attribute; see launch_config.ts.
  private launchBlock: { base: bigint; view: Uint8Array } | null = null;

  constructor(
    lib: LibraryHandle,
    /** Where libcuda was loaded from. */
    readonly path: string,
  ) {
    const fns = {} as Record<Fn, CFunction>;
    const names = {} as Record<Fn, string>;
    for (const [key, proto] of Object.entries(PROTOS) as [Fn, (typeof PROTOS)[Fn]][]) {
      const exported = proto[2] ?? [key];
      const { fn, name } = bindFirst(lib, exported, proto[0], proto[1]);
      fns[key] = fn;
      names[key] = name;
    }
    this.fns = fns;
    this.boundNames = names;
    const optional = {} as Record<OptionalFn, CFunction | null>;
    for (const [key, proto] of Object.entries(OPTIONAL_PROTOS) as [
      OptionalFn,
      (typeof OPTIONAL_PROTOS)[OptionalFn],
    ][]) {
      try {
        optional[key] = bindFirst(lib, [key], proto[0], proto[1]).fn;
      } catch {
        optional[key] = null;
      }
    }
    this.optional = optional;
  }

  /** Whether the driver exports cuLaunchKernelEx (launch attributes such as PDL). */
  get hasLaunchKernelEx(): boolean {
    return this.optional.cuLaunchKernelEx !== null;
  }

  private call(key: Fn, ...args: unknown[]): void {
    const r = this.fns[key](...args) as number;
    if (r !== 0) throw this.error(this.boundNames[key], r);
  }

  /** The named error for CUresult `code` returned by `call`. */
  error(call: string, code: number, detail?: string): CudaError {
    const name = this.errorText("cuGetErrorName", code) ?? `CUDA_ERROR_${code}`;
    const text = this.errorText("cuGetErrorString", code) ?? "unrecognized error code";
    return new CudaError(call, code, name, text, detail);
  }

  private errorText(key: "cuGetErrorName" | "cuGetErrorString", code: number): string | null {
    const p = out64();
    if ((this.fns[key](code, p) as number) !== 0 || p[0] === 0n) return null;
    return koffi().decode.string(p[0]);
  }

  init(): void {
    this.call("cuInit", 0);
  }
  /** e.g. 13000 for CUDA 13.0. */
  driverGetVersion(): number {
    const v = outI32();
    this.call("cuDriverGetVersion", v);
    return v[0];
  }
  deviceGetCount(): number {
    const n = outI32();
    this.call("cuDeviceGetCount", n);
    return n[0];
  }
  deviceGet(ordinal: number): CuDevice {
    const d = outI32();
    this.call("cuDeviceGet", d, ordinal);
    return d[0] as CuDevice;
  }
  deviceGetName(dev: CuDevice): string {
    const buf = new Uint8Array(256);
    this.call("cuDeviceGetName", buf, buf.length, dev);
    const end = buf.indexOf(0);
    return Buffer.from(buf.subarray(0, end < 0 ? buf.length : end)).toString("utf8");
  }
  deviceGetAttribute(attribute: number, dev: CuDevice): number {
    const v = outI32();
    this.call("cuDeviceGetAttribute", v, attribute, dev);
    return v[0];
  }
  deviceTotalMem(dev: CuDevice): number {
    const v = out64();
    this.call("cuDeviceTotalMem", v, dev);
    return Number(v[0]);
  }
  devicePrimaryCtxRetain(dev: CuDevice): CuContext {
    const c = out64();
    this.call("cuDevicePrimaryCtxRetain", c, dev);
    return c[0] as CuContext;
  }
  devicePrimaryCtxRelease(dev: CuDevice): void {
    this.call("cuDevicePrimaryCtxRelease", dev);
  }
  ctxSetCurrent(ctx: CuContext): void {
    this.call("cuCtxSetCurrent", ctx);
  }
  ctxSynchronize(): void {
    this.call("cuCtxSynchronize");
  }

  memAlloc(bytes: number): DevicePtr {
    const p = out64();
    this.call("cuMemAlloc", p, bytes);
    return p[0] as DevicePtr;
  }
  memFree(ptr: DevicePtr): void {
    this.call("cuMemFree", ptr);
  }
  /** Page-locked host memory (fast, truly asynchronous copies). */
  memAllocHost(bytes: number): HostPtr {
    const p = out64();
    this.call("cuMemAllocHost", p, bytes);
    return p[0] as HostPtr;
  }
  memFreeHost(ptr: HostPtr): void {
    this.call("cuMemFreeHost", ptr);
  }
  /** An ArrayBuffer over `bytes` of pinned memory at `ptr` (no copy; invalid once the memory is freed). */
  hostView(ptr: HostPtr, bytes: number): ArrayBuffer {
    return koffi().view(ptr, bytes);
  }
  memGetInfo(): { free: number; total: number } {
    const f = out64();
    const t = out64();
    this.call("cuMemGetInfo", f, t);
    return { free: Number(f[0]), total: Number(t[0]) };
  }
  /** Synchronous copy of `bytes` (default: all of `src`) to `dst`. */
  memcpyHtoD(dst: DevicePtr, src: HostArray | HostPtr, bytes = hostBytes(src)): void {
    this.call("cuMemcpyHtoD", dst, src, bytes);
  }
  memcpyDtoH(dst: HostArray | HostPtr, src: DevicePtr, bytes = hostBytes(dst)): void {
    this.call("cuMemcpyDtoH", dst, src, bytes);
  }
  /**
   * From pageable memory (a typed array) the driver stages the data before returning, so `src` may be
   * reused at once; only pinned memory gives a truly asynchronous copy.
   */
  memcpyHtoDAsync(dst: DevicePtr, src: HostArray | HostPtr, stream: CuStream, bytes = hostBytes(src)): void {
    this.call("cuMemcpyHtoDAsync", dst, src, bytes, stream);
  }
  /** Into pageable memory (a typed array) this returns only when the copy is done. */
  memcpyDtoHAsync(dst: HostArray | HostPtr, src: DevicePtr, stream: CuStream, bytes = hostBytes(dst)): void {
    this.call("cuMemcpyDtoHAsync", dst, src, bytes, stream);
  }
  memcpyDtoDAsync(dst: DevicePtr, src: DevicePtr, bytes: number, stream: CuStream): void {
    this.call("cuMemcpyDtoDAsync", dst, src, bytes, stream);
  }
  memsetD8Async(dst: DevicePtr, value: number, count: number, stream: CuStream): void {
    this.call("cuMemsetD8Async", dst, value, count, stream);
  }
  memsetD32Async(dst: DevicePtr, value: number, count: number, stream: CuStream): void {
    this.call("cuMemsetD32Async", dst, value, count, stream);
  }

  streamCreate(flags = CU_STREAM_DEFAULT): CuStream {
    const s = out64();
    this.call("cuStreamCreate", s, flags);
    return s[0] as CuStream;
  }
  streamDestroy(stream: CuStream): void {
    this.call("cuStreamDestroy", stream);
  }
  streamSynchronize(stream: CuStream): void {
    this.call("cuStreamSynchronize", stream);
  }
  /** Work queued on `stream` after this waits until `event`'s recorded point is done (on the device). */
  streamWaitEvent(stream: CuStream, event: CuEvent): void {
    this.call("cuStreamWaitEvent", stream, event, 0);
  }
  eventCreate(flags = CU_EVENT_DEFAULT): CuEvent {
    const e = out64();
    this.call("cuEventCreate", e, flags);
    return e[0] as CuEvent;
  }
  eventRecord(event: CuEvent, stream: CuStream): void {
    this.call("cuEventRecord", event, stream);
  }
  eventSynchronize(event: CuEvent): void {
    this.call("cuEventSynchronize", event);
  }
  /** Whether the work before the event's recorded point is done (cuEventQuery: CUDA_SUCCESS, or
   * CUDA_ERROR_NOT_READY = 600); any other result is the device's error. */
  eventQuery(event: CuEvent): boolean {
    const r = this.fns.cuEventQuery(event) as number;
    if (r === 0) return true;
    if (r === CUDA_ERROR_NOT_READY) return false;
    throw this.error(this.boundNames.cuEventQuery, r);
  }
  /** Milliseconds between two recorded (and completed) events. */
  eventElapsedTime(start: CuEvent, end: CuEvent): number {
    const ms = new Float32Array(1);
    this.call("cuEventElapsedTime", ms, start, end);
    return ms[0];
  }
  eventDestroy(event: CuEvent): void {
    this.call("cuEventDestroy", event);
  }

  /** Loads a cubin (or fatbin / PTX) image into the current context. */
  moduleLoadData(image: Uint8Array): CuModule {
    const m = out64();
    this.call("cuModuleLoadData", m, image);
    return m[0] as CuModule;
  }
  moduleGetFunction(module: CuModule, name: string): CuFunction {
    const f = out64();
    const r = this.fns.cuModuleGetFunction(f, module, name) as number;
    if (r !== 0) throw this.error(this.boundNames.cuModuleGetFunction, r, `function "${name}"`);
    return f[0] as CuFunction;
  }
  moduleUnload(module: CuModule): void {
    this.call("cuModuleUnload", module);
  }
  funcSetAttribute(fn: CuFunction, attribute: number, value: number): void {
    this.call("cuFuncSetAttribute", fn, attribute, value);
  }
  /** The number of parameters `fn` declares, or null where the driver cannot tell (before CUDA 12.4). */
  funcParamCount(fn: CuFunction): number | null {
    const info = this.optional.cuFuncGetParamInfo;
    if (!info) return null;
    const offset = out64();
    const size = out64();
    for (let i = 0; i < 4096; i++) {
      // CUDA_ERROR_INVALID_VALUE past the last parameter.
      if ((info(fn, i, offset, size) as number) !== 0) return i;
    }
    return null;
  }

  /**
   * cuLaunchKernel with the void** kernelParams built from typed `args` (kernel_args.ts); with
   * `options.pdl`, cuLaunchKernelEx with the programmatic-stream-serialization attribute.
   */
  launchKernel(
    fn: CuFunction,
    grid: Dim3,
    block: Dim3,
    sharedBytes: number,
    stream: CuStream,
    args: readonly KernelArg[],
    options: LaunchOptions = {},
  ) {
    const [gx, gy, gz] = dim3(grid);
    const [bx, by, bz] = dim3(block);
    let params: bigint | null = null;
    if (args.length > 0) {
      const argBlock = this.kernelArgBlock(kernelArgsBytes(args.length));
      packKernelArgs(args, argBlock.base, argBlock.view);
      params = argBlock.base;
    }
    const launchEx = this.optional.cuLaunchKernelEx;
    if (options.pdl && launchEx !== null) {
      const cfg = this.launchConfigBlock();
      const shape = { grid: [gx, gy, gz], block: [bx, by, bz], sharedBytes, stream, pdl: true } as const;
      packLaunchConfig(shape, cfg.base, cfg.view);
      const r = launchEx(cfg.base, fn, params, null) as number;
      if (r !== 0) throw this.error("cuLaunchKernelEx", r);
      return;
    }
    this.call("cuLaunchKernel", fn, gx, gy, gz, bx, by, bz, sharedBytes, stream, params, null);
  }

  private launchConfigBlock(): { base: bigint; view: Uint8Array } {
    if (this.launchBlock === null) {
      const base = koffi().alloc("uint64_t", LAUNCH_BLOCK_BYTES / 8) as bigint; // 8-byte aligned
      this.launchBlock = { base, view: new Uint8Array(koffi().view(base, LAUNCH_BLOCK_BYTES)) };
    }
    return this.launchBlock;
  }

  private kernelArgBlock(bytes: number): { base: bigint; view: Uint8Array } {
    if (this.argBlock === null || this.argBlockBytes < bytes) {
      if (this.argBlock !== null) koffi().free(this.argBlock);
      const size = Math.max(1024, 2 ** Math.ceil(Math.log2(bytes)));
      this.argBlock = koffi().alloc("uint8_t", size) as bigint;
      this.argBlockBytes = size;
      this.argView = new Uint8Array(koffi().view(this.argBlock, size));
    }
    return { base: this.argBlock, view: (this.argView as Uint8Array).subarray(0, bytes) };
  }

  streamBeginCapture(stream: CuStream, mode: number = CU_STREAM_CAPTURE_MODE.GLOBAL): void {
    this.call("cuStreamBeginCapture", stream, mode);
  }
  streamEndCapture(stream: CuStream): CuGraph {
    const g = out64();
    this.call("cuStreamEndCapture", stream, g);
    return g[0] as CuGraph;
  }
  graphInstantiate(graph: CuGraph, flags = 0): CuGraphExec {
    const e = out64();
    this.call("cuGraphInstantiateWithFlags", e, graph, flags);
    return e[0] as CuGraphExec;
  }
  graphLaunch(exec: CuGraphExec, stream: CuStream): void {
    this.call("cuGraphLaunch", exec, stream);
  }
  graphExecDestroy(exec: CuGraphExec): void {
    this.call("cuGraphExecDestroy", exec);
  }
  graphDestroy(graph: CuGraph): void {
    this.call("cuGraphDestroy", graph);
  }
}

function hostBytes(host: HostArray | HostPtr): number {
  if (typeof host === "bigint") throw new TypeError("a pinned host pointer needs an explicit byte count");
  return host.byteLength;
}

let driver: Driver | null = null;

/** The process-wide driver binding (loads libcuda.so.1 once). Throws CudaUnavailableError. */
export function loadDriver(): Driver {
  if (driver) return driver;
  const { lib, path } = loadLibrary("driver");
  try {
    driver = new Driver(lib, path);
  } catch (e) {
    throw new CudaUnavailableError(
      `the NVIDIA driver at ${path} is too old (${e instanceof Error ? e.message : e}); kiln needs a CUDA 12+ driver.`,
      [],
      { cause: e },
    );
  }
  return driver;
}
