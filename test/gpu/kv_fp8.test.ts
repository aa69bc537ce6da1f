// `--kv-cache-dtype fp8` on the CUDA backend (kernels/kv_fp8.cuh, the `_kv8` kernels) against the CPU
// backend's FP8 KV cache (src/backends/cpu/kernels/kv_fp8.ts), on the GPU:
//   write      rope_qkv_fused_kv8 / rope_qkv_kv8 store exactly the CPU's writeFp8Slot of the values
//              rope_qkv_fused stores (bytes and scales, bit for bit); slots not written stay as they were.
//   attention  attention_prefill_kv8, attention_decode_kv8 (1 and 4 splits, a cluster of 2
//              on sm_90+, the batch kernel) over FP8 pools against pagedAttention over the same pools (which reads
//              fp32(e4m3 · scale)), within attention_cuda.test.ts's bounds; the tensor-core prefill
//              (16-bit, head 64/128) rounds those values to the dtype in shared memory, so its reference
//              reads them rounded likewise (one rounding more than the CPU's fp32: kernels/attention_README.md);
//              attention_decode_mma_kv8 (16-bit, head 64/128; 1 and 4 splits) reads K exactly (its scale
//              on the fp32 scores), and V exactly in bf16 (its scale on fp32 P) but rounded so in fp16:
//              its reference reads V as the kernel does.
//   engine     the same prompts through CUDA and the CPU, both with fp8 KV: fp32 engines give the CPU's
//              greedy tokens and logits within 1e-2 (fp32 noise, ~1e-5, can flip an E4M3 rounding of a
//              value lying within an ulp of a rounding boundary, ~2^-19 of the values, which moves a
//              logit of these small models by well under 1e-2); bf16 engines the tolerance of
//              cuda_backend.test.ts (first token where the CPU's margin is ≥ 0.5, log-probs of the
//              CPU's tokens within 0.15 nats); prefix reuse and copy on write (n > 1) give a cold run's
//              tokens (the scales travel with their blocks); a bf16 head-128 engine's 160 sequences
//              decoded together (attention_decode_mma_kv8's route) within 0.15 nats a token of the CPU.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, describe, it, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  allocFp8KvPool,
  type Fp8KvPool,
  pagedAttention,
  readFp8Slot,
  ropeInvFreq,
  writeFp8Slot,
} from "../../src/backends/cpu/kernels/index.ts";
import {
  DECODE_SPLIT_THREADS,
  decodeBatchSharedBytes,
  decodeSharedBytes,
  useBatchKernel,
} from "../../src/backends/cuda/attention_splits.ts";
import {
  decodeMmaKv8SharedBytes,
  mmaDecodeApplies,
  mmaDecodeBuilt,
} from "../../src/backends/cuda/decode_mma.ts";
import { CudaDevice, type DevicePtr } from "../../src/backends/cuda/device/index.ts";
import { prefillTiles } from "../../src/backends/cuda/prefill_tiles.ts";
import type { DTypeName } from "../../src/dtype.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { TINY_CONFIGS, tempCache, writeTinyModel } from "../helpers/tiny_model.ts";
import { cpuLogits, greedy, greedyBatch, logProb, manyPrompts, STEPS } from "./cpu_reference.ts";
import {
  assertWithin,
  DTYPES,
  f32,
  i32,
  KernelHarness,
  NULL,
  noGpu,
  ptr,
  randn,
  roundTo,
} from "./kernels/harness.ts";
import { makePagedProblem } from "./paged_problem.ts";

interface Shape {
  name: string;
  H: number;
  Hkv: number;
  D: number;
  blockSize: number;
}

const SHAPES: Shape[] = [
  { name: "GQA 8/2, head 128, block 16", H: 8, Hkv: 2, D: 128, blockSize: 16 },
  { name: "MQA 4/1, head 64, block 32", H: 4, Hkv: 1, D: 64, blockSize: 32 },
  { name: "GQA 6/2, head 80, block 16", H: 6, Hkv: 2, D: 80, blockSize: 16 },
  { name: "MQA 12/1, head 8, block 7", H: 12, Hkv: 1, D: 8, blockSize: 7 },
];

const defines = (s: Shape) => ({
  NUM_HEADS: s.H,
  NUM_KV_HEADS: s.Hkv,
  HEAD_DIM: s.D,
  BLOCK_SIZE: s.blockSize,
});

/** Whether attention_prefill takes its tensor-core path (attention_prefill.cu). */
const tensorCores = (s: Shape, dtype: DTypeName) => dtype !== "fp32" && (s.D === 64 || s.D === 128);

/** FP8 pools of fp32 pools (the CPU's writeFp8Slot for every slot; NaN slots stay NaN). */
function quantize(values: Float32Array, s: Shape): Fp8KvPool {
  const slots = values.length / (s.Hkv * s.D);
  const pool = allocFp8KvPool(slots, s.Hkv, s.D);
  for (let slot = 0; slot < slots; slot++) writeFp8Slot(values, slot * s.Hkv * s.D, pool, slot, s.Hkv, s.D);
  return pool;
}

/** What the CPU reads from an FP8 pool, fp32(e4m3 · scale), as a plain pool. */
function dequantize(pool: Fp8KvPool, s: Shape): Float32Array {
  const out = new Float32Array(pool.data.length);
  for (let slot = 0; slot < pool.scale.length / s.Hkv; slot++)
    readFp8Slot(pool, slot, s.Hkv, s.D, out, slot * s.Hkv * s.D);
  return out;
}

/** Sequences with scattered blocks (seeded), K/V rounded to the dtype, unwritten slots NaN
 * (paged_problem.ts), the pools then quantized to FP8. */
function makeProblem(s: Shape, dtype: DTypeName, specs: { q: number; ctx: number }[], seed: number) {
  const shape = { numHeads: s.H, numKvHeads: s.Hkv, headDim: s.D, blockSize: s.blockSize };
  const seqSpecs = specs.map((x) => ({ queryLen: x.q, contextLen: x.ctx }));
  const p = makePagedProblem(shape, dtype, seqSpecs, seed, { spareBlocks: 2 });
  const k8 = quantize(p.kCache, s);
  const v8 = quantize(p.vCache, s);
  return { s, dtype, seqs: p.seqs, q: p.q, tables: p.tables, stride: p.stride, k8, v8 };
}
type Problem = ReturnType<typeof makeProblem>;

/** pagedAttention over FP8 pools (or plain ones holding the values a kernel reads). */
function cpuAttention(p: Problem, k: Float32Array | Fp8KvPool, v: Float32Array | Fp8KvPool, window: number) {
  const out = new Float32Array(p.q.length);
  pagedAttention({
    q: p.q,
    kCache: k,
    vCache: v,
    blockSize: p.s.blockSize,
    numHeads: p.s.H,
    numKvHeads: p.s.Hkv,
    headDim: p.s.D,
    seqs: p.seqs,
    scale: 1 / Math.sqrt(p.s.D),
    slidingWindow: window > 0 ? window : null,
    out,
  });
  return out;
}

/** Checks a kernel's output against the CPU over the FP8 pools (`rounded`: the values the kernel reads
 * rounded to the dtype: true for K and V (the tensor-core prefill), "v" for V alone
 * (attention_decode_mma_kv8)), with attention_cuda.test.ts's bound. */
function check(p: Problem, got: Float32Array, window: number, rounded: boolean | "v", what: string): void {
  const kd = dequantize(p.k8, p.s);
  const vd = dequantize(p.v8, p.s);
  // The CPU backend reads exactly these values: attention over the pools equals attention over them.
  assert.deepEqual(
    cpuAttention(p, kd, vd, window),
    cpuAttention(p, p.k8, p.v8, window),
    `${what}: CPU reads`,
  );
  const k = rounded === true ? roundTo(kd, p.dtype) : kd;
  const v = rounded ? roundTo(vd, p.dtype) : vd;
  const want = cpuAttention(p, k, v, window);
  const absOut = cpuAttention(p, k, v.map(Math.abs), window);
  const maxAbsOut = absOut.reduce((m, x) => Math.max(m, x), 0);
  let maxAbsV = 0;
  for (const x of v) if (Math.abs(x) > maxAbsV) maxAbsV = Math.abs(x);
  const rowLen = p.s.H * p.s.D;
  const keysOf = new Int32Array(p.q.length / rowLen);
  for (const s of p.seqs)
    for (let i = 0; i < s.queryLen; i++) {
      const pos = s.contextLen - s.queryLen + i;
      keysOf[s.queryStart + i] = window > 0 ? Math.min(window, pos + 1) : pos + 1;
    }
  const u = p.dtype === "fp16" ? 2 ** -11 : 2 ** -8;
  assertWithin(
    got,
    want,
    (i) => {
      const fp32Part = 1e-5 * maxAbsOut + 1e-30;
      if (p.dtype === "fp32") return fp32Part;
      const subnormal = p.dtype === "fp16" ? keysOf[Math.floor(i / rowLen)] * 2 ** -25 * maxAbsV : 0;
      return fp32Part + u * (absOut[i] + Math.abs(want[i])) + subnormal;
    },
    what,
  );
}

describe("FP8 KV kernels (_kv8) against the CPU's FP8 cache", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  const POSITIONS = Int32Array.from([0, 1, 17, 769, 5125]);
  const SLOTS = Int32Array.from([5, -1, 23, 0, 11]);
  const NUM_SLOTS = 24;
  for (const [H, Hkv, D, RD] of [
    [8, 2, 128, 128],
    [7, 1, 80, 34],
  ]) {
    for (const dtype of DTYPES) {
      for (const fused of [true, false]) {
        it(`write: ${fused ? "rope_qkv_fused_kv8" : "rope_qkv_kv8"} H ${H}/${Hkv} D ${D} ${dtype}: the CPU's bytes and scales`, () => {
          const T = POSITIONS.length;
          const W = (H + 2 * Hkv) * D;
          const mod = h.module(
            "rope_kv.cu",
            { NUM_HEADS: H, NUM_KV_HEADS: Hkv, HEAD_DIM: D, ROTARY_DIM: RD },
            dtype,
          );
          const qkv = roundTo(randn(T * W, 11 + D), dtype);
          const rope = ropeInvFreq({ theta: 10000, rotaryDim: RD, scaling: { type: "default" } }, 1);
          const poolLen = NUM_SLOTS * Hkv * D;
          const common = [
            ptr(h.raw(POSITIONS)),
            ptr(h.raw(SLOTS)),
            ptr(h.raw(rope.invFreq)),
            NULL,
            f32(rope.attentionScaling),
            NULL,
            NULL,
            f32(1e-6),
          ];
          const grid: [number, number] = [T, Math.ceil((H + 2 * Hkv) / 4)];
          // The plain kernel's cache: the values the CPU quantizes.
          const kPlain = h.filled(poolLen, dtype, 0);
          const vPlain = h.filled(poolLen, dtype, 0);
          const tail = (k: DevicePtr, v: DevicePtr) => [ptr(k), ptr(v), i32(T), i32(NUM_SLOTS), i32(0)];
          h.run(
            mod,
            "rope_qkv_fused",
            grid,
            [128],
            [
              ptr(h.upload(qkv, dtype)),
              ...common,
              ptr(h.filled(T * H * D, dtype, 0xff)),
              ...tail(kPlain, vPlain),
            ],
          );
          // The fp8 pools start as 0xff bytes and NaN scales: what is not written must stay so.
          const k8 = h.filled(poolLen, "fp32", 0xff); // poolLen bytes suffice; fp32 leaves room
          const v8 = h.filled(poolLen, "fp32", 0xff);
          const ks = h.filled(NUM_SLOTS * Hkv, "fp32", 0xff);
          const vs = h.filled(NUM_SLOTS * Hkv, "fp32", 0xff);
          const q8 = h.filled(T * H * D, dtype, 0xff);
          if (fused) {
            h.run(
              mod,
              "rope_qkv_fused_kv8",
              grid,
              [128],
              [ptr(h.upload(qkv, dtype)), ...common, ptr(q8), ...tail(k8, v8), ptr(ks), ptr(vs)],
            );
          } else {
            const rows = (from: number, width: number) => {
              const out = new Float32Array(T * width);
              for (let t = 0; t < T; t++)
                out.set(qkv.subarray(t * W + from, t * W + from + width), t * width);
              return h.upload(out, dtype);
            };
            h.run(
              mod,
              "rope_qkv_kv8",
              grid,
              [128],
              [
                ptr(rows(0, H * D)),
                ptr(rows(H * D, Hkv * D)),
                ptr(rows((H + Hkv) * D, Hkv * D)),
                ...common,
                ptr(q8),
                ...tail(k8, v8),
                ptr(ks),
                ptr(vs),
              ],
            );
          }
          for (const [plain, data, scale, what] of [
            [kPlain, k8, ks, "k"],
            [vPlain, v8, vs, "v"],
          ] as const) {
            const values = h.download(plain, poolLen, dtype);
            const want = allocFp8KvPool(NUM_SLOTS, Hkv, D);
            want.data.fill(0xff);
            new Uint32Array(want.scale.buffer).fill(0xffffffff);
            for (const slot of SLOTS) if (slot >= 0) writeFp8Slot(values, slot * Hkv * D, want, slot, Hkv, D);
            assert.deepEqual(h.downloadBytes(data, poolLen), want.data, `${what} bytes`);
            const gotScale = new Uint32Array(h.download(scale, NUM_SLOTS * Hkv, "fp32").buffer);
            assert.deepEqual(gotScale, new Uint32Array(want.scale.buffer), `${what} scales`);
          }
        });
      }
    }
  }

  /** p's FP8 pools and metadata on the device. */
  function upload(p: Problem) {
    return {
      q: h.upload(p.q, p.dtype),
      k: h.raw(p.k8.data),
      v: h.raw(p.v8.data),
      ks: h.raw(p.k8.scale),
      vs: h.raw(p.v8.scale),
      tables: h.raw(p.tables),
      contextLen: h.raw(Int32Array.from(p.seqs, (s) => s.contextLen)),
    };
  }

  /** The decode kernels' arguments over p's FP8 pools (d: upload(p)), the scales last; `counters` (the
   * [S, CTAs a sequence] arrival counters, zero) for a launch whose splits merge through global partials,
   * which then start as NaN. */
  function decodeArgs(
    p: Problem,
    d: ReturnType<typeof upload>,
    out: DevicePtr,
    splits: number,
    window: number,
    counters: DevicePtr | null,
  ) {
    const rows = p.seqs.length * p.s.H * splits;
    const poisoned = (n: number) => (counters ? ptr(h.filled(n, "fp32", 0xff)) : NULL);
    return [
      ptr(out),
      poisoned(rows * p.s.D),
      poisoned(rows),
      poisoned(rows),
      counters ? ptr(counters) : NULL,
      ptr(d.q),
      ptr(d.k),
      ptr(d.v),
      ptr(d.contextLen),
      ptr(d.tables),
      i32(p.stride),
      i32(1),
      i32(splits),
      f32(1 / Math.sqrt(p.s.D)),
      i32(window),
      i32(1),
      i32(0),
      ptr(d.ks),
      ptr(d.vs),
    ];
  }

  for (const shape of SHAPES) {
    for (const dtype of DTYPES) {
      it(`attention_prefill_kv8 ${shape.name} ${dtype}`, () => {
        const p = makeProblem(
          shape,
          dtype,
          [
            { q: 37, ctx: 37 },
            { q: 0, ctx: 5 },
            { q: 150, ctx: 195 },
            { q: 1, ctx: 70 },
          ],
          101,
        );
        const mod = h.module("attention_prefill.cu", defines(shape), dtype);
        const d = upload(p);
        const queryStart = new Int32Array(p.seqs.length + 1);
        p.seqs.forEach((s, i) => {
          queryStart[i + 1] = s.queryStart + s.queryLen;
        });
        for (const window of [0, 40]) {
          const tiles = prefillTiles(dtype, shape.D);
          const out = h.filled(p.q.length, dtype, 0xff);
          h.run(
            mod,
            `${tiles.kernel}_kv8`,
            [Math.ceil(150 / tiles.blockM), shape.H, p.seqs.length],
            [tiles.threads],
            [
              ptr(out),
              ptr(d.q),
              ptr(d.k),
              ptr(d.v),
              ptr(h.raw(queryStart)),
              ptr(d.contextLen),
              ptr(d.tables),
              i32(p.stride),
              f32(1 / Math.sqrt(shape.D)),
              i32(window),
              ptr(d.ks),
              ptr(d.vs),
            ],
            tiles.sharedBytes,
          );
          check(
            p,
            h.download(out, p.q.length, dtype),
            window,
            tensorCores(shape, dtype),
            `${tiles.kernel}_kv8 w=${window}`,
          );
        }
      });

      it(`attention_decode*_kv8 ${shape.name} ${dtype}: splits 1 and 4, a cluster of 2, the batch kernel`, () => {
        const specs = [1, 17, 300, 130, 64, 65].map((ctx) => ({ q: 1, ctx }));
        const p = makeProblem(shape, dtype, specs, 202);
        const mod = h.module("attention_decode.cu", defines(shape), dtype);
        const d = upload(p);
        const S = p.seqs.length;
        const group = shape.H / shape.Hkv;
        const ctas = shape.Hkv * Math.ceil(group / Math.min(group, 8));
        const clusters = h.device.properties.computeCapability[0] >= 9;
        const runs: { name: string; splits: number; batch?: boolean }[] = [
          { name: "attention_decode_kv8", splits: 1 },
          { name: "attention_decode_kv8", splits: 4 },
          ...(clusters ? [{ name: "attention_decode_c2_kv8", splits: 2 }] : []),
          { name: "attention_decode_batch_kv8", splits: 1, batch: true },
        ];
        for (const window of [0, 40]) {
          for (const run of runs) {
            const global = run.splits > 1 && !run.name.includes("_c");
            const out = h.filled(p.q.length, dtype, 0xff);
            const counters = global ? h.filled(S * ctas, "fp32", 0) : null;
            h.run(
              mod,
              run.name,
              [ctas, S, run.splits],
              [run.batch ? 128 : DECODE_SPLIT_THREADS],
              decodeArgs(p, d, out, run.splits, window, counters),
              run.batch ? decodeBatchSharedBytes(group, shape.D) : decodeSharedBytes(group, shape.D),
            );
            check(
              p,
              h.download(out, p.q.length, dtype),
              window,
              false,
              `${run.name} splits ${run.splits} w=${window}`,
            );
          }
        }
      });

      if (dtype !== "fp32" && mmaDecodeBuilt(dtype, shape.H / shape.Hkv, shape.D))
        it(`attention_decode_mma_kv8 ${shape.name} ${dtype}: splits 1 and 4`, () => {
          // Contexts over 1 … 5 tiles of 64 keys, the new key in the first tile or a later one.
          const specs = [1, 17, 300, 130, 64, 65, 129, 2].map((ctx) => ({ q: 1, ctx }));
          const p = makeProblem(shape, dtype, specs, 303);
          const smem = decodeMmaKv8SharedBytes(shape.D);
          const mod = h.module(
            "attention_decode_mma.cu",
            { ...defines(shape), DECODE_MMA_KV8_SMEM_BYTES: smem },
            dtype,
          );
          const d = upload(p);
          const S = p.seqs.length;
          for (const window of [0, 40]) {
            for (const splits of [1, 4]) {
              const counters = h.raw(new Int32Array(S * shape.Hkv));
              const out = h.filled(p.q.length, dtype, 0xff);
              h.run(
                mod,
                "attention_decode_mma_kv8",
                [shape.Hkv, S, splits],
                [128],
                decodeArgs(p, d, out, splits, window, splits > 1 ? counters : null),
                smem,
              );
              const what = `attention_decode_mma_kv8 splits ${splits} w=${window}`;
              // bf16 puts V's scale on P (V exact); fp16 widens V as kiln_t(e4m3 · s)
              check(p, h.download(out, p.q.length, dtype), window, dtype === "fp16" ? "v" : false, what);
              const left = new Int32Array(h.download(counters, S * shape.Hkv, "fp32").buffer);
              assert.deepEqual([...left], new Array(S * shape.Hkv).fill(0), `${what}: counters back to zero`);
            }
          }
        });
    }
  }
});

const skipEngine = noCudaDevice();
const FIXTURES = fileURLToPath(new URL("../fixtures/models", import.meta.url));
const names = readdirSync(FIXTURES).sort();

/** The fixture's prompts (expected.json's cases). */
const promptsOf = (name: string): number[][] =>
  JSON.parse(readFileSync(join(FIXTURES, name, "expected.json"), "utf8")).cases.map(
    (c: { promptIds: number[] }) => c.promptIds,
  );

describe("CUDA with an fp8 KV cache against the CPU with one", { skip: skipEngine }, () => {
  const cache = tempCache();
  after(cache.cleanup);
  const open = (name: string, backend: "cpu" | "cuda", dtype: DTypeName) =>
    ModelRunner.fromDir(join(FIXTURES, name), {
      backend,
      dtype,
      cacheDir: cache.dir,
      kvCache: { dtype: "fp8" },
    });

  for (const name of names) {
    test(`${name}, fp32 engine: the CPU's greedy tokens, logits within 1e-2`, async () => {
      const cpu = open(name, "cpu", "fp32");
      const gpu = open(name, "cuda", "fp32");
      try {
        assert.equal(gpu.session.backend.kvCacheDtype, "fp8");
        const V = gpu.session.config.model.vocabSize;
        for (const ids of promptsOf(name)) {
          const g = await greedy(gpu, ids);
          const c = await greedy(cpu, ids);
          assert.deepEqual(g.tokens, c.tokens, `${name}: tokens`);
          let worst = 0;
          for (let i = 0; i < STEPS * V; i++) worst = Math.max(worst, Math.abs(g.logits[i] - c.logits[i]));
          assert.ok(worst <= 1e-2, `${name}: max |Δlogit| ${worst}`);
        }
      } finally {
        gpu.dispose();
        cpu.dispose();
      }
    });

    test(`${name}, bf16 engine: within bf16 tolerance of the CPU's fp8 cache`, async () => {
      const cpu = open(name, "cpu", "fp32");
      const gpu = open(name, "cuda", "bf16");
      try {
        const V = gpu.session.config.model.vocabSize;
        for (const ids of promptsOf(name)) {
          const c = await greedy(cpu, ids);
          const first = c.logits.subarray(0, V);
          const sorted = [...first].sort((a, b) => b - a);
          const [g] = await gpu.generate({ ids }, { greedy: true, maxNewTokens: 1, ignoreEos: true });
          if (sorted[0] - sorted[1] >= 0.5) assert.equal(g.outputIds[0], c.tokens[0], `${name}: first token`);
          // The CPU's tokens under teacher forcing on the GPU.
          const forced = await cpuLogits(gpu, ids, c.tokens);
          for (let i = 0; i < STEPS; i++) {
            const want = logProb(c.logits.subarray(i * V, (i + 1) * V), c.tokens[i]);
            const got = logProb(forced.subarray(i * V, (i + 1) * V), c.tokens[i]);
            assert.ok(Math.abs(got - want) <= 0.15, `${name} step ${i}: log-prob ${got} vs ${want}`);
          }
        }
      } finally {
        gpu.dispose();
        cpu.dispose();
      }
    });
  }

  test("a bf16 head-128 engine's 160 sequences at once (attention_decode_mma_kv8): within 0.15 nats of the CPU", async () => {
    // Llama with 8 query heads of 128 over 2 kv heads: 2 CTAs a sequence, so 160 sequences (graph bucket
    // 256) fill any GPU of up to 160 SMs twice over and take the batch route, attention_decode_mma_kv8.
    const config = {
      ...TINY_CONFIGS.llama,
      vocab_size: 97,
      hidden_size: 256,
      intermediate_size: 256,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      head_dim: 128,
      max_position_embeddings: 256,
      attention_bias: false,
      mlp_bias: false,
    };
    const model = writeTinyModel(config, 7, { std: 0.03 });
    const opts = { cacheDir: cache.dir, kvCache: { dtype: "fp8" as const }, maxBatchSize: 256 };
    const gpu = ModelRunner.fromDir(model.dir, { ...opts, backend: "cuda", dtype: "bf16" });
    const cpu = ModelRunner.fromDir(model.dir, { ...opts, backend: "cpu", dtype: "fp32" });
    try {
      const N = 160;
      const device = CudaDevice.open();
      const smCount = device.smCount;
      device.dispose();
      assert.ok(useBatchKernel({ smCount, ctasPerSeq: 2 }, N), `${N} sequences take the batch route`);
      assert.ok(mmaDecodeApplies("bf16", "fp8", 4, 128, true), "the tensor-core kernel applies");
      const V = config.vocab_size;
      // Prompts of 1 … 90 tokens: contexts over one and two tiles of 64 keys.
      const prompts = manyPrompts(N, 90, V);
      const outs = await greedyBatch(gpu, prompts);
      let worst = 0;
      for (const [i, ids] of prompts.entries()) {
        const { tokens, logits } = outs[i];
        const want = await cpuLogits(cpu, ids, tokens);
        for (let t = 0; t < STEPS; t++) {
          const got = logProb(logits.subarray(t * V, (t + 1) * V), tokens[t]);
          const ref = logProb(want.subarray(t * V, (t + 1) * V), tokens[t]);
          worst = Math.max(worst, Math.abs(got - ref));
        }
      }
      assert.ok(worst <= 0.15, `largest log-prob difference ${worst} nats`);
    } finally {
      gpu.dispose();
      cpu.dispose();
      model.cleanup();
    }
  });

  test("prefix reuse and copy on write (n > 1) give a cold run's tokens", async () => {
    const name = names[0];
    const ids = promptsOf(name)[0];
    // Ends inside a block (16 or 32 tokens), which the forks share until their first token: copy on write.
    let prompt = [...ids, ...ids, 5, 7, 11].slice(0, 45);
    if (prompt.length % 16 === 0) prompt = prompt.slice(0, -1);
    const greedy12 = { greedy: true, maxNewTokens: 12, ignoreEos: true };
    // Three seeded samples of one prompt: each fork's tokens depend on its seed alone, not on the cache.
    const forks3 = {
      temperature: 0.9,
      topK: 40,
      seed: 17,
      numReturnSequences: 3,
      maxNewTokens: 12,
      ignoreEos: true,
    };
    const coldRun = async (options: typeof greedy12 | typeof forks3) => {
      const cold = open(name, "cuda", "fp32");
      try {
        const [result] = await cold.generate({ ids: prompt }, options);
        return result.sequences.map((s) => s.outputIds);
      } finally {
        cold.dispose();
      }
    };
    const [want] = await coldRun(greedy12);
    const wantForks = await coldRun(forks3);
    assert.equal(wantForks.length, 3);
    assert.ok(new Set(wantForks.map((f) => f.join())).size > 1, "the cold forks sampled different tokens");
    const gpu = open(name, "cuda", "fp32");
    try {
      const [first] = await gpu.generate({ ids: prompt }, greedy12);
      assert.deepEqual(first.outputIds, want, "first run");
      const [again] = await gpu.generate({ ids: prompt }, greedy12); // the prompt's blocks are cached
      assert.deepEqual(again.outputIds, want, "prefix reuse");
      const [forks] = await gpu.generate({ ids: prompt }, forks3); // cached prefix, one shared tail block
      assert.deepEqual(
        forks.sequences.map((s) => s.outputIds),
        wantForks,
        "the forks (copy on write) against a cold run",
      );
    } finally {
      gpu.dispose();
    }
  });
});
