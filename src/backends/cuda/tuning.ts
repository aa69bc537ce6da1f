// Every KILN_* switch that src/ reads (docs/TUNING.md lists them), read here once, validated
// (InvalidEnvironmentError names the switch and its accepted values) and frozen. The CUDA backend
// receives a CudaTuning at construction and keeps it for its lifetime, so every CUDA graph it captures
// was recorded under the same settings as its eager steps: a graph cannot keep a setting that has since
// changed. Tests pass a tuning object (cudaTuning({ ... })) instead of setting the environment.
import { InvalidEnvironmentError } from "../../errors.ts";
import {
  type AttentionStop,
  type AttentionTrigger,
  parseAttentionStop,
  parseAttentionTrigger,
  parseRopeTrigger,
} from "./attention_splits.ts";
import { type Fp8GemvKind, parseFp8Gemv } from "./fp8_variants.ts";
import { parseWoGemmMaxM } from "./gemm_wo_variants.ts";
import {
  type GemvPolicy,
  type GemvShapes,
  parseGemvMaxRows,
  parseGemvPolicy,
  parseGemvShapes,
} from "./gemv_variants.ts";

type Env = Readonly<Record<string, string | undefined>>;

const SLOWER = "its modes measured slower";

/** Switches of experiments measured slower (or no faster) and removed, each with why (their figures are
 * in docs/PERFORMANCE.md): set, they are refused rather than silently ignored, so a script that relied on
 * one finds out. */
const REMOVED_SWITCHES: Readonly<Record<string, string>> = {
  KILN_FUSE_NORM: SLOWER,
  KILN_SAMPLER_SLICES: SLOWER,
  KILN_SAMPLER_SCALAR: SLOWER,
  KILN_SAMPLER_LEADER_AGG: SLOWER,
  KILN_ROW_BUCKETS: SLOWER,
  KILN_ATTN_BATCH: SLOWER,
  KILN_ATTN_MMA: SLOWER,
  KILN_MIXED_DECODE: SLOWER,
  KILN_DECODE_MMA: SLOWER,
  KILN_DECODE_PERSIST: "attention_decode_mma_persistent measured no faster than attention_decode_mma",
  KILN_WO4_GEMV:
    "gemv_wo4_mma / gemv_zp_mma (tensor cores) measured faster than the CUDA-core int4 GEMVs and are the ones that run",
  KILN_FP8_NORM_QUANT:
    "the norms feeding fp8 linears quantize for them wherever the engine has the kernels (measured faster, the same bits)",
  KILN_DECODE_MMA_ROPE:
    "attention_decode_mma_rope now runs where it measured faster (split steps over long contexts) and nowhere else",
  KILN_PREFILL_WARPS:
    "the 8-warp attention_prefill_w8 measured slower than the 4-warp attention_prefill, the one that runs",
  KILN_ATTN_WARPS:
    "the split decode kernels (attention_decode*) run 8 warps a CTA, measured faster than 4; there is no other",
  KILN_WO4_PIPELINE:
    "gemv_wo4_mma_p (two load rounds in flight) measured faster than gemv_wo4_mma on rows of several rounds and is the one they run on",
  KILN_PREFILL_KERNEL:
    "attention_prefill_wgmma (sm_90a, warp-specialized as FlashAttention-3) measured slower than attention_prefill (mma4), the one that runs",
};

export interface CudaTuning {
  /** KILN_CUDA_GRAPHS=0: decode steps launch their kernels one by one instead of replaying a graph. */
  readonly graphs: boolean;
  /** KILN_PDL=0: no programmatic dependent launch of kiln kernels (kernels/pdl.cuh). */
  readonly pdl: boolean;
  /** KILN_GEMV=0: cuBLASLt for decode GEMMs instead of kiln's GEMV. */
  readonly gemv: boolean;
  /** KILN_GEMV_MAX_ROWS (0–8): most rows of a decode GEMM on kiln's GEMV; cuBLASLt beyond. */
  readonly gemvMaxRows: number;
  /** KILN_GEMV_VARIANT: how the GEMV variant is chosen (gemv_variants.ts chooseGemv). */
  readonly gemvPolicy: GemvPolicy;
  /** KILN_GEMV_SHAPES: per-weight-shape variants ahead of the policy. */
  readonly gemvShapes: GemvShapes;
  /** KILN_WO_GEMM_MAX_M (0–4096, default 256): most rows of a linear over a weight-only quantized weight
   * on gemm_wo.cu (past the GEMV's 8); 0 or larger steps dequantize the weight for cuBLASLt. */
  readonly woGemmMaxM: number;
  /** KILN_FP8_GEMV=auto|bits|fma|mma (default auto: mma in 16-bit engines, bits in fp32 ones): the decode
   * GEMV of fp8 weights, tensor-core (gemv_fp8_mma), CUDA-core without conversion instructions for plain
   * linears (gemv_fp8_bits: fma's bits), or CUDA-core with them (gemv_fp8_r2uUw4); fp8_variants.ts. */
  readonly fp8Gemv: Fp8GemvKind;
  /** KILN_FUSE_GATED_ACT=0: the gated activation runs as its own kernel, not inside the GEMV (or gemm_wo). */
  readonly fuseGatedAct: boolean;
  /** KILN_ATTN_TRIGGER: when decode attention lets the next kernel launch. */
  readonly attnTrigger: AttentionTrigger;
  /** KILN_ATTN_CLUSTER=0: decode attention merges its splits through global memory, not a cluster. */
  readonly attnCluster: boolean;
  /** KILN_PREFILL_SPLIT=0: prefill attention never splits its keys over CTAs (prefill_splits.ts; the A/B
   * of the `_split` kernels and attention_prefill_merge against the unsplit launch). */
  readonly prefillSplit: boolean;
  /** KILN_ROPE_TRIGGER=early: RoPE lets the decode attention launch before its own PDL wait. */
  readonly ropeEarly: boolean;
  /** KILN_ROPE_FUSE=0: decode steps run RoPE + the KV write apart from the decode attention. */
  readonly ropeFuse: boolean;
  /** KILN_ATTN_STOP (profiling only; wrong outputs): where decode attention stops. */
  readonly attnStop: AttentionStop;
  /** KILN_SKIP_KERNELS (profiling only; wrong outputs): kernels left out of every step. */
  readonly skipKernels: ReadonlySet<string>;
}

/** The defaults: what kiln is tested with and what measured fastest. */
export const DEFAULT_CUDA_TUNING: CudaTuning = cudaTuningFromEnv({});

/** The CUDA tuning the environment asks for; throws InvalidEnvironmentError on a malformed switch. */
export function cudaTuningFromEnv(env: Env = process.env): CudaTuning {
  const removed = Object.keys(REMOVED_SWITCHES).find((name) => env[name] !== undefined);
  if (removed)
    throw new InvalidEnvironmentError(
      `${removed}=${env[removed]}: this switch was removed (${REMOVED_SWITCHES[removed]}; docs/PERFORMANCE.md has the figures); unset it`,
    );
  return Object.freeze({
    graphs: env.KILN_CUDA_GRAPHS !== "0",
    pdl: env.KILN_PDL !== "0",
    gemv: env.KILN_GEMV !== "0",
    gemvMaxRows: parseGemvMaxRows(env.KILN_GEMV_MAX_ROWS),
    gemvPolicy: parseGemvPolicy(env.KILN_GEMV_VARIANT),
    gemvShapes: parseGemvShapes(env.KILN_GEMV_SHAPES),
    woGemmMaxM: parseWoGemmMaxM(env.KILN_WO_GEMM_MAX_M),
    fp8Gemv: parseFp8Gemv(env.KILN_FP8_GEMV),
    fuseGatedAct: env.KILN_FUSE_GATED_ACT !== "0",
    attnTrigger: parseAttentionTrigger(env.KILN_ATTN_TRIGGER),
    attnCluster: onUnless0(env, "KILN_ATTN_CLUSTER"),
    prefillSplit: onUnless0(env, "KILN_PREFILL_SPLIT"),
    ropeEarly: parseRopeTrigger(env.KILN_ROPE_TRIGGER),
    ropeFuse: onUnless0(env, "KILN_ROPE_FUSE"),
    attnStop: parseAttentionStop(env.KILN_ATTN_STOP),
    skipKernels: new Set((env.KILN_SKIP_KERNELS ?? "").split(",").filter((k) => k !== "")),
  });
}

/** An A/B switch that is on unless "0": unset, "" or "1" is on; anything else is refused by name. */
function onUnless0(env: Env, name: string): boolean {
  const v = env[name];
  if (v === undefined || v === "" || v === "1") return true;
  if (v === "0") return false;
  throw new InvalidEnvironmentError(`${name} must be 0 or 1; got ${v}`);
}

/** Warnings for the profiling-only switches set in `t` (their outputs are wrong), one line each. */
export function profilingWarnings(t: CudaTuning): string[] {
  return [
    ...(t.skipKernels.size > 0
      ? [
          `KILN_SKIP_KERNELS leaves out ${[...t.skipKernels].join(", ")} (profiling only: the outputs are wrong)`,
        ]
      : []),
    ...(t.attnStop !== ""
      ? [`KILN_ATTN_STOP=${t.attnStop} stops decode attention early (profiling only: the outputs are wrong)`]
      : []),
  ];
}

/** The defaults with some settings changed (tests and measurements), frozen. */
export function cudaTuning(overrides: Partial<CudaTuning> = {}): CudaTuning {
  return Object.freeze({ ...DEFAULT_CUDA_TUNING, ...overrides });
}

/** KILN_BUILD_THREADS, unparsed (builder/targets/build_threads.ts validates it). */
export function buildThreadsFromEnv(env: Env = process.env): string | undefined {
  return env.KILN_BUILD_THREADS;
}
