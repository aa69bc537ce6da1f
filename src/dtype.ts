// Element types that appear in checkpoints and engines, and conversions to the fp32 the CPU backend computes in.
export type DType = "F32" | "F16" | "BF16";

export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };

/** The `--dtype` names users type, mapped to storage dtypes. */
export type DTypeName = "fp32" | "fp16" | "bf16";
export const DTYPE_BY_NAME: Record<DTypeName, DType> = { fp32: "F32", fp16: "F16", bf16: "BF16" };
/** Bytes of one element of an engine dtype. */
export const ELEMENT_BYTES: Record<DTypeName, number> = { fp32: 4, fp16: 2, bf16: 2 };

/** bf16 → fp32 is exact: the bf16 bits are the top half of the fp32 bits. */
export function bf16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const u32 = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) u32[i] = src[i] << 16;
  return dst;
}

/** fp32 → bf16 with round-to-nearest-even (as torch does); NaN stays NaN. */
export function f32ToBf16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u32[i];
    if ((x & 0x7fffffff) > 0x7f800000) dst[i] = (x >>> 16) | 0x40;
    else dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return dst;
}

const F16_TO_F32 = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) table[h] = s * m * 2 ** -24;
    else if (e === 31) table[h] = m ? Number.NaN : s * Number.POSITIVE_INFINITY;
    else table[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return table;
})();

/** fp16 → fp32 is exact (table lookup). */
export function f16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = F16_TO_F32[src[i]];
  return dst;
}

/** fp32 → fp16 with round-to-nearest-even, overflow to ±inf, subnormals kept. */
export function f32ToF16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      dst[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      dst[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        dst[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      const half = 1 << (shift - 1);
      const rounded = (mant + half - 1 + ((mant >>> shift) & 1)) >>> shift;
      dst[i] = sign | rounded;
    } else {
      const rounded = mant + 0xfff + ((mant >>> 13) & 1);
      dst[i] = rounded & 0x800000 ? sign | ((e + 1) << 10) : sign | (e << 10) | (rounded >>> 13);
      if (e + 1 >= 31 && rounded & 0x800000) dst[i] = sign | 0x7c00;
    }
  }
  return dst;
}

/** Decodes raw little-endian bytes of `dtype` into fp32. The bytes need not be aligned. */
export function toF32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === "F32")
    return new Float32Array(
      aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + aligned.byteLength),
    );
  const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  return dtype === "BF16" ? bf16ToF32(u16) : f16ToF32(u16);
}

/** Encodes fp32 values as little-endian bytes of `dtype` (round-to-nearest-even for 16-bit types). */
export function fromF32(f32: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  const u16 = dtype === "BF16" ? f32ToBf16(f32) : f32ToF16(f32);
  return new Uint8Array(u16.buffer, u16.byteOffset, u16.byteLength);
}
