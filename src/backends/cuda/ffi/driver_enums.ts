// CUDA driver enum values kiln uses, from cuda.h of CUDA 13.0 (line numbers refer to that file and
// were checked by compiling against it), and the launch-extent type.

/** CUdevice_attribute values (cuda.h lines 741, 766, 803-804, 825). */
export const CU_DEVICE_ATTRIBUTE = {
  MULTIPROCESSOR_COUNT: 16,
  L2_CACHE_SIZE: 38,
  COMPUTE_CAPABILITY_MAJOR: 75,
  COMPUTE_CAPABILITY_MINOR: 76,
  MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
} as const;

/** CUfunction_attribute (cuda.h line 994). */
export const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
/** CUstream_flags (cuda.h lines 428-429). */
export const CU_STREAM_DEFAULT = 0;
export const CU_STREAM_NON_BLOCKING = 1;
/** CUevent_flags (cuda.h lines 456-458). */
export const CU_EVENT_DEFAULT = 0;
export const CU_EVENT_DISABLE_TIMING = 2;
/** CUresult of a query whose work is not done yet (cuEventQuery, cuStreamQuery; cuda.h line 2828). */
export const CUDA_ERROR_NOT_READY = 600;
/** CUstreamCaptureMode (cuda.h lines 2392-2394). */
export const CU_STREAM_CAPTURE_MODE = { GLOBAL: 0, THREAD_LOCAL: 1, RELAXED: 2 } as const;

/** CUresult codes that mean "no usable GPU here" rather than a bug (cuda.h lines 2576-3178). */
export const CU_RESULT_UNAVAILABLE: ReadonlySet<number> = new Set([
  34, // CUDA_ERROR_STUB_LIBRARY: the toolkit's stub libcuda, not a real driver
  46, // CUDA_ERROR_DEVICE_UNAVAILABLE: exclusive / prohibited compute mode
  100, // CUDA_ERROR_NO_DEVICE
  304, // CUDA_ERROR_OPERATING_SYSTEM
  803, // CUDA_ERROR_SYSTEM_DRIVER_MISMATCH
  804, // CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE
  999, // CUDA_ERROR_UNKNOWN (what cuInit returns in containers without /dev/nvidia*)
]);

/** 3-D launch extent; a number means [x, 1, 1]. */
export type Dim3 = number | readonly [number, number?, number?];

export function dim3(d: Dim3): [number, number, number] {
  const [x, y = 1, z = 1] = typeof d === "number" ? [d] : d;
  for (const v of [x, y, z]) {
    if (!Number.isInteger(v) || v < 1 || v >= 2 ** 32)
      throw new RangeError(`bad launch dimension ${String(d)}`);
  }
  return [x, y, z];
}
