// Counter-based random numbers: u = f(seed, sequence, step, draw) with no state, so a request draws
// the same numbers whether it runs alone or in any batch, on any backend. The mixer is the
// "lowbias32" integer hash (Wellons), applied in a chain over the key words; the GPU kernels use the
// same function.

function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad);
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97);
  x ^= x >>> 15;
  return x >>> 0;
}

function hashKey(seed: number, sequence: number, step: number, draw: number, lane: number): number {
  const seedLo = seed >>> 0;
  const seedHi = Math.floor(seed / 2 ** 32) >>> 0;
  let h = mix32(seedLo ^ 0x9e3779b9);
  h = mix32(h ^ seedHi);
  h = mix32(h ^ (sequence >>> 0));
  h = mix32(h ^ (step >>> 0));
  h = mix32(h ^ (draw >>> 0));
  return mix32(h ^ lane);
}

/** A uniform double in [0, 1) with 53 random bits, a pure function of its arguments. */
export function uniform(seed: number, sequence: number, step: number, draw = 0): number {
  const hi = hashKey(seed, sequence, step, draw, 1) >>> 5; // 27 bits
  const lo = hashKey(seed, sequence, step, draw, 2) >>> 6; // 26 bits
  return (hi * 67108864 + lo) / 9007199254740992;
}
