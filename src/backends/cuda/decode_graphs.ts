// CUDA graphs of decode steps: one per batch bucket (the batch padded by gemm_algorithms.ts rowBucket),
// attention split count (≤ MAX_SPLITS) and sampler slot (none, 0 or 1: a graph that also samples writes
// one slot). Captured after one eager run of the same launches (which creates the GEMM plans, so the
// capture records only stream work), at an executor's start (prepare) or on first use, replayed after. A graph keeps the pointers and the
// settings it was captured with: the backend drops every graph when a buffer they point into moves
// (the KV pools, the step metadata), and its tuning never changes (tuning.ts). Owns the graphs until
// dispose().
import type { StepInput } from "../backend.ts";
import type { SampleParams } from "../decoding_ops.ts";
import { MAX_SPLITS } from "./attention_splits.ts";
import { type CudaGraph, GraphCapture, type Stream } from "./device/index.ts";
import { greedySampleParams } from "./device_sampler.ts";

/** A graph's key: (bucket, splits) then the slot it samples into (−1: none). */
export function decodeGraphKey(bucket: number, splits: number, sampleSlot: number): number {
  return 3 * (bucket * (MAX_SPLITS + 1) + splits) + sampleSlot + 1;
}

/** Whether a step is a decode step a graph can replay: one token per sequence, logits for each in
 * order, at most maxRows sequences, block tables within the graphs' stride. */
export function isGraphable(step: StepInput, maxRows: number, tableStride: number): boolean {
  const S = step.seqs.length;
  if (S === 0 || S > maxRows || step.logitRows.length !== S) return false;
  for (let i = 0; i < S; i++) {
    const q = step.seqs[i];
    if (
      q.queryLen !== 1 ||
      q.queryStart !== i ||
      step.logitRows[i] !== i ||
      q.blockTable.length > tableStride
    )
      return false;
  }
  return true;
}

export class DecodeGraphs {
  private readonly graphs = new Map<number, CudaGraph>();

  constructor(private readonly stream: Stream) {}

  /** Graphs held. */
  get size(): number {
    return this.graphs.size;
  }

  get(key: number): CudaGraph | undefined {
    return this.graphs.get(key);
  }

  /** The graph under `key`, captured now if there is none: `record` queues the step's launches once
   * eagerly (warm-up: GEMM plans, module loads), then once more under capture. */
  getOrCapture(key: number, record: () => void): CudaGraph {
    let graph = this.graphs.get(key);
    if (!graph) {
      record();
      const capture = GraphCapture.begin(this.stream);
      try {
        record();
      } catch (e) {
        capture.abort();
        throw e;
      }
      graph = capture.end();
      this.graphs.set(key, graph);
    }
    return graph;
  }

  /** Captures the graphs of `steps` (graphWarmUpSteps) through `replay`: each without a sampler and,
   * with `sampling`, with the greedy sampler into each slot (0 and 1: what overlapped steps alternate).
   * Returns how many were new. */
  prepare(
    steps: readonly StepInput[],
    sampling: boolean,
    replay: (step: StepInput, sample?: { params: SampleParams; slot: number; inGraph: true }) => void,
  ): number {
    const before = this.graphs.size;
    for (const step of steps) {
      replay(step);
      if (!sampling) continue;
      const params = greedySampleParams(step.seqs.length);
      for (const slot of [0, 1]) replay(step, { params, slot, inGraph: true });
    }
    this.stream.synchronize();
    return this.graphs.size - before;
  }

  /** Frees every graph (they point into a buffer that moved). */
  drop(): void {
    for (const g of this.graphs.values()) g.dispose();
    this.graphs.clear();
  }

  dispose(): void {
    this.drop();
  }
}
