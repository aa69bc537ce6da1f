// Random weights of a network's exact shapes, for building engines of a shipped config without a
// checkpoint (benchmarks). Deterministic: uniform with std 0.02 (HF's initializer_range) from a
// xorshift generator seeded by the weight's name; norm weights are 1. Fast enough for 8B shapes.
import { createHash } from "node:crypto";
import { DTYPE_BYTES, type DType, fromF32 } from "../dtype.ts";
import type { EngineWeight } from "../engine/writer.ts";
import type { WeightSpec } from "../models/network.ts";

const STD = 0.02;
const CHUNK = 1 << 20;

function seedOf(name: string): number {
  return createHash("sha256").update(name).digest().readUInt32LE(0) || 1;
}

export function randomEngineWeight(name: string, spec: WeightSpec, dtype: DType): EngineWeight {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  return {
    name,
    dtype,
    shape: spec.shape,
    byteLength: count * DTYPE_BYTES[dtype],
    bytes: () => {
      const out = new Uint8Array(count * DTYPE_BYTES[dtype]);
      const isNorm = /norm/.test(name);
      const a = STD * Math.sqrt(3);
      let s = seedOf(name);
      const f32 = new Float32Array(Math.min(CHUNK, count));
      for (let start = 0; start < count; start += CHUNK) {
        const n = Math.min(CHUNK, count - start);
        for (let i = 0; i < n; i++) {
          s ^= s << 13;
          s ^= s >>> 17;
          s ^= s << 5;
          f32[i] = isNorm ? 1 : ((s >>> 0) / 4294967296) * 2 * a - a;
        }
        out.set(fromF32(f32.subarray(0, n), dtype), start * DTYPE_BYTES[dtype]);
      }
      return out;
    },
  };
}
