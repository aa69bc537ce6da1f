// Packs a step's metadata (see runtime/step.ts) into one int32 block that is copied to the device in
// one transfer; kernels get pointers into it.
//
//   [ ids T | positions T | slots T | invFreqIndex T | queryStart S+1 | contextLen S | blockTables ]
// with block tables [S, stride] (row-major, `tableStep` 1) for packStep and [stride, S] (`tableStride`
// 1, `tableStep` S) for the decode steps of CUDA graphs (packDecodeStep).
import type { StepInput } from "../../runtime/step.ts";

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
    tables: number;
  };
  /** Elements between two sequences' tables, and between two entries of one table. */
  tableStride: number;
  tableStep: number;
  numTokens: number;
  numSeqs: number;
  maxQueryLen: number;
  maxContextLen: number;
  allDecode: boolean;
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
    tables: 4 * T + 2 * S + 1,
  };
  const data = new Int32Array(at.tables + S * stride);
  data.set(step.tokenIds, at.ids);
  data.set(step.positions, at.positions);
  data.set(step.slotMapping, at.slots);
  let maxQueryLen = 0;
  let maxContextLen = 0;
  step.seqs.forEach((s, i) => {
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
    tableStride: stride,
    tableStep: 1,
    numTokens: T,
    numSeqs: S,
    maxQueryLen,
    maxContextLen,
    allDecode: step.seqs.every((s) => s.queryLen === 1),
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
    tables: 6 * B + 1,
  };
  let used = 0;
  for (const s of step.seqs) used = Math.max(used, Math.min(s.blockTable.length, stride));
  const data = new Int32Array(at.tables + used * B);
  data.fill(-1, at.slots, at.slots + B);
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
    tableStride: 1,
    tableStep: B,
    numTokens: B,
    numSeqs: B,
    maxQueryLen: 1,
    maxContextLen,
    allDecode: S > 0,
  };
}
