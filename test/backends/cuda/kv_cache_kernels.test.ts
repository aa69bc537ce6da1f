// The CUDA backend's FP8 KV cache without a GPU: which kernels it launches (the `_kv8` exports, listed
// in kernels/compile_matrix.json), the refusal of an engine whose cubins lack them (named error with the
// fix, before the GPU is touched), and the pool's per-block bytes (data and scales).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CudaBackend } from "../../../src/backends/cuda/cuda_backend.ts";
import { cubinBlobName, KERNELS_DIR, type ModuleKey } from "../../../src/backends/cuda/kernel_modules.ts";
import { kvPoolBlockBytes } from "../../../src/backends/cuda/kv_cache.ts";
import {
  assertKvCacheKernels,
  cubinExports,
  FP8_KV_KERNELS,
  kvKernel,
} from "../../../src/backends/cuda/kv_cache_kernels.ts";
import { KvCacheDtypeUnsupportedError, kvBytesPerToken } from "../../../src/backends/kv_cache_dtype.ts";
import type { LoadedEngine } from "../../../src/engine/reader.ts";

const FILES: Partial<Record<ModuleKey, string>> = {
  rope: "rope_kv.cu",
  attn_prefill: "attention_prefill.cu",
  attn_decode: "attention_decode.cu",
};
const matrix = JSON.parse(readFileSync(join(KERNELS_DIR, "compile_matrix.json"), "utf8")) as {
  files: Record<string, { kernels: string[] }>;
};

/** Kernels of those files that never read the KV pools, so have no `_kv8` twin. */
const NO_KV_POOLS = new Set(["attention_prefill_merge"]); // reads the split partials only

/** A cubin-like byte string whose ELF string table names `kernels`. */
const fakeCubin = (kernels: string[]) => Buffer.from(`\0.text\0${kernels.join("\0")}\0.nv.info\0`, "latin1");

/** An engine whose three KV modules export `kernels` (each module: the ones FP8_KV_KERNELS lists for it,
 * filtered by `keep`). */
function fakeEngine(keep: (name: string) => boolean) {
  const blobs = new Map<string, Uint8Array>();
  for (const [key, names] of Object.entries(FP8_KV_KERNELS) as [ModuleKey, string[]][]) {
    const plain = names.map((n) => n.replace(/_kv8$/, ""));
    blobs.set(cubinBlobName(key), fakeCubin([...plain, ...names.filter(keep)]));
  }
  return { dir: "/engines/old", readBlob: (name: string) => blobs.get(name) ?? null };
}

describe("the CUDA backend's FP8 KV kernels", () => {
  test("fp8 launches the _kv8 export of each KV kernel, auto the plain one", () => {
    assert.equal(kvKernel("attention_decode_rope_c4", "fp8"), "attention_decode_rope_c4_kv8");
    assert.equal(kvKernel("attention_prefill", "fp8"), "attention_prefill_kv8");
    assert.equal(kvKernel("rope_qkv_fused", "auto"), "rope_qkv_fused");
  });

  test("every kernel the check requires is an export of its file in compile_matrix.json, and so is the _kv8 twin of every KV kernel", () => {
    for (const [key, names] of Object.entries(FP8_KV_KERNELS) as [ModuleKey, string[]][]) {
      const listed = matrix.files[FILES[key] as string].kernels;
      for (const n of names) assert.ok(listed.includes(n), `${n} is not in ${FILES[key]}'s kernels`);
      for (const plain of listed.filter((k) => !k.endsWith("_kv8") && !NO_KV_POOLS.has(k)))
        assert.ok(listed.includes(`${plain}_kv8`), `${FILES[key]} has no ${plain}_kv8`);
    }
  });

  test("cubinExports finds whole names only", () => {
    const cubin = fakeCubin(["attention_decode", "attention_decode_kv8"]);
    assert.ok(cubinExports(cubin, "attention_decode_kv8"));
    assert.ok(!cubinExports(cubin, "attention_decode_rope_kv8"));
    assert.ok(!cubinExports(fakeCubin(["attention_decode_kv8x"]), "attention_decode_kv8"));
  });

  test("an engine whose cubins lack the _kv8 kernels is refused for fp8, naming them and the rebuild", () => {
    const old = fakeEngine(() => false);
    assert.throws(
      () => assertKvCacheKernels(old, "fp8"),
      (e: unknown) =>
        e instanceof KvCacheDtypeUnsupportedError &&
        /engine \/engines\/old was built without the FP8 KV-cache kernels/.test(e.message) &&
        /attention_decode_kv8/.test(e.message) &&
        /rope_qkv_fused_kv8/.test(e.message) &&
        /rebuild it with kiln build --backend cuda/.test(e.message),
    );
    // One kernel missing is enough.
    assert.throws(
      () =>
        assertKvCacheKernels(
          fakeEngine((n) => n !== "attention_prefill_kv8"),
          "fp8",
        ),
      /\(attention_prefill_kv8\)/,
    );
    assert.doesNotThrow(() =>
      assertKvCacheKernels(
        fakeEngine(() => true),
        "fp8",
      ),
    );
    assert.doesNotThrow(() => assertKvCacheKernels(old, "auto"));
    assert.doesNotThrow(() => assertKvCacheKernels({ dir: "x", readBlob: () => null }, "auto"));
  });

  test("CudaBackend.fromEngine refuses such an engine for fp8 before it opens the GPU", () => {
    const old = fakeEngine(() => false);
    const engine = { ...old, header: { weights: [] } } as unknown as LoadedEngine;
    assert.throws(() => CudaBackend.fromEngine(engine, undefined, "fp8"), KvCacheDtypeUnsupportedError);
  });
});

describe("DeviceKvCache's block bytes", () => {
  test("fp8: a byte per value plus a 4-byte scale per (slot, kv head) row; auto: the engine dtype", () => {
    const model = { numKvHeads: 8, headDim: 128 };
    assert.deepEqual(kvPoolBlockBytes(model, 16, 2, "fp8"), { data: 16 * 8 * 128, scale: 16 * 8 * 4 });
    assert.deepEqual(kvPoolBlockBytes(model, 16, 2, "auto"), { data: 16 * 8 * 128 * 2, scale: 0 });
    assert.deepEqual(kvPoolBlockBytes({ numKvHeads: 1, headDim: 80 }, 32, 4, "auto"), {
      data: 32 * 80 * 4,
      scale: 0,
    });
  });

  test("K and V of every layer add up to the backend's kvBytesPerBlock (kvBytesPerToken × block size)", () => {
    for (const dtype of ["fp8", "auto"] as const) {
      const b = kvPoolBlockBytes({ numKvHeads: 4, headDim: 64 }, 16, 2, dtype);
      assert.equal(2 * 22 * (b.data + b.scale), 16 * kvBytesPerToken(dtype, 22, 4, 64, 2));
    }
  });
});
