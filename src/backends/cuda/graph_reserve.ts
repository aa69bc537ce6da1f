// Device memory the CUDA backend allocates after warm-up, by itself: what KV sizing keeps back from
// free memory (ExecutionBackend.freeMemoryBytes). Warm-up (CudaBackend.warmUp) creates every GEMM
// plan and sampler buffer a step may need; what is left is created on first use:
//   - decode graphs, captured per (batch bucket, attention splits, sampler slot): at most
//     (row buckets up to maxLogitRows) · (log2(MAX_SPLITS) + 1) · 3 of them (decode_graphs.ts). An
//     instantiated graph keeps its kernel nodes' launch parameters on the device; the estimate is
//     GRAPH_NODE_BYTES per node (a kernel's parameters are at most 4 KiB; twice that covers the
//     driver's per-node bookkeeping), one node per launch of the plan plus the sampler.
//   - buffers that grow with a step's inputs (penalty and ban lists, block tables past the
//     metadata buffer's first size): STEP_SLACK_BYTES.
// An estimate, not a measurement: test/gpu/kv_sizing.test.ts checks it on the device and prints what
// the graphs took (docs/TUNING.md, "KV cache").
import { MAX_SPLITS } from "./attention_splits.ts";
import { rowBuckets } from "./gemm_algorithms.ts";

/** Device bytes one instantiated graph node is taken to hold (estimate; see above). */
export const GRAPH_NODE_BYTES = 8 << 10;
/** Device bytes kept for step buffers that grow after warm-up. */
export const STEP_SLACK_BYTES = 64 << 20;

/** Bytes kept back for the decode graphs of a plan of `launches` kernel launches per decode step and
 * for growing step buffers, at most `maxLogitRows` sequences per graph. */
export function graphReserveBytes(launches: number, maxLogitRows: number): number {
  const buckets = rowBuckets(maxLogitRows).length;

  const graphs = buckets * (Math.log2(MAX_SPLITS) + 1) * 3;
  return graphs * (launches + 1) * GRAPH_NODE_BYTES + STEP_SLACK_BYTES;
}
