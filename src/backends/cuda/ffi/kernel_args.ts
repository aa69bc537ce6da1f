// Packing kernel arguments for cuLaunchKernel, whose `kernelParams` is a `void**`: an array of N
// pointers, pointer i addressing the value of argument i. We lay both out in one block of stable
// (non-moving) memory at address `base`:
//
//   base                      base + 8N              base + 8N + 8i
//   [ p0 | p1 | ... | pN-1 ]  [ v0 | v1 | ... | vN-1 ]
//     └────── p_i = base + 8N + 8i ─────────┘
//
// Every value gets an 8-byte slot (little-endian); 4-byte values use its first 4 bytes. The driver
// copies the values during cuLaunchKernel, so the block can be reused for the next launch.
import { InvalidArgumentError } from "../../../errors.ts";
import type { DevicePtr } from "./handles.ts";

/** One kernel argument, typed as the kernel's C parameter is. */
export type KernelArg =
  | { ptr: DevicePtr }
  | { i32: number }
  | { u32: number }
  | { f32: number }
  | { i64: bigint };

export const KERNEL_ARG_SLOT_BYTES = 8;

/** Bytes of the block for `n` arguments: the pointer table plus the value slots. */
export function kernelArgsBytes(n: number): number {
  return 2 * KERNEL_ARG_SLOT_BYTES * n;
}

/** Writes the pointer table and values for `args` as they must appear at address `base`. */
export function packKernelArgs(
  args: readonly KernelArg[],
  base: bigint,
  out: Uint8Array = new Uint8Array(kernelArgsBytes(args.length)),
): Uint8Array {
  const n = args.length;
  if (out.byteLength < kernelArgsBytes(n)) throw new RangeError(`kernel-arg block too small for ${n} args`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const valuesAt = KERNEL_ARG_SLOT_BYTES * n;
  for (let i = 0; i < n; i++) {
    const slot = valuesAt + KERNEL_ARG_SLOT_BYTES * i;
    view.setBigUint64(KERNEL_ARG_SLOT_BYTES * i, base + BigInt(slot), true);
    view.setBigUint64(slot, 0n, true);
    const a = args[i];
    if ("ptr" in a) {
      if (typeof a.ptr !== "bigint" || a.ptr < 0n) throw badArg(i, "ptr", a.ptr, "a non-negative bigint");
      view.setBigUint64(slot, a.ptr, true);
    } else if ("i32" in a) {
      if (!Number.isInteger(a.i32) || a.i32 < -(2 ** 31) || a.i32 >= 2 ** 31) {
        throw badArg(i, "i32", a.i32, "an integer in [-2^31, 2^31)");
      }
      view.setInt32(slot, a.i32, true);
    } else if ("u32" in a) {
      if (!Number.isInteger(a.u32) || a.u32 < 0 || a.u32 >= 2 ** 32) {
        throw badArg(i, "u32", a.u32, "an integer in [0, 2^32)");
      }
      view.setUint32(slot, a.u32, true);
    } else if ("f32" in a) {
      if (typeof a.f32 !== "number") throw badArg(i, "f32", a.f32, "a number");
      view.setFloat32(slot, a.f32, true);
    } else if ("i64" in a) {
      if (typeof a.i64 !== "bigint" || a.i64 < -(2n ** 63n) || a.i64 >= 2n ** 63n) {
        throw badArg(i, "i64", a.i64, "a bigint in [-2^63, 2^63)");
      }
      view.setBigInt64(slot, a.i64, true);
    } else {
      throw new InvalidArgumentError(`kernel argument ${i} has no known type key (ptr, i32, u32, f32, i64)`);
    }
  }
  return out;
}

function badArg(i: number, kind: string, value: unknown, want: string): InvalidArgumentError {
  return new InvalidArgumentError(`kernel argument ${i} (${kind}) is ${String(value)}; it must be ${want}`);
}
