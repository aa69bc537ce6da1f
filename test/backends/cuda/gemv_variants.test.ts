// The GEMV variant choice (src/backends/cuda/gemv_variants.ts) on the CPU: the measured best variant for
// every measured decode shape of Llama 3.1 8B and 3.2 1B, launch shapes, and that every variant the
// plan can pick is exported by kernels/gemv.cu (as compile_matrix.json lists it).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  chooseGemv,
  GATED_ACTS,
  GEMV_MAX_ROWS,
  GEMV_VARIANTS,
  type GemvVariantName,
  gemvActMacro,
  gemvGatedLaunch,
  gemvLaunch,
  parseGemvMaxRows,
  parseGemvPolicy,
  parseGemvShapes,
  planGemv,
} from "../../../src/backends/cuda/gemv_variants.ts";
import { InvalidEnvironmentError } from "../../../src/errors.ts";

const BF16 = 2;

describe("planGemv", () => {
  // [n, k, best variant measured on an H100, bf16, m = 1, PDL on]
  const measured: [number, number, GemvVariantName][] = [
    [6144, 4096, "r1u16w8"], // 8B qkv
    [4096, 4096, "r2u8w4"], // 8B o
    [28672, 4096, "r1u16w8"], // 8B gate_up
    [4096, 14336, "r1u16w8"], // 8B down
    [128256, 4096, "r1u16w8"], // 8B LM head
    [3072, 2048, "r1u8w8"], // 1B qkv
    [2048, 2048, "r2u8w4"], // 1B o
    [16384, 2048, "r2u4w8"], // 1B gate_up
    [2048, 8192, "r1u16w8"], // 1B down
    [128256, 2048, "r1u8w8"], // 1B LM head
  ];
  for (const [n, k, best] of measured) {
    test(`${n} x ${k} → ${best}`, () => assert.equal(planGemv(n, k, BF16).name, best));
  }

  test("a variant's vectors in flight fit the row whenever the row holds 128 vectors or more", () => {
    for (const k of [1024, 1032, 2048, 3072, 4096, 5120, 8192, 14336, 16384]) {
      for (const n of [7, 769, 2048, 4096, 6144, 16384, 65536, 128256]) {
        for (const elem of [2, 4]) {
          const v = planGemv(n, k, elem);
          const rowVecs = (k * elem) / 16;
          if (rowVecs >= 128) assert.ok(32 * v.vecsInFlight <= rowVecs, `${n} x ${k} (${elem} B): ${v.name}`);
        }
      }
    }
  });

  test("short rows (tiny models) take the smallest U", () => {
    assert.equal(planGemv(640, 256, BF16).name, "r2u4w8");
    assert.equal(planGemv(7, 8, BF16).name, "r2u4w8");
  });

  test("fp32 rows hold half the elements per vector", () => {
    assert.equal(planGemv(6144, 2048, 4).name, "r1u16w8"); // 512 vectors, as bf16 k = 4096
  });
});

describe("gemvLaunch", () => {
  test("grid covers n with R·W rows per block; block is W warps", () => {
    assert.deepEqual(gemvLaunch(GEMV_VARIANTS.r1u16w8, 6144, false), {
      kernel: "gemv_r1u16w8",
      grid: 768,
      block: 256,
    });
    assert.deepEqual(gemvLaunch(GEMV_VARIANTS.r2u8w4, 4097, false), {
      kernel: "gemv_r2u8w4",
      grid: 513,
      block: 128,
    });
    assert.deepEqual(gemvLaunch(GEMV_VARIANTS.r2u4w8, 7, true), {
      kernel: "gemv_r2u4w8_f32out",
      grid: 1,
      block: 256,
    });
    assert.deepEqual(gemvLaunch(GEMV_VARIANTS.r1u8w8, 128256, true), {
      kernel: "gemv_r1u8w8_f32out",
      grid: 16032,
      block: 256,
    });
    // Split-K: S warps per row, so R·W/S rows per block.
    assert.deepEqual(gemvLaunch(GEMV_VARIANTS.r1u4w8s2, 2048, false), {
      kernel: "gemv_r1u4w8s2",
      grid: 512,
      block: 256,
    });
    assert.deepEqual(gemvLaunch(GEMV_VARIANTS.r1u4w8s4, 2049, true), {
      kernel: "gemv_r1u4w8s4_f32out",
      grid: 1025,
      block: 256,
    });
  });

  test("every variant's kernels are exported by gemv.cu (compile_matrix.json) and named by its shape", () => {
    const matrix = JSON.parse(
      readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
    );
    const listed: string[] = matrix.files["gemv.cu"].kernels;
    const source = readFileSync(new URL("../../../kernels/gemv.cu", import.meta.url), "utf8");
    const expected: string[] = [];
    for (const v of Object.values(GEMV_VARIANTS)) {
      const split = v.splitK > 1 ? `s${v.splitK}` : "";
      assert.equal(v.name, `r${v.rowsPerWarp}u${v.vecsInFlight}w${v.warps}${split}`);
      const instance =
        v.splitK > 1
          ? `KILN_GEMV_SPLITK(${v.rowsPerWarp}, ${v.vecsInFlight}, ${v.warps}, ${v.splitK})`
          : `KILN_GEMV_PLAIN(${v.rowsPerWarp}, ${v.vecsInFlight}, ${v.warps})`;
      assert.ok(source.includes(instance), `gemv.cu instantiates ${v.name}`);
      assert.equal(v.warps % v.splitK, 0, `${v.name}: S divides W`);
      assert.ok(
        v.rowsPerWarp * v.vecsInFlight <= 16,
        `${v.name}: prefetch before the PDL wait fits (R·U ≤ 16)`,
      );
      expected.push(`gemv_${v.name}`, `gemv_${v.name}_f32out`);
    }
    assert.deepEqual([...listed].sort(), expected.sort());
    // 16-bit only: the gated kernels of every activation.
    const gated = GATED_ACTS.map((a) => gemvGatedLaunch(a, 1).kernel);
    assert.deepEqual([...matrix.files["gemv.cu"].kernels16Bit].sort(), [...gated].sort());
    // The fused-norm modes (KILN_FUSE_NORM on, tail, carry) measured slower and are gone: no twins.
    for (const twin of ["_norm", "_addnorm", "_addcarry", "_carry"])
      assert.ok(!new RegExp(`gemv_\\w*${twin}\\b`).test(source), `gemv.cu has no ${twin} twin`);
    for (const macro of ["KILN_GEMV_NORM", "KILN_GEMV_TAIL_NORM", "KILN_GEMV_CARRY"])
      assert.ok(!source.includes(macro), `gemv.cu has no ${macro}`);
  });

  test("GEMV_ACT compiles the model's one activation (gemv.cu's #if order), none, or all", () => {
    const source = readFileSync(new URL("../../../kernels/gemv.cu", import.meta.url), "utf8");
    GATED_ACTS.forEach((a, i) => {
      assert.equal(gemvActMacro(new Set([a])), i + 1);
      assert.match(source, new RegExp(`GEMV_ACT == ${i + 1}\\n\\s*KILN_GEMV_GATED\\(${a},`));
    });
    assert.equal(gemvActMacro(new Set()), 0, "no gated MLP");
    assert.equal(gemvActMacro(new Set(["silu", "gelu"])), undefined, "two activations: all compiled");
  });
});

describe("chooseGemv", () => {
  test("steady (the default): r2u8w4 for k ≥ 4096 and n ≥ 4096, else r1u4w8", () => {
    for (const [n, k] of [
      [6144, 4096],
      [4096, 4096],
      [28672, 4096],
      [4096, 14336],
      [128256, 4096],
    ])
      assert.equal(chooseGemv(n, k, BF16).name, "r2u8w4", `${n} x ${k}`);
    for (const [n, k] of [
      [3072, 2048],
      [16384, 2048],
      [2048, 8192],
      [128256, 2048],
      [7, 8],
    ])
      assert.equal(chooseGemv(n, k, BF16).name, "r1u4w8", `${n} x ${k}`);
  });

  test("by-shape is planGemv; a name forces it", () => {
    for (const [n, k] of [
      [6144, 4096],
      [2048, 2048],
      [128256, 2048],
    ]) {
      assert.equal(chooseGemv(n, k, BF16, "by-shape").name, planGemv(n, k, BF16).name);
      assert.equal(chooseGemv(n, k, BF16, "r2u8w4").name, "r2u8w4");
    }
  });

  test("KILN_GEMV_VARIANT is parsed strictly", () => {
    assert.equal(parseGemvPolicy(undefined), "steady");
    assert.equal(parseGemvPolicy("by-shape"), "by-shape");
    assert.equal(parseGemvPolicy("r1u16w8"), "r1u16w8");
    assert.throws(() => parseGemvPolicy("r9u9w9"), /KILN_GEMV_VARIANT must be .*got r9u9w9/);
  });

  test("KILN_GEMV_SHAPES pins a variant to an N×K shape ahead of the policy, and nothing else", () => {
    const shapes = parseGemvShapes("2048x8192:r1u16w8, 2048x2048:r2u8w4");
    assert.equal(chooseGemv(2048, 8192, BF16, "steady", shapes).name, "r1u16w8");
    assert.equal(chooseGemv(2048, 2048, BF16, "r1u8w8", shapes).name, "r2u8w4");
    assert.equal(chooseGemv(8192, 2048, BF16, "steady", shapes).name, chooseGemv(8192, 2048, BF16).name);
    assert.equal(parseGemvShapes(undefined).size, 0);
    assert.equal(parseGemvShapes("").size, 0);
    assert.throws(
      () => parseGemvShapes("2048x8192=r1u16w8"),
      /KILN_GEMV_SHAPES entries must be NxK:variant .*got 2048x8192=r1u16w8/,
    );
    assert.throws(() => parseGemvShapes("2048x8192:r9u9w9"), /got 2048x8192:r9u9w9/);
    assert.throws(() => parseGemvShapes("2048x8192:r9u9w9"), InvalidEnvironmentError);
    assert.throws(() => parseGemvPolicy("fast"), InvalidEnvironmentError);
  });
});

describe("KILN_GEMV_MAX_ROWS", () => {
  test("our GEMV takes at most 2 rows (cuBLASLt wins from 4); KILN_GEMV_MAX_ROWS is parsed strictly", () => {
    assert.equal(GEMV_MAX_ROWS, 2);
    assert.equal(parseGemvMaxRows(undefined), 2);
    assert.equal(parseGemvMaxRows("8"), 8);
    assert.equal(parseGemvMaxRows("0"), 0);
    assert.throws(() => parseGemvMaxRows("9"), /KILN_GEMV_MAX_ROWS must be an integer from 0 to 8; got 9/);
    assert.throws(() => parseGemvMaxRows("two"), /got two/);
  });
});
