// The kernels/gemm_wo.cu GEMMs' launches (src/backends/cuda/gemm_wo_variants.ts): the tile by rows, the
// grid, the dynamic shared memory the kernel's own instantiations need (read from the source), every
// name one kernels/compile_matrix.json lists; which int4-zp weights they take; KILN_WO_GEMM_MAX_M; and
// the gemm_wo module exactly for 16-bit engines with weight-only quantized weights.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  parseWoGemmMaxM,
  WO_GEMM_MAX_M,
  type WoGemmFormat,
  woGemmLaunch,
  zerosExactIn16Bit,
  zpGemmTakes,
} from "../../../src/backends/cuda/gemm_wo_variants.ts";
import { moduleSpecs, quantizedModules } from "../../../src/backends/cuda/kernel_modules.ts";
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

/** The kernel's instantiations: name → (bits, BM, BN, stages), from its KILN_GEMM_WO / _ZP lines. */
function instantiations(): Map<string, { bits: number; bm: number; bn: number; stages: number }> {
  const out = new Map<string, { bits: number; bm: number; bn: number; stages: number }>();
  for (const [, b, bm, bn, , , s] of source.matchAll(
    /^KILN_GEMM_WO\((\d+), (\d+), (\d+), (\d+), (\d+), (\d+)\)$/gm,
  ))
    out.set(`gemm_wo${b}_m${bm}n${bn}`, { bits: +b, bm: +bm, bn: +bn, stages: +s });
  for (const [, bm, bn, , , s] of source.matchAll(/^KILN_GEMM_ZP\((\d+), (\d+), (\d+), (\d+), (\d+)\)$/gm))
    out.set(`gemm_zp_m${bm}n${bn}`, { bits: 4, bm: +bm, bn: +bn, stages: +s });
  return out;
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

  test("every kernel it names is exported (compile_matrix.json) and instantiated with the shared memory it asks", () => {
    const inst = instantiations();
    assert.deepEqual([...inst.keys()].sort(), [...exported].sort(), "the source's kernels are the matrix's");
    const named = new Set<string>();
    for (const f of FORMATS)
      for (const rows of [9, 17, 33, 256]) {
        const l = woGemmLaunch(f, rows, 4096);
        named.add(l.kernel);
        const k = inst.get(l.kernel);
        assert.ok(k, `${l.kernel} is not in gemm_wo.cu`);
        // gemm_wo.cu's Layout: stages × (x [BM][128 + 8] 16-bit + q [BN][16·B + 16] bytes).
        assert.equal(l.sharedBytes, k.stages * (k.bm * 136 * 2 + k.bn * (16 * k.bits + 16)), l.kernel);
        assert.ok(l.sharedBytes <= 227 * 1024, `${l.kernel}: more shared memory than a Hopper CTA has`);
      }
    assert.deepEqual([...named].sort(), [...exported].sort(), "every exported kernel is reachable");
  });

  test("int4-zp: k and G multiples of 32, no g_idx, zero points exact in 16 bits", () => {
    assert.ok(zpGemmTakes(4096, 128, false, true));
    assert.ok(zpGemmTakes(96, 32, false, true));
    assert.ok(!zpGemmTakes(4096, 128, true, true), "act-order");
    assert.ok(!zpGemmTakes(4096, 48, false, true), "G 48");
    assert.ok(!zpGemmTakes(4112, 128, false, true), "k 4112");
    assert.ok(!zpGemmTakes(4096, 128, false, false), "fractional zeros");
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

  test("16-bit engines with quantized weights: the families their weights need", () => {
    assert.deepEqual(spec("bf16", [undefined, "int4-wo"])?.defines, { KILN_DTYPE_BF16: 1, GEMM_FAMILY: 1 });
    assert.deepEqual(spec("fp16", ["int8-wo"])?.defines, { KILN_DTYPE_F16: 1, GEMM_FAMILY: 1 });
    assert.deepEqual(spec("bf16", ["int4-zp"])?.defines, { KILN_DTYPE_BF16: 1, GEMM_FAMILY: 2 });
    assert.deepEqual(spec("bf16", ["int8-wo", "int4-zp"])?.defines, { KILN_DTYPE_BF16: 1 });
    assert.equal(spec("bf16", ["int8-wo"])?.file, "gemm_wo.cu");
  });

  test("none for fp32 engines, plain engines or fp8 engines", () => {
    assert.equal(spec("fp32", ["int4-wo"]), undefined);
    assert.equal(spec("bf16", [undefined]), undefined);
    assert.equal(spec("bf16", ["fp8"]), undefined);
  });
});
