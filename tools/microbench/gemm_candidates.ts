// Whether kiln's build-time GEMM tuning (Gemm.tune: the heuristic's top 8, each timed on one weight
// buffer run after run) picks the algorithm that is fastest in a decode step, where the weights come
// from DRAM, and whether a larger workspace than the engine's (GEMM_WORKSPACE_BYTES) lets the heuristic
// offer faster ones (split-K needs workspace: M·N·4 bytes a split; NVIDIA recommends 32 MiB on Hopper).
// For the 8B's linears at the executor's decode batches and each workspace limit, every candidate of the
// heuristic's top 32 is timed twice, hot (one weight buffer, as the tuner times it: a weight smaller
// than L2 stays there) and cold (cycling over enough weight copies that none is in L2 when read again).
// Prints, per shape and workspace: the floor (weight bytes at the copy bandwidth, FLOPs at the dense rate
// given), the tuner's pick (best hot of the top 8) timed cold, the best cold of the top 8 and of the top
// 32, and the best cold one's configuration (split-K count, tile, stages, cluster ids; cublasLt.h enums).
// Usage (device run): source .device/prelude.sh && node --import tsx tools/microbench/gemm_candidates.ts
//   [copy GB/s (3350)] [dense TFLOP/s (800)] [workspace MiB list (8,32,128)]
import {
  CudaDevice,
  DeviceBuffer,
  Gemm,
  type GemmConfig,
  Stream,
  timeOnStream,
} from "../../src/backends/cuda/device/index.ts";
import { CUBLASLT_ALGO_CONFIG as CFG, loadCublasLt } from "../../src/backends/cuda/ffi/cublaslt.ts";

const bandwidth = Number(process.argv[2] ?? 3350) * 1e9;
const flopRate = Number(process.argv[3] ?? 800) * 1e12;
const shapes = [
  { name: "qkv", n: 6144, k: 4096 },
  { name: "o", n: 4096, k: 4096 },
  { name: "gate_up", n: 28672, k: 4096 },
  { name: "down", n: 4096, k: 14336 },
];
const rows = [128, 256, 512, 1024];
const workspaces = (process.argv[4] ?? "8,32,128").split(",").map((mib) => Number(mib) * 2 ** 20);
const lt = loadCublasLt();
const describe = (algo: Uint8Array) => {
  try {
    const c = (attr: number) => lt.algoConfig(algo, attr);
    return `split ${c(CFG.SPLITK_NUM)} tile ${c(CFG.TILE_ID)} stages ${c(CFG.STAGES_ID)} cluster ${c(CFG.CLUSTER_SHAPE_ID)} id ${c(CFG.ID)}`;
  } catch (e) {
    return `(config unreadable: ${e instanceof Error ? e.message : e})`;
  }
};

const device = CudaDevice.open();
const stream = Stream.create(device);
const l2 = device.properties.l2CacheBytes;
console.log(`${device.name}: L2 ${(l2 / 2 ** 20).toFixed(0)} MiB`);
console.log(
  "shape        m  ws MiB | floor µs | tuner's pick: hot, cold µs | best cold top 8 | best cold top 32 (of n) | its config",
);
for (const s of shapes) {
  const wBytes = s.n * s.k * 2;
  const copies = Math.max(2, Math.ceil((3 * l2) / wBytes));
  const weights = Array.from({ length: copies }, () => {
    const b = DeviceBuffer.alloc(device, wBytes);
    b.fillBytes(stream, 0x3c);
    return b;
  });
  const ws = DeviceBuffer.alloc(device, Math.max(...workspaces));
  for (const m of rows) {
    const x = DeviceBuffer.alloc(device, m * s.k * 2);
    const y = DeviceBuffer.alloc(device, m * s.n * 2);
    x.fillBytes(stream, 0x3c);
    const time = (g: Gemm, cold: boolean) => {
      const iters = cold ? copies * Math.max(1, Math.ceil(12 / copies)) : 12;
      for (let i = 0; i < 2; i++) g.run(stream, x, weights[0], y);
      return (
        (timeOnStream(stream, () => {
          for (let i = 0; i < iters; i++) g.run(stream, x, weights[cold ? i % copies : 0], y);
        }) *
          1000) /
        iters
      );
    };
    for (const wsBytes of workspaces) {
      const config: GemmConfig = {
        m,
        n: s.n,
        k: s.k,
        dtypeIn: "bf16",
        dtypeOut: "bf16",
        maxWorkspaceBytes: wsBytes,
      };
      const candidates = Gemm.heuristics(device, config, 32);
      const results = candidates.map((h, i) => {
        let g: Gemm | null = null;
        try {
          g = Gemm.create(device, config, { algo: h.algo, workspace: ws });
          return { i, hot: time(g, false), cold: time(g, true) };
        } catch {
          return { i, hot: Number.POSITIVE_INFINITY, cold: Number.POSITIVE_INFINITY }; // a candidate that will not run
        } finally {
          g?.dispose();
        }
      });
      const top8 = results.filter((r) => r.i < 8);
      const pick = top8.reduce((a, b) => (b.hot < a.hot ? b : a));
      const best = (rs: typeof results) => rs.reduce((a, b) => (b.cold < a.cold ? b : a));
      const b8 = best(top8);
      const b32 = best(results);
      const floor = Math.max(wBytes / bandwidth, (2 * m * s.n * s.k) / flopRate) * 1e6;
      console.log(
        `${s.name.padEnd(8)} ${String(m).padStart(5)} ${String(wsBytes / 2 ** 20).padStart(4)} | ${floor.toFixed(1).padStart(8)} | #${pick.i} ${pick.hot.toFixed(1)}, ${pick.cold.toFixed(1)} | #${b8.i} ${b8.cold.toFixed(1)} | #${b32.i} ${b32.cold.toFixed(1)} (${results.length}) | ${describe(candidates[b32.i].algo)}, ws ${(candidates[b32.i].workspaceBytes / 2 ** 20).toFixed(1)} MiB`,
      );
    }
    x.dispose();
    y.dispose();
  }
  ws.dispose();
  for (const w of weights) w.dispose();
}
stream.dispose();
device.dispose();
