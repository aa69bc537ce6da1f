// The kernels/gemm_wo.cu GEMMs' launches (src/backends/cuda/gemm_wo_variants.ts): the tile by rows, the
// grid (gated: half the weight rows a CTA are output features), the dynamic shared memory the kernel's
// tiles need (read from the source), every name kernels/compile_matrix.json lists; which int4-zp weights
// they take; KILN_WO_GEMM_MAX_M; and the gemm_wo module exactly for 16-bit engines with weight-only
// quantized weights.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import type { DevicePtr } from "../../../src/backends/cuda/device/index.ts";
import {
  parseWoGemmMaxM,
  WO_GEMM_MAX_M,
  type WoGemmFormat,
  woGemmKernels,
  woGemmLaunch,
  zerosExactIn16Bit,
  zpGemmTakes,
} from "../../../src/backends/cuda/gemm_wo_variants.ts";
import { moduleSpecs, quantizedModules } from "../../../src/backends/cuda/kernel_modules.ts";
import { QuantizedLinears } from "../../../src/backends/cuda/quantized_linears.ts";
import type { QuantizedWeight } from "../../../src/backends/cuda/weights.ts";
import { optimize } from "../../../src/builder/optimize.ts";
import { parseHfConfig } from "../../../src/checkpoint/hf_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import { InvalidEnvironmentError } from "../../../src/errors.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { TINY_CONFIGS } from "../../helpers/tiny_model.ts";

const KERNELS = new URL("../../../kernels/", import.meta.url);
const matrix = JSON.parse(readFileSync(new URL("compile_matrix.json", KERNELS), "utf8"));
const exported = new Set<string>(matrix.files["gemm_wo.cu"].kernels);
const source = readFileSync(new URL("gemm_wo.cu", KERNELS), "utf8");

/** The kernel's tiles: (BM, BN, stages), from its KILN_GEMM_TILES list, which every family (plain and
 * gated) instantiates. */
function tiles(): { bm: number; bn: number; stages: number }[] {
  const list = /^#define KILN_GEMM_TILES\(F\) (.*)$/m.exec(source)?.[1] ?? "";
  return [...list.matchAll(/F\((\d+), (\d+), \d+, \d+, (\d+)\)/g)].map(([, bm, bn, s]) => ({
    bm: +bm,
    bn: +bn,
    stages: +s,
  }));
}

const FORMATS: WoGemmFormat[] = [8, 4, "zp"];

describe("gemm_wo launches", () => {
  test("the smallest tile that holds the rows, else 64 rows a CTA; grid (row blocks, weight-row blocks)", () => {
    const cases: [number, string, [number, number]][] = [
      [9, "m16n64", [1, 64]],
      [16, "m16n64", [1, 64]],
      [17, "m32n64", [1, 64]],
      [32, "m32n64", [1, 64]],
      [33, "m64n128", [1, 32]],
      [64, "m64n128", [1, 32]],
      [100, "m64n128", [2, 32]],
      [256, "m64n128", [4, 32]],
    ];
    for (const [rows, tile, grid] of cases) {
      const l = woGemmLaunch(4, rows, 4096);
      assert.equal(l.kernel, `gemm_wo4_${tile}`, `${rows}`);
      assert.deepEqual(l.grid, grid, `${rows}`);
      assert.equal(l.block, 128);
    }
    assert.deepEqual(woGemmLaunch(8, 9, 37).grid, [1, 1], "a partial weight-row block");
    assert.deepEqual(woGemmLaunch("zp", 100, 137).grid, [2, 2]);
    assert.equal(woGemmLaunch("zp", 9, 64).kernel, "gemm_zp_m16n64");
    assert.equal(woGemmLaunch(8, 300, 64).kernel, "gemm_wo8_m64n128");
  });

  test("given the SMs, a grid under half of them takes the next smaller tile while that has more CTAs", () => {
    // The 8B's linears on 132 SMs: o and down (n 4,096), qkv (6,144), gate_up gated (inter 14,336).
    const cases: [number, number, string | undefined, string, [number, number]][] = [
      [16, 4096, undefined, "m16n64", [1, 64]], // no smaller tile
      [32, 4096, undefined, "m16n64", [2, 64]], // 64 CTAs on m32n64
      [32, 6144, undefined, "m32n64", [1, 96]], // 96: kept
      [64, 4096, undefined, "m32n64", [2, 64]], // 32 on m64n128; 128 on m32n64
      [64, 6144, undefined, "m32n64", [2, 96]], // 48 on m64n128
      [128, 4096, undefined, "m32n64", [4, 64]],
      [128, 6144, undefined, "m64n128", [2, 48]], // 96: kept
      [256, 4096, undefined, "m64n128", [4, 32]], // 128: kept
      [64, 14336, "silu", "m64n128", [1, 224]],
    ];
    for (const [rows, n, act, tile, grid] of cases) {
      const l = woGemmLaunch(4, rows, n, act, 132);
      assert.equal(l.kernel, `gemm_wo4_${tile}${act ? `_gated_${act}` : ""}`, `${rows} × ${n}`);
      assert.deepEqual(l.grid, grid, `${rows} × ${n}`);
      assert.equal(l.sharedBytes, woGemmKernels(4, act).find((k) => k.kernel === l.kernel)?.sharedBytes);
    }
    assert.equal(woGemmLaunch(4, 64, 4096).kernel, "gemm_wo4_m64n128", "no SM count: the rows alone");
  });

  test("woGemmKernels: each tile's kernel and its shared memory", () => {
    for (const f of FORMATS)
      for (const act of [undefined, "silu"]) {
        const ks = woGemmKernels(f, act);
        assert.deepEqual(
          ks,
          [9, 17, 33].map((rows) => {
            const l = woGemmLaunch(f, rows, 4096, act);
            return { kernel: l.kernel, sharedBytes: l.sharedBytes };
          }),
        );
      }
  });

  test("every kernel it names is exported (compile_matrix.json) with the shared memory its tile needs", () => {
    const t = tiles();
    assert.equal(t.length, 3, "gemm_wo.cu's KILN_GEMM_TILES");
    const named = new Set<string>();
    for (const f of FORMATS)
      for (const act of [undefined, "silu"])
        for (const rows of [9, 17, 33, 256]) {
          const l = woGemmLaunch(f, rows, 4096, act);
          named.add(l.kernel);
          const [, bm, bn] = /_m(\d+)n(\d+)/.exec(l.kernel) ?? [];
          const k = t.find((x) => x.bm === +bm && x.bn === +bn);
          assert.ok(k, `${l.kernel}: no such tile in gemm_wo.cu`);
          // gemm_wo.cu's Layout: stages × (x [BM][128 + 8] 16-bit + q [BN][16·B + 16] bytes).
          const bits = f === "zp" ? 4 : f;
          assert.equal(l.sharedBytes, k.stages * (k.bm * 136 * 2 + k.bn * (16 * bits + 16)), l.kernel);
          assert.ok(l.sharedBytes <= 227 * 1024, `${l.kernel}: more shared memory than a Hopper CTA has`);
        }
    assert.deepEqual(
      [...named].sort(),
      [...exported].sort(),
      "the matrix's kernels (silu's gated) are reachable",
    );
  });

  test("gated: the gate_up weight's 2·inter rows, BN / 2 features a CTA", () => {
    assert.deepEqual(woGemmLaunch(4, 16, 14336, "silu"), {
      kernel: "gemm_wo4_m16n64_gated_silu",
      grid: [1, 448],
      block: 128,
      sharedBytes: woGemmLaunch(4, 16, 14336).sharedBytes,
    });
    assert.deepEqual(woGemmLaunch("zp", 100, 68, "gelu").grid, [2, 2]);
    assert.equal(woGemmLaunch(8, 33, 68, "relu").kernel, "gemm_wo8_m64n128_gated_relu");
  });

  test("int4-zp: k and G multiples of 32, no g_idx, zero points exact in 16 bits", () => {
    assert.ok(zpGemmTakes(4096, 128, false, true));
    assert.ok(zpGemmTakes(96, 32, false, true));
    assert.ok(!zpGemmTakes(4096, 128, true, true), "act-order");
    assert.ok(!zpGemmTakes(4096, 48, false, true), "G 48");
    assert.ok(!zpGemmTakes(4112, 128, false, true), "k 4112");
    assert.ok(!zpGemmTakes(4096, 128, false, false), "fractional zeros");
  });

  test("QuantizedLinears.gemmTakes: every int-wo weight; int4-zp as zpGemmTakes says", () => {
    const p = 0n as DevicePtr;
    const w = (
      format: QuantizedWeight["format"],
      cols: number,
      zp?: Partial<NonNullable<QuantizedWeight["zp"]>>,
    ) =>
      ({
        format,
        rows: 64,
        cols,
        q: p,
        scales: p,
        ...(zp ? { zp: { zeros: p, gIdx: null, groupSize: 128, zerosExact: true, ...zp } } : {}),
      }) as QuantizedWeight;
    assert.ok(QuantizedLinears.gemmTakes(w("int8-wo", 4100)), "int-wo: any k (the route checks k % 8)");
    assert.ok(QuantizedLinears.gemmTakes(w("int4-wo", 8)));
    assert.ok(QuantizedLinears.gemmTakes(w("int4-zp", 4096, {})));
    assert.ok(!QuantizedLinears.gemmTakes(w("int4-zp", 4096, { gIdx: p })), "act-order");
    assert.ok(!QuantizedLinears.gemmTakes(w("int4-zp", 4096, { zerosExact: false })), "fractional zeros");
    assert.ok(!QuantizedLinears.gemmTakes(w("int4-zp", 4096, { groupSize: 48 })), "G 48");
    assert.ok(!QuantizedLinears.gemmTakes(w("int4-zp", 4112, {})), "k 4112");
  });

  test("zero points exact in 16 bits: integers of magnitude ≤ 240", () => {
    assert.ok(zerosExactIn16Bit(Float32Array.of(0, 1, 8, 15, 16, 240, -240)));
    assert.ok(zerosExactIn16Bit(new Float32Array(0)));
    assert.ok(!zerosExactIn16Bit(Float32Array.of(8, 7.5)), "fractional");
    assert.ok(!zerosExactIn16Bit(Float32Array.of(241)), "q − z past 255");
    assert.ok(!zerosExactIn16Bit(Float32Array.of(Number.NaN)));
  });

  test("KILN_WO_GEMM_MAX_M: unset 256; 0 … 4096; anything else refused", () => {
    assert.equal(parseWoGemmMaxM(undefined), WO_GEMM_MAX_M);
    assert.equal(WO_GEMM_MAX_M, 256);
    assert.equal(parseWoGemmMaxM("0"), 0);
    assert.equal(parseWoGemmMaxM("4096"), 4096);
    for (const bad of ["-1", "4097", "1e2", "0x10", " 8", "eight"])
      assert.throws(() => parseWoGemmMaxM(bad), InvalidEnvironmentError, bad);
  });
});

describe("moduleSpecs: the gemm_wo module", () => {
  const config = parseHfConfig(TINY_CONFIGS.llama, "llama");
  const net = optimize(defineModel(config, "llama"), resolveBuildConfig());
  const plan = { ops: net.ops, output: net.output };
  const spec = (dtype: "fp32" | "fp16" | "bf16", formats: (string | undefined)[]) =>
    moduleSpecs(config, plan, dtype, 16, quantizedModules(formats)).find((s) => s.key === "gemm_wo");

  test("16-bit engines with quantized weights: the families their weights need, the model's activation", () => {
    // The tiny Llama's activation is silu: GEMV_ACT 1, the gated kernels of silu only.
    const bf16 = { KILN_DTYPE_BF16: 1, GEMV_ACT: 1 };
    assert.deepEqual(spec("bf16", [undefined, "int4-wo"])?.defines, { ...bf16, GEMM_FAMILY: 1 });
    assert.deepEqual(spec("fp16", ["int8-wo"])?.defines, { KILN_DTYPE_F16: 1, GEMV_ACT: 1, GEMM_FAMILY: 1 });
    assert.deepEqual(spec("bf16", ["int4-zp"])?.defines, { ...bf16, GEMM_FAMILY: 2 });
    assert.deepEqual(spec("bf16", ["int8-wo", "int4-zp"])?.defines, bf16);
    assert.equal(spec("bf16", ["int8-wo"])?.file, "gemm_wo.cu");
  });

  test("none for fp32 engines, plain engines or fp8 engines", () => {
    assert.equal(spec("fp32", ["int4-wo"]), undefined);
    assert.equal(spec("bf16", [undefined]), undefined);
    assert.equal(spec("bf16", ["fp8"]), undefined);
  });
});
