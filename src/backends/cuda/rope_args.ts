// The kernel arguments of a lowered rope step (lowering.ts RopeStep): rope_kv.cu's, and the prologue of
// attention_decode_rope* (the RoPE fused into decode attention), in the kernels' order.
import type { ActivationArena } from "./activations.ts";
import { type DevicePtr, type KernelArg, offsetPtr } from "./device/index.ts";
import type { RopeStep } from "./lowering.ts";
import type { PackedStep } from "./step_metadata.ts";
import type { StepUploads } from "./step_uploads.ts";
import type { DeviceWeights } from "./weights.ts";

/** What the arguments point into: the step's metadata and inv_freq, the q/k norm weights, the arena
 * (bytes per element `elem`) and the KV cache's slot count. */
export interface RopeSources {
  uploads: StepUploads;
  weights: DeviceWeights;
  arena: ActivationArena;
  elem: number;
  slots: number;
}

/** The rope step's arguments from positions to norm_eps (rope_kv.cu's order, attention_decode_rope*'s
 * too): positions, slots, inv_freq, inv_freq_index (dynamic NTK only), attention_scaling, the q/k norm
 * weights (or null) and their eps. */
export function ropeArgs(src: RopeSources, step: RopeStep, packed: PackedStep): KernelArg[] {
  const meta = (at: number): KernelArg => src.uploads.metaArg(at);
  const dynamic = step.op.rope.scaling.type === "dynamic";
  return [
    meta(packed.at.positions),
    meta(packed.at.slots),
    { ptr: src.uploads.invFreqPtr },
    dynamic ? meta(packed.at.invFreqIndex) : { ptr: 0n as DevicePtr },
    { f32: 1 },
    { ptr: step.qNorm ? src.weights.ptr(step.qNorm) : (0n as DevicePtr) },
    { ptr: step.kNorm ? src.weights.ptr(step.kNorm) : (0n as DevicePtr) },
    { f32: step.normEps },
  ];
}

/** attention_decode_rope*'s prologue arguments (after the attention's own): the unrotated k and v rows
 * and the row strides of q and k/v, then the rope step's (ropeArgs) and the cache's slot count. */
export function decodeRopeArgs(src: RopeSources, step: RopeStep, packed: PackedStep): KernelArg[] {
  const op = step.op;
  const H = op.numHeads * op.headDim;
  const Hkv = op.numKvHeads * op.headDim;
  const qkv = step.qkv === null ? null : src.arena.ptr(step.qkv);
  return [
    { ptr: qkv ? offsetPtr(qkv, H * src.elem) : src.arena.ptr(step.k) },
    { ptr: qkv ? offsetPtr(qkv, (H + Hkv) * src.elem) : src.arena.ptr(step.v) },
    { i32: qkv ? H + 2 * Hkv : H },
    { i32: qkv ? H + 2 * Hkv : Hkv },
    ...ropeArgs(src, step, packed),
    { i32: src.slots },
  ];
}
