// The CUDA switches (src/backends/cuda/tuning.ts): read once from an environment, validated with a named
// error, frozen; and no other module of src/ reads a KILN_* variable from process.env.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  buildThreadsFromEnv,
  cudaTuning,
  cudaTuningFromEnv,
  DEFAULT_CUDA_TUNING,
} from "../../../src/backends/cuda/tuning.ts";
import { InvalidEnvironmentError } from "../../../src/errors.ts";

const SRC = fileURLToPath(new URL("../../../src", import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("CudaTuning", () => {
  test("the defaults: graphs, PDL, kiln's GEMV on 2 rows, fused gated GEMV, fused RoPE, clusters", () => {
    const t = cudaTuningFromEnv({});
    assert.deepEqual(
      { ...t, gemvShapes: [...t.gemvShapes], skipKernels: [...t.skipKernels] },
      {
        graphs: true,
        pdl: true,
        gemv: true,
        gemvMaxRows: 2,
        gemvPolicy: "steady",
        gemvShapes: [],
        woGemmMaxM: 256,
        fp8Gemv: "auto",
        fuseGatedAct: true,
        attnTrigger: "keys",
        attnCluster: true,
        prefillSplit: true,
        ropeEarly: false,
        ropeFuse: true,
        attnStop: "",
        skipKernels: [],
      },
    );
    assert.deepEqual(DEFAULT_CUDA_TUNING, t);
  });

  test("each switch is read from the environment it is given", () => {
    const t = cudaTuningFromEnv({
      KILN_CUDA_GRAPHS: "0",
      KILN_PDL: "0",
      KILN_GEMV: "0",
      KILN_GEMV_MAX_ROWS: "8",
      KILN_GEMV_VARIANT: "by-shape",
      KILN_GEMV_SHAPES: "2048x8192:r1u16w8",
      KILN_WO_GEMM_MAX_M: "0",
      KILN_FP8_GEMV: "mma",
      KILN_FUSE_GATED_ACT: "0",
      KILN_ATTN_TRIGGER: "exit",
      KILN_ATTN_CLUSTER: "0",
      KILN_PREFILL_SPLIT: "0",
      KILN_ROPE_TRIGGER: "early",
      KILN_ROPE_FUSE: "0",
      KILN_ATTN_STOP: "keys",
      KILN_SKIP_KERNELS: "rms_norm,,add_rms_norm",
    });
    assert.equal(t.graphs, false);
    assert.equal(t.pdl, false);
    assert.equal(t.gemv, false);
    assert.equal(t.gemvMaxRows, 8);
    assert.equal(t.gemvPolicy, "by-shape");
    assert.equal(t.gemvShapes.get("2048x8192"), "r1u16w8");
    assert.equal(t.woGemmMaxM, 0);
    assert.equal(t.fp8Gemv, "mma");
    assert.equal(t.fuseGatedAct, false);
    assert.equal(t.prefillSplit, false);
    assert.equal(t.attnTrigger, "exit");
    assert.equal(t.attnCluster, false);
    assert.equal(t.ropeEarly, true);
    assert.equal(t.ropeFuse, false);
    assert.equal(t.attnStop, "keys");
    assert.deepEqual([...t.skipKernels], ["rms_norm", "add_rms_norm"]);
  });

  test("a malformed switch is an InvalidEnvironmentError naming it", () => {
    for (const [name, value] of [
      ["KILN_GEMV_MAX_ROWS", "9"],
      ["KILN_GEMV_VARIANT", "fast"],
      ["KILN_GEMV_SHAPES", "2048:r1u4w8"],
      ["KILN_WO_GEMM_MAX_M", "-1"],
      ["KILN_WO_GEMM_MAX_M", "4097"],
      ["KILN_WO_GEMM_MAX_M", "64.5"],
      ["KILN_WO_GEMM_MAX_M", "lots"],
      ["KILN_FP8_GEMV", "tensor"],
      ["KILN_ATTN_TRIGGER", "never"],
      ["KILN_ATTN_CLUSTER", "yes"],
      ["KILN_PREFILL_SPLIT", "2"],
      ["KILN_ROPE_TRIGGER", "late"],
      ["KILN_ROPE_FUSE", "on"],
      ["KILN_ATTN_STOP", "end"],
    ])
      assert.throws(
        () => cudaTuningFromEnv({ [name]: value }),
        (e: unknown) => e instanceof InvalidEnvironmentError && e.message.includes(name),
        name,
      );
  });

  test("a removed switch is refused, not silently ignored", () => {
    for (const name of [
      "KILN_FUSE_NORM",
      "KILN_SAMPLER_SLICES",
      "KILN_SAMPLER_SCALAR",
      "KILN_SAMPLER_LEADER_AGG",
      "KILN_ROW_BUCKETS",
      "KILN_ATTN_BATCH",
      "KILN_ATTN_MMA",
      "KILN_MIXED_DECODE",
      "KILN_DECODE_MMA",
      "KILN_DECODE_PERSIST",
      "KILN_WO4_GEMV",
      "KILN_FP8_NORM_QUANT",
      "KILN_DECODE_MMA_ROPE",
      "KILN_PREFILL_WARPS",
      "KILN_PREFILL_KERNEL",
      "KILN_WO4_PIPELINE",
      "KILN_ATTN_WARPS",
    ])
      assert.throws(
        () => cudaTuningFromEnv({ [name]: "1" }),
        (e: unknown) =>
          e instanceof InvalidEnvironmentError && e.message.startsWith(`${name}=1: this switch was removed`),
        name,
      );
  });

  test("a removed switch is refused at any value, with why it went", () => {
    const cases: [string, string[], string[]][] = [
      ["KILN_DECODE_PERSIST", ["0", "1", ""], ["measured no faster"]],
      ["KILN_WO4_GEMV", ["mma", "fma", ""], ["gemv_wo4_mma"]],
      ["KILN_PREFILL_KERNEL", ["mma4", "wgmma", "mma8", ""], ["attention_prefill_wgmma", "measured slower"]],
      ["KILN_PREFILL_WARPS", ["4", "8"], ["measured slower"]],
      ["KILN_ATTN_WARPS", ["4", "8"], ["8 warps", "measured faster"]],
    ];
    for (const [name, values, why] of cases)
      for (const v of values)
        assert.throws(
          () => cudaTuningFromEnv({ [name]: v }),
          (e: unknown) =>
            e instanceof InvalidEnvironmentError &&
            e.message.startsWith(`${name}=${v}: this switch was removed`) &&
            why.every((w) => e.message.includes(w)),
          `${name}=${v}`,
        );
  });

  test("frozen: a backend's settings cannot change under its captured graphs", () => {
    const t = cudaTuning({ graphs: false });
    assert.equal(t.graphs, false);
    assert.equal(t.pdl, true, "the rest are the defaults");
    assert.ok(Object.isFrozen(t) && Object.isFrozen(DEFAULT_CUDA_TUNING));
    assert.throws(() => {
      (t as { graphs: boolean }).graphs = true;
    }, TypeError);
  });

  test("KILN_WO_GEMM_MAX_M: any row count from 0 (off) to 4096", () => {
    for (const v of ["0", "9", "64", "4096"])
      assert.equal(cudaTuningFromEnv({ KILN_WO_GEMM_MAX_M: v }).woGemmMaxM, Number(v), v);
    assert.equal(cudaTuningFromEnv({ KILN_WO_GEMM_MAX_M: "" }).woGemmMaxM, 256, "empty: the default");
  });

  test("KILN_BUILD_THREADS is passed through unparsed", () => {
    assert.equal(buildThreadsFromEnv({ KILN_BUILD_THREADS: "3" }), "3");
    assert.equal(buildThreadsFromEnv({}), undefined);
  });

  test("no module of src/ but tuning.ts (and the CLI) reads a KILN_* variable from process.env", () => {
    const readers = sourceFiles(SRC)
      .filter((f) => !f.includes(`${join("src", "cli")}/`) && !f.endsWith(join("cuda", "tuning.ts")))
      .filter((f) => /process\.env(\.KILN_|\[["'`]KILN_)/.test(readFileSync(f, "utf8")))
      .map((f) => f.slice(SRC.length + 1));
    assert.deepEqual(readers, []);
  });
});
