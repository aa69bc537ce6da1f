// Packs a step's metadata (see backends/backend.ts) into one int32 block that is copied to the device in
// one transfer; kernels get pointers into it.
//
//   [ ids T | positions T | slots T | invFreqIndex T | queryStart S+1 | contextLen S | feed T |
//     sampling (R rows, 8-byte aligned) | blockTables ]
// feed[t] ≥ 0: token t's id is element feed[t] of the sampled-token buffer (a token an earlier queued
// step drew, still on the device) instead of ids[t]; −1: ids[t]. The sampling block holds
// sample_topk_topp's per-row settings for the R logit rows (samplingLayout), so a sampled step makes
// one host-to-device copy, and a CUDA graph can run the sampler too.
// with block tables [S, stride] (row-major, `tableStep` 1) for packStep and [stride, S] (`tableStride`
// 1, `tableStep` S) for the decode steps of CUDA graphs (packDecodeStep).

import type { StepInput } from "../backend.ts";
import type { SampleParams } from "../decoding_ops.ts";

/** Byte offsets, from the sampling block's start, of each per-row setting of R rows:
 *  seed f64 [R] | temperature f32 [R] | topP f32 [R] | minP f32 [R] | topK i32 [R] | sequence i32 [R] |
 *  step i32 [R] | greedy u8 [R]; `ints` is the block's size in int32 elements. */
export function samplingLayout(R: number) {
  return {
    seed: 0,
    temperature: 8 * R,
    topP: 12 * R,
    minP: 16 * R,
    topK: 20 * R,
    sequence: 24 * R,
    step: 28 * R,
    greedy: 32 * R,
    ints: 8 * R + Math.ceil(R / 4),
  };
}

/** Defaults for rows no request fills (a graph's padding rows): greedy, temperature 1, filters off. */
function fillSamplingDefaults(data: Int32Array, at: number, R: number): void {
  const l = samplingLayout(R);
  const base = data.byteOffset + 4 * at;
  new Float32Array(data.buffer, base + l.temperature, R).fill(1);
  new Float32Array(data.buffer, base + l.topP, R).fill(1);
  new Uint8Array(data.buffer, base + l.greedy, R).fill(1);
}

/** Writes rows 0..B−1 of `p` (B = p.greedy.length ≤ the block's rows) into the sampling block. */
export function writeSampleParams(packed: PackedStep, p: SampleParams): void {
  const B = p.greedy.length;
  const R = packed.samplingRows;
  if (B > R) throw new RangeError(`sampling settings for ${B} rows; the step has ${R} logit rows`);
  const l = samplingLayout(R);
  const { buffer, byteOffset } = packed.data;
  const base = byteOffset + 4 * packed.at.sampling;
  new Float64Array(buffer, base + l.seed, B).set(p.seed.subarray(0, B));
  new Float32Array(buffer, base + l.temperature, B).set(p.temperature.subarray(0, B));
  new Float32Array(buffer, base + l.topP, B).set(p.topP.subarray(0, B));
  new Float32Array(buffer, base + l.minP, B).set(p.minP.subarray(0, B));
  new Int32Array(buffer, base + l.topK, B).set(p.topK.subarray(0, B));
  new Int32Array(buffer, base + l.sequence, B).set(p.sequence.subarray(0, B));
  new Int32Array(buffer, base + l.step, B).set(p.step.subarray(0, B));
  new Uint8Array(buffer, base + l.greedy, B).set(p.greedy.subarray(0, B));
}

/** Feeds sequence i (i < rows.length) with rows[i] ≥ 0 its one query token from element
 * `base + rows[i]` of the sampled-token buffer; a sequence with rows[i] = −1 keeps its ids. The
 * sequence's token is at its queryStart in either layout (packStep, packDecodeStep); the caller has
 * checked the feed (token_feed.ts checkFeed). */
export function writeFeed(packed: PackedStep, rows: Int32Array, base: number): void {
  if (rows.length > packed.numSeqs)
    throw new RangeError(`${rows.length} feed rows; the step has ${packed.numSeqs} sequences`);
  for (let i = 0; i < rows.length; i++) {
    if (rows[i] < 0) continue;
    packed.data[packed.at.feed + packed.data[packed.at.queryStart + i]] = base + rows[i];
  }
}

const even = (n: number) => n + (n & 1);

/** Bytes of the metadata of any step of at most `maxTokens` tokens (so as many sequences), `maxLogitRows`
 * logit rows and `blocksPerSeq` block-table entries per sequence: the seven per-token and per-sequence
 * arrays, their alignment, the sampling block and the tables. A step past it grows the device buffer. */
export function metadataBytes(maxTokens: number, maxLogitRows: number, blocksPerSeq: number): number {
  return 4 * (7 * maxTokens + 4 + samplingLayout(maxLogitRows).ints + maxTokens * blocksPerSeq);
}

export interface PackedStep {
  /** The layout up to its last block-table entry in use (what is uploaded); see `extent`. */
  data: Int32Array;
  /** Bytes of the whole layout (every table row at full stride): the device buffer holds this much. */
  extent: number;
  /** Element offsets of each array in `data`. */
  at: {
    ids: number;
    positions: number;
    slots: number;
    invFreqIndex: number;
    queryStart: number;
    contextLen: number;
    feed: number;
    sampling: number;
    tables: number;
  };
  /** Rows of the sampling block: the step's logit rows (its bucket for a graph's decode step). */
  samplingRows: number;
  /** Elements between two sequences' tables, and between two entries of one table. */
  tableStride: number;
  tableStep: number;
  numTokens: number;
  numSeqs: number;
  maxQueryLen: number;
  maxContextLen: number;
  allDecode: boolean;
  /** Sequences [0, leadingDecodes) have one query row each, row s for sequence s (the scheduler puts a
   * step's decodes first): a mixed step runs their attention with the decode kernels, the rest with
   * attention_prefill. leadingDecodeContext: their longest context. */
  leadingDecodes: number;
  leadingDecodeContext: number;
  /** Decode attention splits fixed by a captured graph (else chosen from maxContextLen). */
  splits?: number;
}

/** `invFreqRow[s]`: the row of the inv_freq table sequence s uses (dynamic NTK); 0 otherwise. */
export function packStep(step: StepInput, invFreqRow: (seq: number) => number): PackedStep {
  const T = step.tokenIds.length;
  const S = step.seqs.length;
  const stride = Math.max(1, ...step.seqs.map((s) => s.blockTable.length));
  const at = {
    ids: 0,
    positions: T,
    slots: 2 * T,
    invFreqIndex: 3 * T,
    queryStart: 4 * T,
    contextLen: 4 * T + S + 1,
    feed: 4 * T + 2 * S + 1,
    sampling: even(5 * T + 2 * S + 1),
    tables: 0,
  };
  const R = step.logitRows.length;
  at.tables = at.sampling + samplingLayout(R).ints;
  const data = new Int32Array(at.tables + S * stride);
  data.fill(-1, at.feed, at.feed + T);
  fillSamplingDefaults(data, at.sampling, R);
  data.set(step.tokenIds, at.ids);
  data.set(step.positions, at.positions);
  data.set(step.slotMapping, at.slots);
  let maxQueryLen = 0;
  let maxContextLen = 0;
  let leadingDecodes = 0;
  let leadingDecodeContext = 0;
  step.seqs.forEach((s, i) => {
    if (leadingDecodes === i && s.queryLen === 1 && s.queryStart === i) {
      leadingDecodes++;
      leadingDecodeContext = Math.max(leadingDecodeContext, s.contextLen);
    }
    data[at.queryStart + i] = s.queryStart;
    data[at.contextLen + i] = s.contextLen;
    data.set(s.blockTable, at.tables + i * stride);
    const row = invFreqRow(i);
    for (let t = s.queryStart; t < s.queryStart + s.queryLen; t++) data[at.invFreqIndex + t] = row;
    maxQueryLen = Math.max(maxQueryLen, s.queryLen);
    maxContextLen = Math.max(maxContextLen, s.contextLen);
  });
  data[at.queryStart + S] = T;
  return {
    data,
    extent: data.byteLength,
    at,
    samplingRows: R,
    tableStride: stride,
    tableStep: 1,
    numTokens: T,
    numSeqs: S,
    maxQueryLen,
    maxContextLen,
    allDecode: step.seqs.every((s) => s.queryLen === 1),
    leadingDecodes,
    leadingDecodeContext,
  };
}

/** The step padded to `bucket` decode sequences with a fixed block-table stride, so a captured CUDA
 * graph can replay it: every array sits at an offset that depends only on (bucket, stride). Padding
 * rows have context length 0 (the decode kernel writes zeros), slot −1 (no KV write) and token 0.
 * The tables are [stride, bucket] (entry j of every sequence together), and `data` ends after the
 * last entry any sequence uses: the stride is the engine's longest sequence (8,192 blocks for a 128k
 * context), and kernels read no entry past a sequence's context, so the rest is neither built nor
 * uploaded — a step uploads bucket · (blocks in use) table entries, not bucket · 8,192. */
export function packDecodeStep(
  step: StepInput,
  bucket: number,
  stride: number,
  invFreqRow: (seq: number) => number,
): PackedStep {
  const S = step.seqs.length;
  const B = bucket;
  const at = {
    ids: 0,
    positions: B,
    slots: 2 * B,
    invFreqIndex: 3 * B,
    queryStart: 4 * B,
    contextLen: 5 * B + 1,
    feed: 6 * B + 1,
    sampling: even(7 * B + 1),
    tables: even(7 * B + 1) + samplingLayout(B).ints,
  };
  let used = 0;
  for (const s of step.seqs) used = Math.max(used, Math.min(s.blockTable.length, stride));
  const data = new Int32Array(at.tables + used * B);
  data.fill(-1, at.slots, at.slots + B);
  data.fill(-1, at.feed, at.feed + B);
  fillSamplingDefaults(data, at.sampling, B);
  let maxContextLen = 0;
  for (let i = 0; i < B; i++) data[at.queryStart + i] = i;
  data[at.queryStart + B] = B;
  step.seqs.forEach((s, i) => {
    data[at.ids + i] = step.tokenIds[s.queryStart];
    data[at.positions + i] = step.positions[s.queryStart];
    data[at.slots + i] = step.slotMapping[s.queryStart];
    data[at.invFreqIndex + i] = invFreqRow(i);
    data[at.contextLen + i] = s.contextLen;
    const n = Math.min(s.blockTable.length, stride);
    for (let j = 0; j < n; j++) data[at.tables + j * B + i] = s.blockTable[j];
    maxContextLen = Math.max(maxContextLen, s.contextLen);
  });
  return {
    data,
    extent: 4 * (at.tables + B * stride),
    at,
    samplingRows: B,
    tableStride: 1,
    tableStep: B,
    numTokens: B,
    numSeqs: B,
    maxQueryLen: 1,
    maxContextLen,
    allDecode: S > 0,
    leadingDecodes: B,
    leadingDecodeContext: maxContextLen,
  };
}
