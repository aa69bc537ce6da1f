// Which decode attention a step gets (src/backends/cuda/decode_mma.ts): attention_decode_mma replaces
// attention_decode_batch where the batch kernel is chosen and the engine allows it (fp16/bf16, D 64/128,
// G ≤ 16, a 16-bit KV pool; KILN_ATTN_MMA, the A/B that chose it, is refused), and a step on the mma kernel runs
// its own RoPE step (the kernel has no prologue); KILN_DECODE_MMA=occupancy takes attention_decode_mma_occ
// instead, except in an engine built before it. Also both entries' shared memory against the sizes the
// compile matrix asserts (sizeof(attn::MmaSmem<kStages>)) and the engine's modules.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { type SplitTarget, useBatchKernel } from "../../../src/backends/cuda/attention_splits.ts";
import {
  type DecodeMmaVariant,
  decodeMmaKernel,
  decodeMmaSharedBytes,
  decodeMmaVariantFor,
  decodeRoute,
  mmaDecodeApplies,
} from "../../../src/backends/cuda/decode_mma.ts";
import { moduleSpecs } from "../../../src/backends/cuda/kernel_modules.ts";
import { cudaTuningFromEnv } from "../../../src/backends/cuda/tuning.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import { InvalidEnvironmentError } from "../../../src/errors.ts";

/** Llama-3.1-8B on an H200: 8 kv heads of 4 query heads (one CTA per kv head), 132 SMs. */
const H200_8B: SplitTarget = { smCount: 132, ctasPerSeq: 8 };

/** The kernel and whether RoPE is fused, for a step of `seqs` sequences of the 8B on an H200 (one split
 * where the batch kernel is chosen, 4 otherwise), as decode_attention.ts asks. */
function route8B(seqs: number, mma: boolean, ropeFuse = true, mmaVariant: DecodeMmaVariant = "deep") {
  const batch = useBatchKernel(H200_8B, seqs);
  return decodeRoute(batch ? 1 : 4, {
    batch,
    mma,
    mmaVariant,
    clusters: true,
    ropeFuse,
    ctasPerSeq: 8,
    numKvHeads: 8,
  });
}

/** sm_90's shared memory per SM and what each CTA reserves of it. */
const SMEM_PER_SM = 228 * 1024;
const SMEM_RESERVED = 1024;

describe("attention_decode_mma routing", () => {
  test("16-bit engines with D 64 or 128, G ≤ 16 and a 16-bit KV pool; fp32, fp8 KV, other D and G > 16 not", () => {
    for (const dtype of ["fp16", "bf16"] as DTypeName[]) {
      assert.equal(mmaDecodeApplies(dtype, "auto", 4, 128), true);
      assert.equal(mmaDecodeApplies(dtype, "auto", 1, 64), true);
      assert.equal(mmaDecodeApplies(dtype, "auto", 16, 128), true);
      assert.equal(mmaDecodeApplies(dtype, "fp8", 4, 128), false);
      assert.equal(mmaDecodeApplies(dtype, "auto", 32, 128), false);
      for (const d of [80, 96, 256]) assert.equal(mmaDecodeApplies(dtype, "auto", 4, d), false, `D ${d}`);
    }
    assert.equal(mmaDecodeApplies("fp32", "auto", 4, 128), false);
  });

  test("many sequences take attention_decode_mma, without RoPE fused, one CTA per kv head; few keep the splits", () => {
    for (const seqs of [33, 64, 256, 1024]) {
      assert.deepEqual(route8B(seqs, true), {
        kernel: "attention_decode_mma",
        module: "attn_decode_mma",
        ropeFused: false,
        ctasPerSeq: 8,
      });
    }
    for (const seqs of [1, 8, 32]) {
      const r = route8B(seqs, true);
      assert.equal(r.kernel, "attention_decode_rope_c4");
      assert.equal(r.ropeFused, true);
    }
  });

  test("an engine it does not apply to keeps attention_decode_batch and its fused RoPE; KILN_ATTN_MMA is refused", () => {
    assert.throws(
      () => cudaTuningFromEnv({ KILN_ATTN_MMA: "0" }),
      /KILN_ATTN_MMA=0: this switch was removed/,
    );
    assert.deepEqual(route8B(256, false), {
      kernel: "attention_decode_batch_rope",
      module: "attn_decode",
      ropeFused: true,
      ctasPerSeq: 8,
    });
    assert.equal(route8B(256, mmaDecodeApplies("bf16", "fp8", 4, 128)).kernel, "attention_decode_batch_rope");
    assert.equal(
      route8B(256, mmaDecodeApplies("fp32", "auto", 4, 128)).kernel,
      "attention_decode_batch_rope",
    );
    assert.equal(route8B(256, false, false).kernel, "attention_decode_batch");
    assert.equal(route8B(256, false, false).ropeFused, false);
  });

  test("the choice depends on the batch alone: a graph's bucket gets the same route for every context", () => {
    // decodeRoute sees the batch (useBatchKernel) and the split count, which is 1 wherever it is chosen.
    assert.throws(
      () =>
        decodeRoute(2, {
          batch: true,
          mma: true,
          mmaVariant: "deep",
          clusters: true,
          ropeFuse: true,
          ctasPerSeq: 8,
          numKvHeads: 8,
        }),
      /attention_decode_mma takes 1 split, not 2/,
    );
  });

  test("decodeMmaSharedBytes gives both entries' sizes the compile matrix's sets assert", () => {
    const matrix = JSON.parse(
      readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
    );
    const sets: Record<string, number>[] = matrix.files["attention_decode_mma.cu"].testDefines;
    for (const [macro, variant] of [
      ["DECODE_MMA_SMEM_BYTES", "deep"],
      ["DECODE_MMA_OCC_SMEM_BYTES", "occupancy"],
    ] as const) {
      const withBytes = sets.filter((s) => s[macro] !== undefined);
      assert.deepEqual(withBytes.map((s) => s.HEAD_DIM).sort(), [128, 64], macro);
      for (const s of withBytes)
        assert.equal(decodeMmaSharedBytes(s.HEAD_DIM, variant), s[macro], `${macro} D ${s.HEAD_DIM}`);
    }
  });

  test("an SM of an H100/H200 holds 2 deep CTAs and 3 occupancy CTAs at D 64 and 128", () => {
    const perSm = (d: number, v: DecodeMmaVariant) =>
      Math.floor(SMEM_PER_SM / (decodeMmaSharedBytes(d, v) + SMEM_RESERVED));
    assert.equal(perSm(128, "deep"), 2);
    assert.equal(perSm(128, "occupancy"), 3);
    assert.equal(perSm(64, "occupancy"), 3);
    assert.ok(perSm(64, "deep") >= 2);
    // One stage (64 keys of K and V, rows of D + 8 elements) fewer.
    for (const d of [64, 128])
      assert.equal(
        decodeMmaSharedBytes(d, "deep") - decodeMmaSharedBytes(d, "occupancy"),
        2 * 64 * (d + 8) * 2,
        `D ${d}`,
      );
  });

  test("16-bit engines it applies to compile the module with their shapes; fp32 engines and D 80 do not", () => {
    const model = (headDim: number) =>
      ({
        numHeads: 32,
        numKvHeads: 8,
        headDim,
        hiddenSize: 4096,
        vocabSize: 1000,
        rope: { rotaryDim: headDim },
      }) as unknown as Parameters<typeof moduleSpecs>[0];
    const plan = { ops: [] } as unknown as Parameters<typeof moduleSpecs>[1];
    const spec = moduleSpecs(model(128), plan, "bf16", 16).find((s) => s.key === "attn_decode_mma");
    assert.deepEqual(spec?.defines, {
      KILN_DTYPE_BF16: 1,
      NUM_HEADS: 32,
      NUM_KV_HEADS: 8,
      HEAD_DIM: 128,
      BLOCK_SIZE: 16,
      DECODE_MMA_SMEM_BYTES: decodeMmaSharedBytes(128, "deep"),
      DECODE_MMA_OCC_SMEM_BYTES: decodeMmaSharedBytes(128, "occupancy"),
    });
    assert.equal(spec?.file, "attention_decode_mma.cu");
    assert.equal(
      moduleSpecs(model(128), plan, "fp32", 16).some((s) => s.key === "attn_decode_mma"),
      false,
    );
    assert.equal(
      moduleSpecs(model(80), plan, "fp16", 16).some((s) => s.key === "attn_decode_mma"),
      false,
    );
  });
});

describe("KILN_DECODE_MMA", () => {
  test("unset, empty or deep: attention_decode_mma; occupancy: attention_decode_mma_occ", () => {
    for (const v of [undefined, "", "deep"])
      assert.equal(cudaTuningFromEnv({ KILN_DECODE_MMA: v }).decodeMma, "deep", String(v));
    assert.equal(cudaTuningFromEnv({ KILN_DECODE_MMA: "occupancy" }).decodeMma, "occupancy");
    assert.equal(decodeMmaKernel("deep"), "attention_decode_mma");
    assert.equal(decodeMmaKernel("occupancy"), "attention_decode_mma_occ");
  });

  test("another value is an InvalidEnvironmentError naming it and the accepted ones", () => {
    for (const v of ["occ", "shallow", "1"])
      assert.throws(
        () => cudaTuningFromEnv({ KILN_DECODE_MMA: v }),
        (e: unknown) =>
          e instanceof InvalidEnvironmentError &&
          e.message === `KILN_DECODE_MMA must be deep or occupancy; got ${v}`,
        v,
      );
  });

  test("steps of many sequences take the chosen entry; few keep the split kernels either way", () => {
    for (const seqs of [64, 256, 1024])
      assert.deepEqual(route8B(seqs, true, true, "occupancy"), {
        kernel: "attention_decode_mma_occ",
        module: "attn_decode_mma",
        ropeFused: false,
        ctasPerSeq: 8,
      });
    assert.equal(route8B(8, true, true, "occupancy").kernel, "attention_decode_rope_c4");
    assert.equal(route8B(256, false, true, "occupancy").kernel, "attention_decode_batch_rope");
  });

  test("an engine built before attention_decode_mma_occ runs the deep kernel when asked for occupancy", () => {
    const asked: string[] = [];
    const has = (names: string[]) => (k: string) => {
      asked.push(k);
      return names.includes(k);
    };
    const both = ["attention_decode_mma", "attention_decode_mma_occ"];
    assert.equal(decodeMmaVariantFor("occupancy", has(both)), "occupancy");
    assert.deepEqual(asked, ["attention_decode_mma_occ"]);
    assert.equal(decodeMmaVariantFor("occupancy", has(["attention_decode_mma"])), "deep");
    assert.equal(decodeMmaVariantFor("deep", has(both)), "deep");
  });
});
