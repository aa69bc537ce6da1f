// An int4-zp weight (engine/int4_zp_format.ts: q, scales, zeros, optional g_idx) on the device: its
// region as stored, except that q's end is padded to 16 bytes before the rest, so that the fp32 scales
// and zero points and the int32 g_idx lie aligned whatever the shape (q's rows are ceil(in / 2) bytes;
// their total need not be a multiple of 4). kernels/gemv_zp.cu reads this layout. Pure: tested on the CPU.

import { int4ZpLayout } from "../../engine/int4_zp_format.ts";
import type { WeightFormatParams } from "../../engine/weight_format.ts";

/** Alignment of the part after q on the device. */
const ALIGN = 16;

/** One copy of a weight's upload: `bytes` from region offset `src` to device offset `dst`. */
export interface UploadSegment {
  src: number;
  dst: number;
  bytes: number;
}

/** Where the parts of an int4-zp weight of `shape` lie in its device buffer, and how its region goes there. */
export function int4ZpDeviceLayout(
  shape: readonly number[],
  params: WeightFormatParams,
): {
  rows: number;
  cols: number;
  groupSize: number;
  actOrder: boolean;
  /** Byte offsets in the device buffer (q at 0). */
  scales: number;
  zeros: number;
  gIdx: number;
  deviceBytes: number;
  segments: UploadSegment[];
} {
  const l = int4ZpLayout(shape, params);
  const qBytes = l.scales; // q is the region's first part
  const shift = Math.ceil(qBytes / ALIGN) * ALIGN - qBytes;
  return {
    rows: l.rows,
    cols: l.cols,
    groupSize: params.groupSize ?? l.cols,
    actOrder: Boolean(params.actOrder),
    scales: l.scales + shift,
    zeros: l.zeros + shift,
    gIdx: l.gIdx + shift,
    deviceBytes: l.end + shift,
    segments: [
      { src: 0, dst: 0, bytes: qBytes },
      { src: qBytes, dst: qBytes + shift, bytes: l.end - qBytes },
    ],
  };
}
