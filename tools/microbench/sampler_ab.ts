// kernels/sampling.cu's sample_topk_topp at the Llama-3 vocabulary (V = 128,256), one row, temperature 1,
// top-p 0.95: median time of 30 launches (synchronous, so launch overhead included), on logits of spread
// 0.5 (flat, as random-weight engines give: the kept set is most of the vocabulary) and 4 (peaked). The
// variants it once compared against (one element per thread, leader-aggregated histograms) measured
// slower and are gone (docs/PERFORMANCE.md); add a module here to A/B a new one.
// Usage (device run): source .device/prelude.sh && node --import tsx tools/microbench/sampler_ab.ts
import { SLICE_STATS_BYTES, samplingSlices } from "../../src/backends/cuda/sampling_launch.ts";
import { KernelHarness, ptr, randn } from "../../test/gpu/kernels/harness.ts";

const V = 128256;
const h = KernelHarness.open();
const P = samplingSlices(V);
const mods = {
  vec: h.module("sampling.cu", { VOCAB: V }),
};
for (const spread of [0.5, 4]) {
  const logits = h.raw(randn(V, 11, spread));
  const out: Record<string, { ms: number; tokens: number[] }> = {};
  for (const [name, mod] of Object.entries(mods)) {
    const times: number[] = [];
    const tokens: number[] = [];
    for (let seed = 0; seed < 31; seed++) {
      const tok = h.raw(new Int32Array(1));
      const args = [
        ptr(logits),
        ptr(h.raw(new Uint8Array(1))),
        ptr(h.raw(new Float32Array([1]))),
        ptr(h.raw(new Int32Array(1))),
        ptr(h.raw(new Float32Array([0.95]))),
        ptr(h.raw(new Float32Array(1))),
        ptr(h.raw(new Float64Array([1000 + seed]))),
        ptr(h.raw(new Int32Array(1))),
        ptr(h.raw(new Int32Array([seed]))),
        ptr(tok),
        ptr(h.raw(new Float32Array(1))),
        ptr(h.raw(new Uint8Array(SLICE_STATS_BYTES * P))),
        ptr(h.raw(new Int32Array(1))),
      ];
      const t0 = performance.now();
      h.run(mod, "sample_topk_topp", [P, 1], [1024], args);
      if (seed > 0) times.push(performance.now() - t0); // the first launch loads the module
      tokens.push(h.downloadI32(tok, 1)[0]);
    }
    times.sort((a, b) => a - b);
    out[name] = { ms: times[times.length >> 1], tokens };
  }
  const us = (o: { ms: number }) => (o.ms * 1000).toFixed(0);
  console.log(`spread ${spread}: sample_topk_topp 16-byte passes ${us(out.vec)} µs`);
  h.freeAll();
}
h.dispose();
