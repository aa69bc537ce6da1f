// kernels/sampling.cu's sample_topk_topp at the Llama-3 vocabulary (V = 128,256): GPU time (CUDA events,
// median of 30 launches after a warm-up) for B rows, greedy (the bench's decoding) and sampled
// (temperature 1, top-p 0.95), on logits of spread 0.5 (flat, as random-weight engines give: the kept set
// is most of the vocabulary). Two layouts of the same kernel: a CTA a slice (Q = P, how every batch ran
// before samplingCtas) and samplingCtas' choice for this GPU (several slices a CTA, a team of warps each,
// once the rows fill a wave); their tokens must agree. The floor: B rows of fp32 logits read once.
// Usage (device run): source .device/prelude.sh && node --import tsx tools/microbench/sampler_ab.ts [GB/s]
import { timeOnStream } from "../../src/backends/cuda/device/event.ts";
import { SLICE_STATS_BYTES, samplingCtas, samplingSlices } from "../../src/backends/cuda/sampling_launch.ts";
import { i32, KernelHarness, ptr, randn } from "../../test/gpu/kernels/harness.ts";

const V = 128256;
const gbs = Number(process.argv[2] ?? 3000); // copy bandwidth (GB/s) for the floor; H100 ~3,000
const h = KernelHarness.open();
const sms = h.device.smCount;
const P = samplingSlices(V);
const mod = h.module("sampling.cu", { VOCAB: V });
console.log(`${h.device.properties.name}: ${sms} SMs, ${P} slices a row`);
console.log("rows  decoding | floor µs | Q = P: CTAs, µs | samplingCtas: CTAs, µs | tokens agree");
for (const B of [1, 8, 32, 64, 128, 256, 512]) {
  const row = randn(V, 11, 0.5);
  const logits = new Float32Array(B * V);
  for (let r = 0; r < B; r++) logits.set(row, r * V);
  const ld = h.raw(logits);
  for (const greedy of [true, false]) {
    const settings = [
      ptr(h.raw(new Uint8Array(B).fill(greedy ? 1 : 0))),
      ptr(h.raw(new Float32Array(B).fill(1))),
      ptr(h.raw(new Int32Array(B))),
      ptr(h.raw(new Float32Array(B).fill(0.95))),
      ptr(h.raw(new Float32Array(B))),
      ptr(h.raw(Float64Array.from({ length: B }, (_, r) => 1000 + r))),
      ptr(h.raw(new Int32Array(B))),
      ptr(h.raw(new Int32Array(B))),
    ];
    const run = (q: number) => {
      const tok = h.raw(new Int32Array(B));
      const args = [
        ptr(ld),
        ...settings,
        ptr(tok),
        ptr(h.raw(new Float32Array(B))),
        ptr(h.raw(new Uint8Array(SLICE_STATS_BYTES * B * P))),
        ptr(h.raw(new Int32Array(B))),
        i32(P),
      ];
      const k = mod.kernel("sample_topk_topp");
      for (let w = 0; w < 3; w++) k.launch(h.stream, [q, B], [1024], 0, args);
      const times: number[] = [];
      for (let i = 0; i < 30; i++) times.push(timeOnStream(h.stream, () => k.launch(h.stream, [q, B], [1024], 0, args)));
      times.sort((a, b) => a - b);
      return { us: times[times.length >> 1] * 1000, tokens: Array.from(h.downloadI32(tok, B)) };
    };
    const q = samplingCtas(P, B, sms);
    const old = run(P);
    const now = run(q);
    const same = old.tokens.every((t, i) => t === now.tokens[i] && t >= 0);
    const floor = (B * V * 4) / (gbs * 1e3);
    console.log(
      `${String(B).padStart(4)}  ${greedy ? "greedy " : "sampled"}  | ${floor.toFixed(1).padStart(8)} | ${String(P * B).padStart(5)}, ${old.us.toFixed(1).padStart(6)} | ${String(q * B).padStart(5)}, ${now.us.toFixed(1).padStart(6)} | ${same}`,
    );
  }
  h.freeAll();
}
h.dispose();
