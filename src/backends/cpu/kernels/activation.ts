// MLP activations (HF ACT2FN) in the fp32 order of torch's CPU kernels: each fp32 tensor op of torch
// is one Math.fround. exp, tanh and erf are correctly rounded double results where torch uses SLEEF
// (≤ 1 ulp) or, for erf, an Abramowitz–Stegun 7.1.26 polynomial (|error| ≤ 1.5e-7), so a value may
// differ from torch's by an ulp or two of fp32; never by more.

import type { HiddenAct } from "../../../checkpoint/model_config.ts";
import { checkSize } from "./check.ts";

const f32 = Math.fround;

const SQRT1_2_F32 = f32(Math.SQRT1_2);
// torch gelu(approximate="tanh"): kBeta = M_SQRT2 * M_2_SQRTPI * 0.5, kKappa = 0.044715.
const TANH_BETA_F32 = f32(Math.SQRT2 * (2 / Math.sqrt(Math.PI)) * 0.5);
// HF NewGELUActivation: math.sqrt(2.0 / math.pi) (the same fp32 value, computed as HF writes it).
const NEW_GELU_BETA_F32 = f32(Math.sqrt(2 / Math.PI));
const KAPPA_F32 = f32(0.044715);

/** torch silu: x / (1 + exp(-x)). */
export function silu(x: number): number {
  return f32(x / f32(1 + f32(Math.exp(-x))));
}

/** torch gelu (exact, HF "gelu"): x * 0.5 * (1 + erf(x * M_SQRT1_2)). */
export function gelu(x: number): number {
  return f32(f32(x * 0.5) * f32(1 + f32(erf(f32(x * SQRT1_2_F32)))));
}

/** torch gelu(approximate="tanh") (HF "gelu_pytorch_tanh"): 0.5 * x * (1 + tanh(β (x + κ x³))). */
export function geluTanh(x: number): number {
  const cube = f32(f32(x * x) * x);
  const inner = f32(TANH_BETA_F32 * f32(x + f32(KAPPA_F32 * cube)));
  return f32(f32(0.5 * x) * f32(1 + f32(Math.tanh(inner))));
}

/** HF NewGELUActivation ("gelu_new"): 0.5 * x * (1 + tanh(sqrt(2/π) (x + 0.044715 x³))). */
export function geluNew(x: number): number {
  const cube = f32(f32(x * x) * x); // torch.pow(x, 3.0) runs as x * x * x
  const inner = f32(NEW_GELU_BETA_F32 * f32(x + f32(KAPPA_F32 * cube)));
  return f32(f32(0.5 * x) * f32(1 + f32(Math.tanh(inner))));
}

/** torch relu (NaN stays NaN). */
export function relu(x: number): number {
  return x > 0 || Number.isNaN(x) ? x : 0;
}

/** The scalar function of an HF `hidden_act` name. */
export function activationFn(act: HiddenAct): (x: number) => number {
  switch (act) {
    case "silu":
      return silu;
    case "gelu":
      return gelu;
    case "gelu_pytorch_tanh":
      return geluTanh;
    case "gelu_new":
      return geluNew;
    case "relu":
      return relu;
  }
}

/**
 * Gated MLP activation on the fused gate_up projection: out = act(gate) * up (fp32 product),
 * as HF's `act_fn(gate_proj(x)) * up_proj(x)`.
 */
export function gatedAct(
  gateUp: Float32Array, // [m, 2 * inter]: gate in columns [0, inter), up in [inter, 2 * inter)
  m: number,
  inter: number,
  act: HiddenAct,
  out: Float32Array, // [m, inter]
): void {
  checkSize("gatedAct gateUp", gateUp, m * 2 * inter);
  checkSize("gatedAct out", out, m * inter);
  const fn = activationFn(act);
  for (let r = 0; r < m; r++) {
    const g = r * 2 * inter;
    const u = g + inter;
    const o = r * inter;
    for (let i = 0; i < inter; i++) out[o + i] = fn(gateUp[g + i]) * gateUp[u + i];
  }
}

/** Elementwise activation for non-gated MLPs; `out` may be `x`. */
export function act(
  x: Float32Array, // [n]
  n: number,
  act: HiddenAct,
  out: Float32Array, // [n]
): void {
  checkSize("act x", x, n);
  checkSize("act out", out, n);
  const fn = activationFn(act);
  for (let i = 0; i < n; i++) out[i] = fn(x[i]);
}

// erf to double accuracy (< 1 ulp): the rational approximations of fdlibm's s_erf.c
// (Sun Microsystems, 1993, freely distributable); its coefficients, in shortest round-trip form.
const ERX = 0.8450629115104675;
const EFX = 0.1283791670955126;
const PP = [
  0.12837916709551256, -0.3250421072470015, -0.02848174957559851, -0.005770270296489442,
  -0.000023763016656650163,
];
const QQ = [
  0.39791722395915535, 0.0650222499887673, 0.005081306281875766, 0.00013249473800432164,
  -0.000003960228278775368,
];
const PA = [
  -0.0023621185607526594, 0.41485611868374833, -0.3722078760357013, 0.31834661990116175, -0.11089469428239668,
  0.035478304325618236, -0.002166375594868791,
];
const QA = [
  0.10642088040084423, 0.540397917702171, 0.07182865441419627, 0.12617121980876164, 0.01363708391202905,
  0.011984499846799107,
];
const RA = [
  -0.009864944034847148, -0.6938585727071818, -10.558626225323291, -62.375332450326006, -162.39666946257347,
  -184.60509290671104, -81.2874355063066, -9.814329344169145,
];
const SA = [
  19.651271667439257, 137.65775414351904, 434.56587747522923, 645.3872717332679, 429.00814002756783,
  108.63500554177944, 6.570249770319282, -0.0604244152148581,
];
const RB = [
  -0.0098649429247001, -0.799283237680523, -17.757954917754752, -160.63638485582192, -637.5664433683896,
  -1025.0951316110772, -483.5191916086514,
];
const SB = [
  30.33806074348246, 325.7925129965739, 1536.729586084437, 3199.8582195085955, 2553.0504064331644,
  474.52854120695537, -22.44095244658582,
];

/** Horner: c[0] + z c[1] + z² c[2] + … */
function poly(c: readonly number[], z: number): number {
  let r = c[c.length - 1];
  for (let i = c.length - 2; i >= 0; i--) r = r * z + c[i];
  return r;
}

/** 1 + z q[0] + z² q[1] + … */
function poly1(q: readonly number[], z: number): number {
  return 1 + z * poly(q, z);
}

/** The error function in double precision (fdlibm's method). */
export function erf(x: number): number {
  if (Number.isNaN(x)) return x;
  const ax = Math.abs(x);
  const sign = x < 0 ? -1 : 1;
  if (ax < 0.84375) {
    if (ax < 2 ** -28) return x + EFX * x;
    const z = x * x;
    return x + x * (poly(PP, z) / poly1(QQ, z));
  }
  if (ax < 1.25) {
    const s = ax - 1;
    return sign * (ERX + poly(PA, s) / poly1(QA, s));
  }
  if (ax >= 6) return sign;
  const s = 1 / (ax * ax);
  const rs = ax < 1 / 0.35 ? poly(RA, s) / poly1(SA, s) : poly(RB, s) / poly1(SB, s);
  // exp(-x² - 0.5625 + R/S), with x² split as z² + (z - x)(z + x) for a z of 24 bits, so z² is exact.
  const z = f32(ax);
  const r = Math.exp(-z * z - 0.5625) * Math.exp((z - ax) * (z + ax) + rs);
  return sign * (1 - r / ax);
}
