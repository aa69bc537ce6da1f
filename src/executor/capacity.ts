// The capacity policies (TensorRT-LLM's names): does a request fit, and whom to preempt when not.
//
//   guaranteedNoEvict   admit r only if  need(r) ≤ available − Σ future(running)
//                       need(r)   = fresh blocks for prompt + maxNewTokens beyond its prefix hit, plus
//                                   the hit blocks no one holds (they stop being evictable), plus
//                                   (width − 1) × the blocks each further sequence may own
//                       future(q) = most(q) − the distinct blocks q's sequences hold now
//                       most(q)   = E + (width − 1)(E − F), E = blocks of prompt + maxNewTokens,
//                                   F = the prompt's full blocks, which every sequence shares
//                       so every running request always gets its next block: never a preemption.
//   maxUtilization      admit while blocks for the first chunk are free now; when a running request
//                       cannot get a block, preempt the lowest-priority, most recently admitted one.
import type { KvCacheManager, PrefixHit } from "./kv_cache_manager.ts";
import type { Request } from "./request.ts";

export type CapacityPolicy = "guaranteedNoEvict" | "maxUtilization";

/** most(r): the blocks r's sequences may hold together (shared prompt blocks once). */
export function mostBlocks(kv: KvCacheManager, r: Request): number {
  const each = kv.blocksFor(r.maxTotalTokens);
  return each + (r.width - 1) * (each - Math.floor(r.promptLength / kv.tokensPerBlock));
}

/** The distinct blocks r's sequences hold now. */
export function heldBlocks(kv: KvCacheManager, r: Request): number {
  if (r.seqs.length === 1) return kv.has(r.seqs[0].kvId) ? kv.blockTable(r.seqs[0].kvId).length : 0;
  const held = new Set<number>();
  for (const s of r.seqs) if (kv.has(s.kvId)) for (const b of kv.blockTable(s.kvId)) held.add(b);
  return held.size;
}

/** Σ future(q) over the running requests. */
export function reservedFutureBlocks(kv: KvCacheManager, running: readonly Request[]): number {
  let n = 0;
  for (const r of running) n += mostBlocks(kv, r) - heldBlocks(kv, r);
  return n;
}

/** Whether admitting `r` with `hit` keeps every reservation (guaranteedNoEvict). */
export function fitsReservation(kv: KvCacheManager, r: Request, hit: PrefixHit, reserved: number): boolean {
  const forks = mostBlocks(kv, r) - kv.blocksFor(r.maxTotalTokens);
  return kv.blocksToAdmit(hit, r.maxTotalTokens) + forks <= kv.pool.numAvailable - reserved;
}

/** The running request to preempt (maxUtilization): lowest priority, then most recently admitted. */
export function preemptionVictim(running: readonly Request[]): Request {
  let v = running[0];
  for (const r of running) {
    if (r.priority < v.priority || (r.priority === v.priority && r.admittedOrder > v.admittedOrder)) v = r;
  }
  return v;
}
