// Branded handle types: CUDA handles are pointers (bigint in koffi 3), branded so a stream cannot be
// passed where a context is expected. CUdevice is an int ordinal-like handle.
declare const brand: unique symbol;
type Handle<B extends string> = bigint & { readonly [brand]: B };

export type CuContext = Handle<"CUcontext">;
export type CuStream = Handle<"CUstream">;
export type CuEvent = Handle<"CUevent">;
export type CuModule = Handle<"CUmodule">;
export type CuFunction = Handle<"CUfunction">;
export type CuGraph = Handle<"CUgraph">;
export type CuGraphExec = Handle<"CUgraphExec">;
/** A device address (CUdeviceptr, 64-bit). */
export type DevicePtr = Handle<"CUdeviceptr">;
/** Pinned (page-locked) host memory from cuMemAllocHost. */
export type HostPtr = Handle<"pinned host pointer">;
export type CuDevice = number & { readonly [brand]: "CUdevice" };

/** The legacy default stream (NULL). Not capturable; prefer a created stream. */
export const NULL_STREAM = 0n as CuStream;

/** `ptr + bytes`, keeping the brand. */
export function offsetPtr(ptr: DevicePtr, bytes: number | bigint): DevicePtr {
  return (ptr + BigInt(bytes)) as DevicePtr;
}
