// Programmatic dependent launch (kernels/pdl.cuh): with PDL a kernel may start while its predecessor
// drains, so a kernel that touched a step buffer before griddepcontrol.wait would race. Checked two ways,
// both bit for bit (PDL changes when kernels run, never what they compute):
//   - a chain of dependent kernels, as in a decoder layer: add + RMSNorm, GEMV, gated SiLU, GEMV into
//     the buffer the norm read (read-after-write and write-after-read hazards at every launch), launched
//     with and without PDL, eagerly and captured in a CUDA graph (each graph replayed twice);
//   - the CUDA backend (bf16 engine: our GEMVs) with PDL off and on, graphs off and on.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type CudaModule, GraphCapture, type KernelArg } from "../../src/backends/cuda/device/index.ts";
import { gemvLaunch, planGemv } from "../../src/backends/cuda/gemv_variants.ts";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import type { DTypeName } from "../../src/dtype.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { tempCache } from "../helpers/tiny_model.ts";
import {
  ELEM_BYTES,
  f32,
  i32,
  KernelHarness,
  NULL,
  noGpu,
  normBlock,
  ptr,
  randn,
  roundTo,
} from "./kernels/harness.ts";

const H = 2048; // hidden
const I = 4096; // intermediate
const T = 3; // rows (decode tokens)
const LAYERS = 6;

describe("PDL: a chain of dependent kernels equals the chain without PDL", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  after(() => h.dispose());
  afterEach(() => h.freeAll());

  for (const dtype of ["bf16", "fp32"] as DTypeName[]) {
    test(`${dtype}: eager and graph, PDL on and off`, (t) => {
      if (!h.device.pdlCapable) t.diagnostic(`${h.device.name}: no PDL here, both chains are plain launches`);
      const elem = ELEM_BYTES[dtype];
      const vec = 16 / elem;
      const norm = h.module("rmsnorm.cu", { WIDTH: H }, dtype);
      const act = h.module("activation.cu", {}, dtype);
      const gemv = h.module("gemv.cu", {}, dtype);
      const input = (n: number, seed: number, scale: number, mean = 0) =>
        h.upload(roundTo(randn(n, seed, scale, mean), dtype), dtype);
      const x0 = input(T * H, 11, 1);
      const res0 = input(T * H, 12, 1);
      const normW = input(H, 13, 0.1, 1);
      const w1 = input(2 * I * H, 14, 0.02); // gate_up [2I, H]
      const w2 = input(H * I, 15, 0.02); // down [H, I]
      const x = h.filled(T * H, dtype); // [T, H]
      const res = h.filled(T * H, dtype); // [T, H]
      const hid = h.filled(T * H, dtype); // [T, H] normed, then the output
      const g = h.filled(T * 2 * I, dtype); // [T, 2I]
      const a = h.filled(T * I, dtype); // [T, I]
      const rowBytes = T * H * elem;
      const driver = h.device.driver;
      const up = gemvLaunch(planGemv(2 * I, H, elem), 2 * I, false);
      const down = gemvLaunch(planGemv(H, I, elem), H, false);
      const block = normBlock(H, dtype);
      const ewGrid = (n: number) => Math.max(1, Math.min(Math.ceil(n / (256 * vec)), 65535));

      const chain = (pdl: boolean) => {
        const launch = (m: CudaModule, name: string, grid: number, block: number, args: KernelArg[]) =>
          m.kernel(name).launch(h.stream, grid, block, 0, args, { pdl });
        driver.memcpyDtoDAsync(x, x0, rowBytes, h.stream.handle);
        driver.memcpyDtoDAsync(res, res0, rowBytes, h.stream.handle);
        for (let l = 0; l < LAYERS; l++) {
          launch(norm, "add_rms_norm", T, block, [
            ptr(res),
            ptr(x),
            ptr(normW),
            ptr(hid),
            ptr(res), // in place
            f32(1e-5),
            i32(T),
          ]);
          launch(gemv, up.kernel, up.grid, up.block, [
            ptr(hid),
            ptr(w1),
            NULL,
            ptr(g),
            i32(T),
            i32(2 * I),
            i32(H),
          ]);
          launch(act, "gated_act_silu", ewGrid(T * I), 256, [ptr(g), ptr(a), i32(T), i32(I)]);
          launch(gemv, down.kernel, down.grid, down.block, [
            ptr(a),
            ptr(w2),
            NULL,
            ptr(x),
            i32(T),
            i32(H),
            i32(I),
          ]);
        }
        launch(act, "residual_add", ewGrid(T * H), 256, [ptr(hid), ptr(x), ptr(res), i32(T * H)]);
      };
      const clearOutput = () => driver.memsetD8Async(hid, 0xff, rowBytes, h.stream.handle); // NaN
      const output = () => {
        h.stream.synchronize();
        return h.download(hid, T * H, dtype);
      };

      clearOutput();
      chain(false);
      const want = output();
      assert.ok(
        want.every((v) => Number.isFinite(v)),
        "the plain chain gives finite values",
      );
      clearOutput();
      chain(true);
      assert.deepEqual(output(), want, "eager chain with PDL");
      for (const pdl of [false, true]) {
        const capture = GraphCapture.begin(h.stream);
        try {
          chain(pdl);
        } catch (e) {
          capture.abort();
          throw e;
        }
        const graph = capture.end();
        try {
          for (let replay = 0; replay < 2; replay++) {
            clearOutput();
            graph.launch(h.stream);
            assert.deepEqual(output(), want, `graph, PDL ${pdl ? "on" : "off"}, replay ${replay}`);
          }
        } finally {
          graph.dispose();
        }
      }
    });
  }
});

describe("PDL, the fused gated GEMV and the cluster merge of decode attention: the CUDA backend gives the same tokens and log-probs with each on and off", {
  skip: noGpu,
}, () => {
  test("bf16 engine of the default model, graphs off and on (captured, replayed)", async () => {
    const cache = tempCache();
    const model = fileURLToPath(new URL("../../models/default", import.meta.url));
    // The long prompt's context passes 64 keys: its decode attention runs 2 splits, merged in a cluster
    // (attention_decode_c2) or by the last CTA.
    const prompts = [
      "ROMEO:\n",
      "To be, or not to be",
      "KING:",
      "Now is the winter of our discontent. ".repeat(8),
    ];
    const greedy = { greedy: true, maxNewTokens: 24, ignoreEos: true };
    type Out = { outputIds: number[]; logProbs: number[] }[];
    const runs = async (
      pdl: boolean,
      fuse: boolean,
      cluster: boolean,
      ropeEarly = false,
    ): Promise<{ eager: Out; first: Out; replay: Out }> => {
      // Four prompts (bucket 4) on our GEMVs (gemvMaxRows 8), so the fused kernels run.
      const tuning = { pdl, fuseGatedAct: fuse, attnCluster: cluster, ropeEarly, gemvMaxRows: 8 };
      const open = (graphs: boolean) =>
        ModelRunner.fromDir(model, {
          backend: "cuda",
          dtype: "bf16",
          cacheDir: cache.dir,
          cudaTuning: cudaTuning({ ...tuning, graphs }),
        });
      const eagerRunner = open(false);
      let eager: Out;
      try {
        eager = await eagerRunner.generate(prompts, greedy);
      } finally {
        eagerRunner.dispose();
      }
      const runner = open(true);
      try {
        const first = await runner.generate(prompts, greedy); // captures
        const replay = await runner.generate(prompts, greedy); // replays
        return { eager, first, replay };
      } finally {
        runner.dispose();
      }
    };
    try {
      const off = await runs(false, false, false);
      const strip = (o: Out) => o.map(({ outputIds, logProbs }) => ({ outputIds, logProbs }));
      for (const [pdl, fuse, cluster] of [
        [true, false, false],
        [false, true, false],
        [true, true, false],
        [false, false, true],
        [true, true, true],
      ] as const) {
        const on = await runs(pdl, fuse, cluster);
        const what = `PDL ${pdl ? "on" : "off"}, fused gated GEMV ${fuse ? "on" : "off"}, attention cluster ${cluster ? "on" : "off"}`;
        assert.deepEqual(strip(on.eager), strip(off.eager), `eager steps, ${what}`);
        assert.deepEqual(strip(on.first), strip(off.first), `graph capture steps, ${what}`);
        assert.deepEqual(strip(on.replay), strip(off.replay), `graph replay steps, ${what}`);
      }
      // RoPE triggering the attention before its own wait (KILN_ROPE_TRIGGER=early), with PDL and clusters.
      const early = await runs(true, true, true, true);
      assert.deepEqual(strip(early.eager), strip(off.eager), "eager steps, RoPE's early trigger");
      assert.deepEqual(strip(early.first), strip(off.first), "graph capture steps, RoPE's early trigger");
      assert.deepEqual(strip(early.replay), strip(off.replay), "graph replay steps, RoPE's early trigger");
    } finally {
      cache.cleanup();
    }
  });
});
