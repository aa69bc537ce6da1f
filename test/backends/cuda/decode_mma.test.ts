// Which decode attention a step gets (src/backends/cuda/decode_mma.ts): attention_decode_mma replaces
// attention_decode_batch where the batch kernel is chosen and the engine allows it (fp16/bf16, D 64/128,
// G ≤ 16; FP8 pools where the engine exports attention_decode_mma_kv8; KILN_ATTN_MMA, the A/B that chose it, is refused), and the split kernel where
// a step's contexts are long (it takes the most splits its batch may; its splits as given): batch steps
// run their own RoPE step before it, split steps take its fused-RoPE entry (attention_decode_mma_rope;
// KILN_DECODE_MMA_ROPE, the A/B that chose it, is refused). Also its shared memory against the sizes the compile
// matrix asserts (sizeof(attn::MmaSmem<kMmaStages>)), 3 CTAs per SM, the engine's modules, and the refusal
// of an engine compiled with the old two entries (KILN_DECODE_MMA, which chose between them, is refused).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  decodeSplits,
  graphSplits,
  type SplitTarget,
  useBatchKernel,
} from "../../../src/backends/cuda/attention_splits.ts";
import {
  checkDecodeMmaCurrent,
  DECODE_MMA_KV8,
  DECODE_MMA_ROPE,
  decodeMmaKv8SharedBytes,
  decodeMmaSharedBytes,
  decodeMmaSharedBytesFor,
  decodeRoute,
  mmaDecodeApplies,
} from "../../../src/backends/cuda/decode_mma.ts";
import { moduleSpecs } from "../../../src/backends/cuda/kernel_modules.ts";
import { cudaTuningFromEnv } from "../../../src/backends/cuda/tuning.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import { EngineError } from "../../../src/engine/errors.ts";
import { InvalidEnvironmentError } from "../../../src/errors.ts";

/** Llama-3.1-8B on an H200: 8 kv heads of 4 query heads (one CTA per kv head), 132 SMs. */
const H200_8B: SplitTarget = { smCount: 132, ctasPerSeq: 8 };

/** The kernel and whether RoPE is fused, for a step of `seqs` sequences of the 8B on an H200 (one split
 * where the batch kernel is chosen, 4 otherwise), as decode_attention.ts asks. */
function route8B(seqs: number, mma: boolean, ropeFuse = true) {
  const batch = useBatchKernel(H200_8B, seqs);
  return decodeRoute(batch ? 1 : 4, {
    batch,
    mma,
    fillSplits: decodeSplits(H200_8B, seqs),
    mmaRope: true,
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
  test("16-bit engines with D 64 or 128, G ≤ 16 (fp8 KV: with the _kv8 entry); fp32, other D and G > 16 not", () => {
    for (const dtype of ["fp16", "bf16"] as DTypeName[]) {
      assert.equal(mmaDecodeApplies(dtype, "auto", 4, 128, false), true);
      assert.equal(mmaDecodeApplies(dtype, "auto", 1, 64, false), true);
      assert.equal(mmaDecodeApplies(dtype, "auto", 16, 128, false), true);
      // FP8 pools: where the engine exports attention_decode_mma_kv8
      assert.equal(mmaDecodeApplies(dtype, "fp8", 4, 128, true), true);
      assert.equal(mmaDecodeApplies(dtype, "fp8", 4, 128, false), false);
      assert.equal(mmaDecodeApplies(dtype, "fp8", 32, 128, true), false);
      assert.equal(mmaDecodeApplies(dtype, "auto", 32, 128, false), false);
      for (const d of [80, 96, 256])
        assert.equal(mmaDecodeApplies(dtype, "auto", 4, d, false), false, `D ${d}`);
    }
    assert.equal(mmaDecodeApplies("fp32", "auto", 4, 128, false), false);
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
    for (const seqs of [1, 8]) {
      // 4 splits: fewer than their batch may take (32 and 5), so contexts of at most 256 keys
      const r = route8B(seqs, true);
      assert.equal(r.kernel, "attention_decode_rope_c4");
      assert.equal(r.ropeFused, true);
    }
  });

  test("few sequences over long contexts take it with their graph's splits; shorter ones keep the split kernel", () => {
    /** The route of a decode graph of `seqs` sequences whose longest context is `ctx`. */
    const graphRoute = (seqs: number, ctx: number, mma = true) => {
      const splits = graphSplits(H200_8B, seqs, ctx);
      const r = decodeRoute(splits, {
        batch: false,
        mma,
        fillSplits: decodeSplits(H200_8B, seqs),
        mmaRope: true,
        clusters: true,
        ropeFuse: true,
        ctasPerSeq: 8,
        numKvHeads: 8,
      });
      return { splits, ...r };
    };
    const mmaRoute = (splits: number) => ({
      splits,
      kernel: DECODE_MMA_ROPE,
      module: "attn_decode_mma",
      ropeFused: true,
      ctasPerSeq: 8,
    });
    // Batch 1: up to 32 splits (2 × 132 SMs / 8 CTAs); 128–384 keys take 4–8, 8,192 and 32,768 take 32.
    assert.equal(graphRoute(1, 300).kernel, "attention_decode_rope_c8");
    assert.equal(graphRoute(1, 300).ropeFused, true);
    assert.equal(graphRoute(1, 64).kernel, "attention_decode_rope");
    assert.deepEqual(graphRoute(1, 8192), mmaRoute(32));
    assert.deepEqual(graphRoute(1, 32768), mmaRoute(32));
    // 8 sequences: at most 5 splits; 4,096 keys take them all, 100 keys take 2.
    assert.deepEqual(graphRoute(8, 4096), mmaRoute(5));
    assert.equal(graphRoute(8, 100).kernel, "attention_decode_rope_c2");
    // One split over one block of keys stays on the split kernel (its fill is more than 1).
    assert.equal(graphRoute(32, 60).kernel, "attention_decode_rope");
    // Where the kernel does not apply (fp32, an FP8 KV pool): the split kernel at every length.
    assert.equal(graphRoute(1, 32768, false).kernel, "attention_decode_rope");
    assert.equal(graphRoute(8, 4096, false).kernel, "attention_decode_rope");
  });

  test("split steps on it fuse RoPE (attention_decode_mma_rope), batch steps run it apart; KILN_ROPE_FUSE=0 or an engine without the entry: apart; KILN_DECODE_MMA_ROPE is refused", () => {
    const route = (seqs: number, ctx: number, o: { ropeFuse?: boolean; mmaRope?: boolean } = {}) => {
      const batch = useBatchKernel(H200_8B, seqs);
      return decodeRoute(batch ? 1 : graphSplits(H200_8B, seqs, ctx), {
        batch,
        mma: true,
        fillSplits: decodeSplits(H200_8B, seqs),
        mmaRope: o.mmaRope ?? true,
        clusters: true,
        ropeFuse: o.ropeFuse ?? true,
        ctasPerSeq: 8,
        numKvHeads: 8,
      });
    };
    const fused = { kernel: DECODE_MMA_ROPE, module: "attn_decode_mma", ropeFused: true, ctasPerSeq: 8 };
    const apart = {
      kernel: "attention_decode_mma",
      module: "attn_decode_mma",
      ropeFused: false,
      ctasPerSeq: 8,
    };
    // Split steps at their batch's most splits: fused, unless RoPE is kept apart or the engine lacks it.
    for (const [seqs, ctx] of [
      [1, 8192],
      [1, 32768],
      [8, 4096],
    ]) {
      assert.deepEqual(route(seqs, ctx), fused, `${seqs} × ${ctx}`);
      assert.deepEqual(route(seqs, ctx, { ropeFuse: false }), apart, `${seqs} × ${ctx}, KILN_ROPE_FUSE=0`);
      assert.deepEqual(route(seqs, ctx, { mmaRope: false }), apart, `${seqs} × ${ctx}, no entry`);
    }
    // Batch steps: attention_decode_mma after its own RoPE step, whatever the engine exports.
    for (const [seqs, ctx] of [
      [256, 128],
      [1024, 2048],
    ]) {
      assert.deepEqual(route(seqs, ctx), apart, `${seqs} × ${ctx}`);
      assert.deepEqual(route(seqs, ctx, { ropeFuse: false }), apart, `${seqs} × ${ctx}, KILN_ROPE_FUSE=0`);
    }
    // Short contexts at few sequences: the split kernel with its own fused RoPE.
    assert.equal(route(1, 300).kernel, "attention_decode_rope_c8");
    assert.equal(route(8, 100).kernel, "attention_decode_rope_c2");
    for (const v of ["1", "0", "yes"])
      assert.throws(
        () => cudaTuningFromEnv({ KILN_DECODE_MMA_ROPE: v }),
        (e) =>
          e instanceof InvalidEnvironmentError &&
          e.message.startsWith(`KILN_DECODE_MMA_ROPE=${v}: this switch was removed`),
      );
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
    // FP8 pools of an engine without attention_decode_mma_kv8
    assert.equal(
      route8B(256, mmaDecodeApplies("bf16", "fp8", 4, 128, false)).kernel,
      "attention_decode_batch_rope",
    );
    assert.equal(
      route8B(256, mmaDecodeApplies("fp32", "auto", 4, 128, false)).kernel,
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
          fillSplits: 1,
          mmaRope: true,
          clusters: true,
          ropeFuse: true,
          ctasPerSeq: 8,
          numKvHeads: 8,
        }),
      /the batch kernels take 1 split, not 2/,
    );
  });

  test("decodeMmaSharedBytes and decodeMmaKv8SharedBytes give the sizes the compile matrix's sets assert", () => {
    const matrix = JSON.parse(
      readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
    );
    const sets: Record<string, number>[] = matrix.files["attention_decode_mma.cu"].testDefines;
    const withBytes = sets.filter((s) => s.DECODE_MMA_SMEM_BYTES !== undefined);
    assert.deepEqual(withBytes.map((s) => s.HEAD_DIM).sort(), [128, 64]);
    for (const s of withBytes) {
      assert.equal(decodeMmaSharedBytes(s.HEAD_DIM), s.DECODE_MMA_SMEM_BYTES, `D ${s.HEAD_DIM}`);
      assert.equal(decodeMmaKv8SharedBytes(s.HEAD_DIM), s.DECODE_MMA_KV8_SMEM_BYTES, `kv8 D ${s.HEAD_DIM}`);
      assert.equal(decodeMmaSharedBytesFor(s.HEAD_DIM, "fp8"), s.DECODE_MMA_KV8_SMEM_BYTES);
      assert.equal(decodeMmaSharedBytesFor(s.HEAD_DIM, "auto"), s.DECODE_MMA_SMEM_BYTES);
    }
    assert.equal(Object.keys(matrix.files["attention_decode_mma.cu"]).includes("kernels"), true);
    assert.deepEqual(matrix.files["attention_decode_mma.cu"].kernels, [
      "attention_decode_mma",
      DECODE_MMA_ROPE,
      DECODE_MMA_KV8,
    ]);
  });

  test("an SM of an H100/H200 holds 3 CTAs at D 64 and 128; at D 128 a third stage would cost the third", () => {
    const perSm = (d: number) => Math.floor(SMEM_PER_SM / (decodeMmaSharedBytes(d) + SMEM_RESERVED));
    assert.equal(perSm(128), 3);
    assert.equal(perSm(64), 3);
    const perSmKv8 = (d: number) => Math.floor(SMEM_PER_SM / (decodeMmaKv8SharedBytes(d) + SMEM_RESERVED));
    assert.equal(perSmKv8(128), 3);
    assert.ok(perSmKv8(64) >= 3); // 4 by shared memory: its E4M3 stages are half the plain ones

    // A stage: 64 keys of K and V, rows of D + 8 16-bit elements.
    const stage = 2 * 64 * (128 + 8) * 2;
    assert.equal(3 * (decodeMmaSharedBytes(128) + stage + SMEM_RESERVED) > SMEM_PER_SM, true);
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
      ROTARY_DIM: 128,
      DECODE_MMA_SMEM_BYTES: decodeMmaSharedBytes(128),
      DECODE_MMA_KV8_SMEM_BYTES: decodeMmaKv8SharedBytes(128),
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

describe("the old two-entry attention_decode_mma", () => {
  test("KILN_DECODE_MMA, which chose the entry, is refused by name", () => {
    for (const v of ["deep", "occupancy", ""])
      assert.throws(
        () => cudaTuningFromEnv({ KILN_DECODE_MMA: v }),
        (e: unknown) =>
          e instanceof InvalidEnvironmentError &&
          e.message.startsWith(`KILN_DECODE_MMA=${v}: this switch was removed`),
        v,
      );
  });

  test("an engine whose module still exports attention_decode_mma_occ is refused, naming the rebuild", () => {
    const has = (names: string[]) => (k: string) => names.includes(k);
    assert.throws(
      () => checkDecodeMmaCurrent("/e", has(["attention_decode_mma", "attention_decode_mma_occ"])),
      (e: unknown) =>
        e instanceof EngineError &&
        /engine \/e was compiled with an older attention_decode_mma .*kiln build --backend cuda/.test(
          e.message,
        ),
    );
    checkDecodeMmaCurrent("/e", has(["attention_decode_mma"]));
    checkDecodeMmaCurrent("/e", has([]));
  });
});
