// FP8 E4M3 conversions (src/fp8_e4m3.ts) against a brute-force definition: the nearest of the 254 finite
// E4M3 values, ties to the even code, saturating at ±448.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  E4M3_MAX,
  e4m3ArrayToF32,
  e4m3ToF32,
  f32ArrayToE4m3,
  f32BitsToE4m3,
  f32ToE4m3,
} from "../src/fp8_e4m3.ts";

/** Nearest finite code by search (ties: even code), saturating; the definition the fast path must meet. */
function slowEncode(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.min(Math.abs(x), E4M3_MAX);
  let best = 0;
  for (let code = 1; code <= 0x7e; code++) {
    const d = Math.abs(e4m3ToF32(code) - a);
    const dBest = Math.abs(e4m3ToF32(best) - a);
    if (d < dBest || (d === dBest && code % 2 === 0 && best % 2 === 1)) best = code;
  }
  return best | sign;
}

test("decoding gives the E4M3 values: 448 max, 2^-9 smallest, 0x7f NaN, no infinities", () => {
  assert.equal(e4m3ToF32(0x7e), 448);
  assert.equal(e4m3ToF32(0xfe), -448);
  assert.equal(e4m3ToF32(0x01), 2 ** -9);
  assert.equal(e4m3ToF32(0x08), 2 ** -6);
  assert.equal(e4m3ToF32(0x38), 1);
  assert.equal(e4m3ToF32(0x3c), 1.5);
  assert.ok(Number.isNaN(e4m3ToF32(0x7f)) && Number.isNaN(e4m3ToF32(0xff)));
  const all = e4m3ArrayToF32(Uint8Array.from({ length: 256 }, (_, i) => i));
  assert.equal(all.filter((v) => !Number.isFinite(v)).length, 2);
});

test("every finite code round-trips, and -0 keeps its sign", () => {
  for (let code = 0; code < 256; code++) {
    if ((code & 0x7f) === 0x7f) continue;
    assert.equal(f32ToE4m3(e4m3ToF32(code)), code, `code 0x${code.toString(16)}`);
  }
});

test("midpoints between neighbours round to the even code", () => {
  for (let code = 0; code < 0x7e; code++) {
    const mid = (e4m3ToF32(code) + e4m3ToF32(code + 1)) / 2;
    const even = code % 2 === 0 ? code : code + 1;
    assert.equal(f32ToE4m3(mid), even, `midpoint of 0x${code.toString(16)} and its successor`);
    assert.equal(f32ToE4m3(-mid), even | 0x80);
  }
});

test("random fp32 values over the whole range equal the brute-force nearest code", () => {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const values = new Float32Array(20000);
  for (let i = 0; i < values.length; i++)
    values[i] = (rand() < 0.5 ? -1 : 1) * 2 ** (rand() * 24 - 14) * (1 + rand());
  const fast = f32ArrayToE4m3(values);
  for (let i = 0; i < values.length; i++) assert.equal(fast[i], slowEncode(values[i]), `value ${values[i]}`);
});

test("out of range saturates to ±448; NaN stays NaN", () => {
  assert.equal(f32ToE4m3(1e9), 0x7e);
  assert.equal(f32ToE4m3(-Infinity), 0xfe);
  assert.equal(f32ToE4m3(470), 0x7e);
  assert.equal(f32ToE4m3(447), 0x7e); // nearest is 448 (the neighbours are 416 and 448)
  assert.equal(f32ToE4m3(Number.NaN), 0x7f);
  assert.equal(f32ToE4m3(2 ** -11), 0); // a quarter of the smallest subnormal rounds to zero
});

test("f32BitsToE4m3 (integer arithmetic) gives f32ToE4m3's byte for every sampled fp32 bit pattern", () => {
  const f = new Float32Array(1);
  const bits = new Int32Array(f.buffer);
  const check = (b: number) => {
    bits[0] = b;
    const want = f32ToE4m3(f[0]);
    const got = f32BitsToE4m3(bits[0]);
    if (got !== want) assert.fail(`bits 0x${(b >>> 0).toString(16)} (${f[0]}): ${got} ≠ ${want}`);
  };
  // Every pattern at a stride coprime to 2, then every mantissa tail that decides a rounding: the
  // exponents of E4M3's subnormal and normal ranges and their neighbours, with the bits below the kept
  // ones at 0, just under a half, a half, just over, and all ones.
  for (let b = 0; b < 2 ** 32; b += 4093) check(b);
  for (let exp = 100; exp <= 140; exp++) {
    for (let top = 0; top < 64; top++) {
      for (const tail of [0, 1, 0x1ffff, 0x20000, 0x20001, 0x3ffff, 0x7ffff, 0x80000, 0x80001, 0xfffff]) {
        const mantissa = ((top << 17) | tail) & 0x7fffff;
        for (const sign of [0, 0x80000000]) check((sign | (exp << 23) | mantissa) >>> 0);
      }
    }
  }
  for (const x of [0, -0, 448, 449, 464, 480, -480, 1e9, Infinity, -Infinity, Number.NaN, 2 ** -9, 2 ** -10])
    check(new Uint32Array(Float32Array.of(x).buffer)[0]);
});
