// cuLaunchKernelEx's arguments: a CUlaunchConfig and the one CUlaunchAttribute kiln uses
// (programmatic stream serialization, for programmatic dependent launch), packed by hand into a block
// of stable memory like kernel_args.ts. Layouts from cuda.h of CUDA 13.0 (lines 2246-2360), checked
// against the compiler's sizeof/offsetof by test/backends/cuda/launch_config.test.ts:
//
//   base + 0: CUlaunchConfig (56 bytes)            base + 56: CUlaunchAttribute (72 bytes)
//     0 gridDimX   4 gridDimY   8 gridDimZ           0 id (CUlaunchAttributeID, a C enum: int)
//    12 blockDimX 16 blockDimY 20 blockDimZ          4 pad[8 - sizeof(id)]
//    24 sharedMemBytes (28: padding)                 8 value (union of 64 bytes; its
//    32 hStream   40 attrs   48 numAttrs (52: pad)     programmaticStreamSerializationAllowed is an int at 8)
import type { CuStream } from "./handles.ts";

export const CU_LAUNCH_CONFIG = {
  size: 56,
  gridDimX: 0,
  gridDimY: 4,
  gridDimZ: 8,
  blockDimX: 12,
  blockDimY: 16,
  blockDimZ: 20,
  sharedMemBytes: 24,
  hStream: 32,
  attrs: 40,
  numAttrs: 48,
} as const;

export const CU_LAUNCH_ATTRIBUTE = { size: 72, id: 0, value: 8, valueBytes: 64 } as const;

/** CUlaunchAttributeID (cuda.h line 2085): the grid may overlap the previous kernel on its stream. */
export const CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;

/** Bytes of the block: the config, then its attribute (at an 8-byte aligned offset). */
export const LAUNCH_BLOCK_BYTES = CU_LAUNCH_CONFIG.size + CU_LAUNCH_ATTRIBUTE.size;

export interface LaunchShape {
  grid: readonly [number, number, number];
  block: readonly [number, number, number];
  sharedBytes: number;
  stream: CuStream;
  /** Programmatic stream serialization: the kernel may start before the previous one has finished. */
  pdl: boolean;
}

/**
 * Writes the CUlaunchConfig for `shape` as it must appear at address `base` (its `attrs` pointer
 * addresses the attribute inside the block), zeroing every padding byte.
 */
export function packLaunchConfig(
  shape: LaunchShape,
  base: bigint,
  out: Uint8Array = new Uint8Array(LAUNCH_BLOCK_BYTES),
): Uint8Array {
  if (out.byteLength < LAUNCH_BLOCK_BYTES) throw new RangeError("launch-config block too small");
  out.fill(0, 0, LAUNCH_BLOCK_BYTES);
  const v = new DataView(out.buffer, out.byteOffset, LAUNCH_BLOCK_BYTES);
  const c = CU_LAUNCH_CONFIG;
  const u32 = [
    [c.gridDimX, shape.grid[0]],
    [c.gridDimY, shape.grid[1]],
    [c.gridDimZ, shape.grid[2]],
    [c.blockDimX, shape.block[0]],
    [c.blockDimY, shape.block[1]],
    [c.blockDimZ, shape.block[2]],
    [c.sharedMemBytes, shape.sharedBytes],
  ] as const;
  for (const [at, value] of u32) v.setUint32(at, value, true);
  v.setBigUint64(c.hStream, shape.stream, true);
  if (shape.pdl) {
    const attr = CU_LAUNCH_CONFIG.size;
    v.setBigUint64(c.attrs, base + BigInt(attr), true);
    v.setUint32(c.numAttrs, 1, true);
    v.setInt32(attr + CU_LAUNCH_ATTRIBUTE.id, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, true);
    v.setInt32(attr + CU_LAUNCH_ATTRIBUTE.value, 1, true); // programmaticStreamSerializationAllowed
  }
  return out;
}
