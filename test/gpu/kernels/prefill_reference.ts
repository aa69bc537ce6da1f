// The CPU reference check the GPU prefill-attention tests share (attention_prefill_kernels.test.ts,
// attention_prefill_split.test.ts): sampled rows of a kernel's output against pagedAttention
// (src/backends/cpu/kernels/attention.ts) run on those rows alone, within attention_cuda.test.ts's
// bound (kernels/attention_README.md "Tolerance against the CPU reference").
import { type AttentionSequence, pagedAttention } from "../../../src/backends/cpu/kernels/attention.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import type { PagedProblem } from "../paged_problem.ts";
import { assertWithin, randn } from "./harness.ts";

/** Query heads, kv heads, head dim, KV block size. */
export interface PrefillShape {
  H: number;
  HKV: number;
  D: number;
  BS: number;
}

/** The rows of sequence s to compare: its ends, both sides of each 128-row tile edge, of each 16-row
 * m-tile edge (so every warp's) in the first and last tiles, and 8 at random. */
export function sampleRows(s: AttentionSequence, seed: number): number[] {
  const rows = new Set<number>([0, 1, s.queryLen - 2, s.queryLen - 1]);
  const lastTile = Math.floor((s.queryLen - 1) / 128) * 128;
  for (let e = 16; e < s.queryLen; e += 16)
    if (e % 128 === 0 || e < 128 || e > lastTile) rows.add(e - 1).add(e);
  const r = randn(8, seed);
  for (const x of r) rows.add(Math.floor(Math.abs(x * 1e4)) % Math.max(1, s.queryLen));
  return [...rows].filter((i) => i >= 0 && i < s.queryLen).sort((x, y) => x - y);
}

/** attention_cuda.test.ts's bound: fp32 part + U · (Σ w|v| + |out|) (+ fp16 subnormal weights). */
export function bound(
  dtype: DTypeName,
  want: number,
  absOut: number,
  maxAbsOut: number,
  keys: number,
  maxAbsV: number,
) {
  const u = dtype === "fp16" ? 2 ** -11 : 2 ** -8;
  const subnormal = dtype === "fp16" ? keys * 2 ** -25 * maxAbsV : 0;
  return 1e-5 * maxAbsOut + 1e-30 + u * (absOut + Math.abs(want)) + subnormal;
}

/** Checks the sampled rows of sequences [from, S) of `got` [T, H, D] (row seeds seedBase + sequence). */
export function checkSampled(
  sh: PrefillShape,
  p: PagedProblem,
  got: Float32Array,
  window: number,
  what: string,
  { from = 0, seedBase = 300 }: { from?: number; seedBase?: number } = {},
): void {
  const { H, HKV, D, BS } = sh;
  const rowLen = H * D;
  const picked: { row: number; seq: AttentionSequence }[] = [];
  p.seqs.forEach((s, si) => {
    if (si < from) return;
    for (const i of sampleRows(s, seedBase + si)) {
      // Row i as a one-row sequence at its position: the same keys, the same table.
      const pos = s.contextLen - s.queryLen + i;
      picked.push({
        row: s.queryStart + i,
        seq: { queryStart: picked.length, queryLen: 1, contextLen: pos + 1, blockTable: s.blockTable },
      });
    }
  });
  const q = new Float32Array(picked.length * rowLen);
  picked.forEach((x, j) => q.set(p.q.subarray(x.row * rowLen, (x.row + 1) * rowLen), j * rowLen));
  const run = (vCache: Float32Array) => {
    const out = new Float32Array(q.length);
    pagedAttention({
      q,
      kCache: p.kCache,
      vCache,
      blockSize: BS,
      numHeads: H,
      numKvHeads: HKV,
      headDim: D,
      seqs: picked.map((x) => x.seq),
      scale: 1 / Math.sqrt(D),
      slidingWindow: window > 0 ? window : null,
      out,
    });
    return out;
  };
  const want = run(p.vCache);
  const absOut = run(p.vCache.map(Math.abs));
  const maxAbsOut = absOut.reduce((m, x) => Math.max(m, x), 0);
  const mine = new Float32Array(q.length);
  picked.forEach((x, j) => mine.set(got.subarray(x.row * rowLen, (x.row + 1) * rowLen), j * rowLen));
  const keys = picked.map((x) => (window > 0 ? Math.min(window, x.seq.contextLen) : x.seq.contextLen));
  assertWithin(
    mine,
    want,
    (i) => bound(p.dtype, want[i], absOut[i], maxAbsOut, keys[Math.floor(i / rowLen)], p.maxAbsV),
    `${what} (rows ${picked.map((x) => x.row).join(",")})`,
  );
}
