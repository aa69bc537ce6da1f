// Where AWQ's two searches compute their losses, the error energies of error_energy.ts: on the CPU here
// (the reference), or on the GPU (builder/targets/cuda_awq.ts over kernels/awq_search.cu), which returns
// the same doubles: it quantizes with the same roundings and sums in the same order. The searches'
// loops, their choices and the folding stay in TypeScript either way. A group's samples are given once
// (a session per group) and held until the session is disposed.
import { clipErrors } from "./clip_search.ts";
import { scaledQuantLoss } from "./scale_search.ts";

export interface EnergyDevice {
  /** The scale search of one group: its sampled weights w [rows, cols] and samples x [n, cols]. */
  scaleSession(w: Float32Array, rows: number, cols: number, x: Float32Array, n: number): ScaleLosses;
  /** The clip search of one group: the samples x [n, cols] its linears read (x / s once scaled). */
  clipSession(x: Float32Array, n: number, cols: number): ClipErrors;
  dispose(): void;
}

export interface ScaleLosses {
  /** scaledQuantLoss(w, rows, cols, s, x, n) for each candidate s [cols], in order. */
  losses(candidates: readonly Float32Array[]): number[];
  dispose(): void;
}

export interface ClipErrors {
  /** For each shrink: err[r·groups + g] = groupErrors of d = Q(clip(w, ±orgMax[r, g]·shrink)) − w,
   * w [rows, cols] (the session's cols), orgMax [rows, groups] = max |w| per row and group of 128. */
  errors(w: Float32Array, rows: number, orgMax: Float32Array, shrinks: readonly number[]): Float64Array[];
  dispose(): void;
}

/** The CPU reference: what the searches computed before there was a GPU path, unchanged. */
export const CPU_ENERGIES: EnergyDevice = {
  scaleSession: (w, rows, cols, x, n) => ({
    losses: (candidates) => candidates.map((s) => scaledQuantLoss(w, rows, cols, s, x, n)),
    dispose: () => {},
  }),
  clipSession: (x, n, cols) => ({
    errors: (w, rows, orgMax, shrinks) => clipErrors(w, rows, cols, orgMax, shrinks, x, n),
    dispose: () => {},
  }),
  dispose: () => {},
};
