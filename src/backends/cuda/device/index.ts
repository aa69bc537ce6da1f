// The safe layer over the CUDA bindings that the CUDA backend uses: objects with explicit lifetimes.

export {
  CublasError,
  CudaError,
  CudaUnavailableError,
  KernelArgumentError,
  NvrtcError,
} from "../ffi/errors.ts";
export type { DevicePtr } from "../ffi/handles.ts";
export { offsetPtr } from "../ffi/handles.ts";
export { type CompileOptions, compileCuda, compileToCubin } from "../ffi/nvrtc.ts";
export { DeviceBuffer, type HostArray, PinnedBuffer } from "./buffer.ts";
export { CudaDevice, type DeviceProperties } from "./device.ts";
export { Event, timeOnStream } from "./event.ts";
export { Gemm, type GemmConfig } from "./gemm.ts";
export { type CaptureMode, CudaGraph, GraphCapture } from "./graph.ts";
export { CudaModule, type Dim3, Kernel, type KernelArg, type LaunchOptions } from "./module.ts";
export { Stream } from "./stream.ts";
