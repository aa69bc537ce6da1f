// The capacity policies (TensorRT-LLM's names): does a request fit, and whom to preempt when not.
//
//   guaranteedNoEvict   admit r only if  need(r) ≤ available − Σ future(running)
//                       need(r)   = fresh blocks for prompt + maxNewTokens beyond its prefix hit, plus
//                                   the hit blocks no one holds (they stop being evictable)
//                       future(q) = blocks q may still allocate to reach prompt + maxNewTokens
//                       so every running request always gets its next block: never a preemption.
//   maxUtilization      admit while blocks for the first chunk are free now; when a running request
//                       cannot get a block, preempt the lowest-priority, most recently admitted one.
import type { KvCacheManager, PrefixHit } from "./kv_cache_manager.ts";
import type { Request } from "./request.ts";

export type CapacityPolicy = "guaranteedNoEvict" | "maxUtilization";

/** Σ future(q) over the running requests. */
export function reservedFutureBlocks(kv: KvCacheManager, running: readonly Request[]): number {
  let n = 0;
  for (const r of running) n += kv.blocksFor(r.maxTotalTokens) - kv.blockTable(r.id).length;
  return n;
}

/** Whether admitting `r` with `hit` keeps every reservation (guaranteedNoEvict). */
export function fitsReservation(kv: KvCacheManager, r: Request, hit: PrefixHit, reserved: number): boolean {
  return kv.blocksToAdmit(hit, r.maxTotalTokens) <= kv.pool.numAvailable - reserved;
}

/** The running request to preempt (maxUtilization): lowest priority, then most recently admitted. */
export function preemptionVictim(running: readonly Request[]): Request {
  let v = running[0];
  for (const r of running) {
    if (r.priority < v.priority || (r.priority === v.priority && r.admittedOrder > v.admittedOrder)) v = r;
  }
  return v;
}
