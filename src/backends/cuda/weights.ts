// The engine's weights on the device: one buffer per weight, streamed from the engine file at load and
// checked against the engine's manifest on worker threads meanwhile; a quantized weight's region (q then
// scales, engine/weight_format.ts; fp8: engine/fp8_format.ts) is uploaded as it is stored, never widened
// (int4-zp: with q's end padded to 16 bytes, int4_zp_weights.ts). Owns the buffers until
// dispose() (a load that throws leaves them to the device's dispose, as CudaBackend.fromEngine does).

import { type CudaWeightFormat, isCudaWeightFormat } from "../../engine/build_config.ts";
import type { WeightEntry } from "../../engine/format.ts";
import { int4ZpLayout } from "../../engine/int4_zp_format.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import { quantizedDataBytes, quantizedLayout } from "../../engine/weight_format.ts";
import {
  type CudaDevice,
  DeviceBuffer,
  type DevicePtr,
  Event,
  offsetPtr,
  PinnedBuffer,
  type Stream,
} from "./device/index.ts";
import { zerosExactIn16Bit } from "./gemm_wo_variants.ts";
import { int4ZpDeviceLayout, type UploadSegment } from "./int4_zp_weights.ts";

/** Bytes of each pinned staging buffer of the upload. */
const CHUNK = 64 << 20;

/** A weight-only quantized [rows, cols] weight on the device: its q part and its fp32 scales. */
export interface QuantizedWeight {
  format: Exclude<CudaWeightFormat, "fp8">;
  rows: number;
  cols: number;
  q: DevicePtr;
  scales: DevicePtr;
  /** int4-zp only: zero points [rows, groups] fp32, g_idx [cols] int32 (act-order) and the group size;
   * zerosExact: every zero point makes q − z exact in 16 bits (gemm_wo_variants.ts zerosExactIn16Bit),
   * read from the engine at load: gemm_zp feeds q − z to the tensor cores only then. */
  zp?: { zeros: DevicePtr; gIdx: DevicePtr | null; groupSize: number; zerosExact: boolean };
}

/** An fp8 [rows, cols] weight on the device: q [rows, cols] E4M3, scales [rows] fp32 and, for static
 * activations, the fp32 input scale (null: dynamic, per token), whose value inputScaleValue also holds
 * (read from the engine at load: norm_quant.ts compares linears' scales). */
export interface Fp8Weight {
  rows: number;
  cols: number;
  q: DevicePtr;
  scales: DevicePtr;
  inputScale: DevicePtr | null;
  inputScaleValue: number | null;
}

export class DeviceWeights {
  /** The quantized weights, by name. */
  private readonly quantizedWeights = new Map<string, QuantizedWeight>();
  /** The fp8 weights, by name. */
  private readonly fp8Weights = new Map<string, Fp8Weight>();

  private constructor(private readonly buffers: Map<string, DeviceBuffer>) {}

  /** Streams the weights from the engine file to the device through two pinned staging buffers: the
   * file read of one chunk overlaps the DMA of the previous one. Worker threads check every weight
   * against the engine's manifest meanwhile; damage throws EngineCorruptError at the end. */
  static upload(device: CudaDevice, stream: Stream, engine: LoadedEngine): DeviceWeights {
    const weights = new DeviceWeights(new Map());
    const staging = [PinnedBuffer.alloc(device, CHUNK), PinnedBuffer.alloc(device, CHUNK)];
    const copied = [Event.create(device), Event.create(device)];
    const inFlight = [false, false];
    let slot = 0;
    const check = engine.checkRegions(engine.header.weights);
    try {
      for (const weight of engine.header.weights) {
        const zp = weight.format === "int4-zp" ? int4ZpDeviceLayout(weight.shape, weight.params ?? {}) : null;
        const buf = DeviceBuffer.alloc(device, zp ? zp.deviceBytes : weight.byteLength);
        weights.buffers.set(weight.name, buf);
        // assertCudaWeightFormats refused every other format before the upload began.
        if (weight.format === "fp8") weights.fp8Weights.set(weight.name, fp8Weight(engine, weight, buf.ptr));
        else if (weight.format && isCudaWeightFormat(weight.format))
          weights.quantizedWeights.set(
            weight.name,
            quantizedWeight(weight, weight.format, buf.ptr, zp ? zerosExact(engine, weight) : false),
          );
        const segments: UploadSegment[] = zp ? zp.segments : [{ src: 0, dst: 0, bytes: weight.byteLength }];
        for (const seg of segments) {
          for (let off = 0; off < seg.bytes; off += CHUNK) {
            const n = Math.min(CHUNK, seg.bytes - off);
            if (inFlight[slot]) copied[slot].synchronize();
            engine.readInto(weight.offset + seg.src + off, new Uint8Array(staging[slot].arrayBuffer(), 0, n));
            device.driver.memcpyHtoDAsync(
              offsetPtr(buf.ptr, seg.dst + off),
              staging[slot].ptr,
              stream.handle,
              n,
            );
            copied[slot].record(stream);
            inFlight[slot] = true;
            slot ^= 1;
          }
        }
      }
      stream.synchronize();
      check.wait();
    } finally {
      for (const x of [...staging, ...copied]) x.dispose();
    }
    return weights;
  }

  /** The device address of weight `name`. */
  ptr(name: string): DevicePtr {
    const b = this.buffers.get(name);
    if (!b) throw new Error(`internal: weight ${name} not on the device`);
    return b.ptr;
  }

  /** Weight `name` as q and scales when it is quantized; undefined for a plain dtype array. */
  quantized(name: string): QuantizedWeight | undefined {
    return this.quantizedWeights.get(name);
  }

  /** Weight `name` as E4M3 q and scales when it is an fp8 weight. */
  fp8(name: string): Fp8Weight | undefined {
    return this.fp8Weights.get(name);
  }

  /** Every fp8 weight. */
  get allFp8(): Iterable<Fp8Weight> {
    return this.fp8Weights.values();
  }

  /** Every quantized weight. */
  get allQuantized(): Iterable<QuantizedWeight> {
    return this.quantizedWeights.values();
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.quantizedWeights.clear();
    this.fp8Weights.clear();
    this.buffers.clear();
  }
}

/** A quantized weight's q and scales in its device buffer at `ptr` (int-wo: the scales follow q, no gap;
 * int4-zp: int4_zp_weights.ts). */
function quantizedWeight(
  entry: WeightEntry,
  format: QuantizedWeight["format"],
  ptr: DevicePtr,
  zerosExact: boolean,
): QuantizedWeight {
  if (format === "int4-zp") {
    const l = int4ZpDeviceLayout(entry.shape, entry.params ?? {});
    return {
      format,
      rows: l.rows,
      cols: l.cols,
      q: ptr,
      scales: offsetPtr(ptr, l.scales),
      zp: {
        zeros: offsetPtr(ptr, l.zeros),
        gIdx: l.actOrder ? offsetPtr(ptr, l.gIdx) : null,
        groupSize: l.groupSize,
        zerosExact,
      },
    };
  }
  const { rows, cols } = quantizedLayout(entry.shape);
  return { format, rows, cols, q: ptr, scales: offsetPtr(ptr, quantizedDataBytes(entry.shape, format)) };
}

/** Whether the zero points of the int4-zp weight `entry` make q − z exact in 16 bits: its zeros part
 * [rows, groups] fp32, read from the engine (4 bytes a group of a row: about 1/16 of q's bytes at G 128). */
function zerosExact(engine: LoadedEngine, entry: WeightEntry): boolean {
  const l = int4ZpLayout(entry.shape, entry.params ?? {});
  const bytes = new Uint8Array(l.gIdx - l.zeros);
  engine.readInto(entry.offset + l.zeros, bytes);
  return zerosExactIn16Bit(new Float32Array(bytes.buffer));
}

/** An fp8 weight's parts in its device buffer at `ptr`: q, then the scales, then the input scale (whose
 * value is read from the engine: 4 bytes). */
function fp8Weight(engine: LoadedEngine, entry: WeightEntry, ptr: DevicePtr): Fp8Weight {
  const { rows, cols } = quantizedLayout(entry.shape);
  const scales = offsetPtr(ptr, rows * cols);
  if (entry.params?.activation !== "static")
    return { rows, cols, q: ptr, scales, inputScale: null, inputScaleValue: null };
  const at = rows * cols + rows * 4;
  const value = new Float32Array(1);
  engine.readInto(entry.offset + at, new Uint8Array(value.buffer));
  return { rows, cols, q: ptr, scales, inputScale: offsetPtr(ptr, at), inputScaleValue: value[0] };
}
