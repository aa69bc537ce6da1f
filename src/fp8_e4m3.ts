// FP8 E4M3 ("e4m3fn", the OCP 8-bit float NVIDIA's FP8 GEMMs and torch.float8_e4m3fn use): 1 sign bit,
// 4 exponent bits (bias 7), 3 mantissa bits; no infinities, 0x7f / 0xff are NaN, the largest finite value
// is 448 (0x7e) and the smallest subnormal 2^-9. Shared by the FP8 weight format and the FP8 KV cache.

/** Largest finite E4M3 value. */
export const E4M3_MAX = 448;

const DECODE = (() => {
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const e = (b >> 3) & 0x0f;
    const m = b & 0x07;
    if (e === 0x0f && m === 0x07) table[b] = Number.NaN;
    else if (e === 0) table[b] = sign * m * 2 ** -9;
    else table[b] = sign * (1 + m / 8) * 2 ** (e - 7);
  }
  return table;
})();

/** The value of one E4M3 byte (exact in fp32). */
export function e4m3ToF32(byte: number): number {
  return DECODE[byte & 0xff];
}

/** E4M3 bytes → fp32 values (exact). */
export function e4m3ArrayToF32(src: Uint8Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = DECODE[src[i]];
  return dst;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * fp32 → E4M3, round to nearest even, saturating: |x| beyond 448 becomes ±448 (what quantizers do by
 * clamping before the cast, since E4M3 has no infinity); NaN stays NaN (0x7f). Works on the fp32 bits:
 * normal results round the 23-bit mantissa to 3 bits; results below 2^-6 round to a multiple of 2^-9.
 */
export function f32ToE4m3(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 24) & 0x80;
  const abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return 0x7f | sign; // NaN
  if (abs >= 0x43e00000) return 0x7e | sign; // ≥ 448 (and ±inf): saturate
  const exp = abs >>> 23; // biased fp32 exponent
  if (exp < 121) {
    // Below 2^-6: a subnormal E4M3 (or zero), m × 2^-9 with m in 0..8 (8 is the smallest normal).
    f32[0] = Math.abs(x) * 512; // exact: a power-of-two scaling
    const m = roundHalfEven(f32[0]);
    return m | sign; // m = 8 encodes as exponent 1, mantissa 0: the same bits
  }
  // Normal: keep 3 mantissa bits with round-to-nearest-even on the 20 dropped bits.
  const rounded = abs + 0x7ffff + ((abs >>> 20) & 1);
  const e = (rounded >>> 23) - 120; // E4M3 biased exponent (fp32 bias 127, E4M3 bias 7)
  const m = (rounded >>> 20) & 0x07;
  return (e << 3) | m | sign;
}

/** f32ToE4m3 of the fp32 value whose bits are `bits` (a uint32), in integer arithmetic only: the same
 * byte for every input. For bulk conversion, where the values sit in a Float32Array (its Uint32Array
 * view gives the bits) and the per-value scratch round trip of f32ToE4m3 would dominate. */
export function f32BitsToE4m3(bits: number): number {
  const sign = (bits >>> 24) & 0x80;
  const abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return 0x7f | sign; // NaN
  if (abs >= 0x43e00000) return 0x7e | sign; // ≥ 448 (and ±inf): saturate
  const exp = abs >>> 23;
  if (exp < 121) {
    // Below 2^-6: m = |x|·2^9 rounded half to even, m in 0..8. With the implicit bit, |x|·2^9 =
    // mant24 · 2^(exp − 141), a right shift by 141 − exp ≥ 21; below 2^-9 / 2 (exp < 117) it is 0.
    if (exp < 117) return sign;
    const mant = (abs & 0x7fffff) | 0x800000;
    const shift = 141 - exp;
    let m = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1) === 1)) m++;
    return m | sign;
  }
  const rounded = abs + 0x7ffff + ((abs >>> 20) & 1);
  return (((rounded >>> 23) - 120) << 3) | ((rounded >>> 20) & 0x07) | sign;
}

/** fp32 values → E4M3 bytes (f32ToE4m3 for each). */
export function f32ArrayToE4m3(src: Float32Array, dst = new Uint8Array(src.length)): Uint8Array {
  for (let i = 0; i < src.length; i++) dst[i] = f32ToE4m3(src[i]);
  return dst;
}

function roundHalfEven(v: number): number {
  const floor = Math.floor(v);
  const frac = v - floor;
  if (frac > 0.5) return floor + 1;
  if (frac < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
