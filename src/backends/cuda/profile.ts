// Measurements the benchmark reports next to TPOT: copy bandwidth and dense GEMM rate of the device
// (kiln bench's floor), a decode step's time replayed as a graph, with the sampler, with the metadata
// upload, and launched eagerly step by step, and any step (a prefill) launched eagerly step by step
// (kiln bench --profile).
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import type { DecodeProfile, KindTimes, StepProfile } from "../backend.ts";
import {
  type CudaDevice,
  type CudaGraph,
  DeviceBuffer,
  Gemm,
  type Stream,
  timeOnStream,
} from "./device/index.ts";
import type { LoweredStep } from "./lowering.ts";
import type { PackedStep } from "./step_metadata.ts";

/** Device-to-device copy bandwidth in bytes/s (read + write), over 1 GiB. */
export function measureCopyBandwidth(device: CudaDevice, stream: Stream): number {
  const bytes = 1 << 30;
  const a = DeviceBuffer.alloc(device, bytes);
  const b = DeviceBuffer.alloc(device, bytes);
  try {
    b.copyFromAsync(stream, a, bytes); // warm-up
    const reps = 10;
    const ms = timeOnStream(stream, () => {
      for (let i = 0; i < reps; i++) b.copyFromAsync(stream, a, bytes);
    });
    return (reps * 2 * bytes) / (ms / 1000);
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** Dense GEMM rate in FLOP/s at `dtype` (8192³, cuBLASLt, fp32 compute). */
export function measureGemmFlops(device: CudaDevice, stream: Stream, dtype: DTypeName): number {
  const m = 8192;
  const n = 8192;
  const k = 8192;
  const elem = ELEMENT_BYTES[dtype];
  const x = DeviceBuffer.alloc(device, m * k * elem);
  const w = DeviceBuffer.alloc(device, n * k * elem);
  const y = DeviceBuffer.alloc(device, m * n * elem);
  const g = Gemm.create(device, { m, n, k, dtypeIn: dtype, computeFp32Exact: true });
  try {
    for (const buf of [x, w]) buf.fillBytes(stream, 0x3c);
    g.run(stream, x, w, y);
    const reps = 5;
    const ms = timeOnStream(stream, () => {
      for (let i = 0; i < reps; i++) g.run(stream, x, w, y);
    });
    return (reps * 2 * m * n * k) / (ms / 1000);
  } finally {
    g.dispose();
    for (const b of [x, w, y]) b.dispose();
  }
}

/** Runs each lowered step of an uploaded step eagerly, one event pair each (`runStep` launches it). */
export function profileEager(
  stream: Stream,
  steps: readonly LoweredStep[],
  runStep: (step: LoweredStep) => void,
): StepProfile {
  const byKind: KindTimes = {};
  let eagerMs = 0;
  for (const step of steps) {
    const key = step.kind === "linear" ? `gemm ${step.op.outFeatures}x${step.op.inFeatures}` : step.kind;
    const ms = timeOnStream(stream, () => runStep(step));
    eagerMs += ms;
    const k = byKind[key] ?? { ms: 0, count: 0 };
    k.ms += ms;
    k.count++;
    byKind[key] = k;
  }
  stream.synchronize();
  return { eagerMs, byKind };
}

/** What profileDecode times: a decode step's graph (and, when the engine samples on the device, the
 * graph that also samples, with its metadata), and the steps to launch one by one. */
export interface DecodeProfileTarget {
  stream: Stream;
  graph: CudaGraph;
  packed: PackedStep;
  /** Replays (capturing if needed) the graph that also samples, after the plain graph is timed. */
  sampled?: () => { graph: CudaGraph; packed: PackedStep };
  uploadMeta(packed: PackedStep): void;
  steps: readonly LoweredStep[];
  runStep(step: LoweredStep, packed: PackedStep, rows: Int32Array): void;
}

/** Times a decode step: the graph alone (mean of 20 replays), the sampling graph alone and after the
 * metadata upload each step makes (TPOT minus uploadGraphMs is the host's share and the gaps between
 * steps), and each lowered step launched eagerly, summed by kind. */
export function profileDecode(t: DecodeProfileTarget): DecodeProfile {
  const reps = 20;
  const replay = (g: CudaGraph) =>
    timeOnStream(t.stream, () => {
      for (let i = 0; i < reps; i++) g.launch(t.stream);
    }) / reps;
  const graphMs = replay(t.graph);
  let sampledGraphMs: number | undefined;
  let uploadGraphMs: number | undefined;
  if (t.sampled) {
    const { graph, packed } = t.sampled();
    sampledGraphMs = replay(graph);
    uploadGraphMs =
      timeOnStream(t.stream, () => {
        for (let i = 0; i < reps; i++) {
          t.uploadMeta(packed);
          graph.launch(t.stream);
        }
      }) / reps;
  }
  const rows = Int32Array.from({ length: t.packed.numSeqs }, (_, i) => i);
  t.uploadMeta(t.packed);
  const eager = profileEager(t.stream, t.steps, (step) => t.runStep(step, t.packed, rows));
  return { graphMs, sampledGraphMs, uploadGraphMs, ...eager };
}
