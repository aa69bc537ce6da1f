// The CUDA backend's planning, checked on the CPU: lowering fuses the attention prologue for every
// architecture, and the activation arena never gives two simultaneously live tensors overlapping
// memory (liveness over the lowered program).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { planArena } from "../../../src/backends/cuda/arena.ts";
import { lower } from "../../../src/backends/cuda/lowering.ts";
import {
  metadataBytes,
  packDecodeStep,
  packStep,
  samplingLayout,
  writeFeed,
  writeSampleParams,
} from "../../../src/backends/cuda/step_metadata.ts";
import { optimize } from "../../../src/builder/optimize.ts";
import { parseHfConfig } from "../../../src/checkpoint/hf_config.ts";
import { resolveBuildConfig } from "../../../src/engine/build_config.ts";
import { defineModel } from "../../../src/models/registry.ts";
import { BlockAllocator, buildStep, Sequence } from "../../helpers/paged_sequence.ts";
import { TINY_CONFIGS } from "../../helpers/tiny_model.ts";

function plan(arch: string, fuse = true) {
  const config = parseHfConfig(TINY_CONFIGS[arch], arch);
  const net = optimize(defineModel(config, arch), resolveBuildConfig({ fuse }));
  return { config, plan: { ops: net.ops, output: net.output } };
}

describe("CUDA lowering", () => {
  for (const arch of Object.keys(TINY_CONFIGS)) {
    test(`${arch}: one fused RoPE launch per layer on the packed qkv, q/k norms absorbed`, () => {
      const { config, plan: p } = plan(arch);
      const lowered = lower(p, config);
      const ropes = lowered.steps.filter((s) => s.kind === "rope");
      assert.equal(ropes.length, config.numLayers);
      for (const r of ropes) {
        assert.ok(r.kind === "rope" && r.qkv !== null, "packed qkv");
        if (r.kind === "rope")
          assert.equal(r.qNorm !== null, arch === "qwen3", "q norm absorbed only for Qwen3");
      }
      // No group RMSNorm launch is left for Qwen3 (it runs inside the RoPE kernel).
      assert.ok(!lowered.steps.some((s) => s.kind === "rms_norm" && s.op.groupWidth));
      assert.equal(lowered.steps.filter((s) => s.kind === "attention").length, config.numLayers);
    });

    test(`${arch}: a gated MLP's gate_up linear carries its activation (one decode launch); the output stays apart from its input`, () => {
      const { config, plan: p } = plan(arch);
      const { steps } = lower(p, config);
      const gated = steps.filter((s) => s.kind === "linear" && s.gated);
      assert.equal(gated.length, config.numLayers, "one fused gate_up per layer");
      for (const [i, st] of steps.entries()) {
        if (st.kind !== "linear" || !st.gated) continue;
        const next = steps[i + 1];
        assert.ok(
          next.kind === "gated_act" && next.fusedInto === st.op,
          "the activation step follows, marked",
        );
        assert.equal(st.gated.out, next.kind === "gated_act" ? next.op.out : "");
        assert.ok(st.writes.includes(st.gated.out), "the linear step writes the activation's output too");
        assert.equal(st.gated.width * 2, st.op.outFeatures);
      }
      assert.ok(!steps.some((s) => s.kind === "linear" && s.logits && s.gated), "never the LM head");
    });

    test(`${arch}: every norm is its own launch: a GEMM reads only its x and writes only its outputs`, () => {
      const { config, plan: p } = plan(arch);
      const { steps } = lower(p, config);
      for (const st of steps) {
        if (st.kind !== "linear") continue;
        assert.deepEqual(st.reads, [st.op.x], `${st.op.out}: reads`);
        assert.deepEqual(st.writes, [st.op.out, ...(st.gated ? [st.gated.out] : [])], `${st.op.out}: writes`);
        assert.deepEqual(
          Object.keys(st)
            .filter((k) => !["kind", "op", "logits", "gated", "reads", "writes"].includes(k))
            .sort(),
          [],
          `${st.op.out}: no fused-norm fields`,
        );
      }
      for (const st of steps)
        if (st.kind === "rms_norm" || st.kind === "add_rms_norm")
          assert.ok(!("fusedInto" in st) && !("tailOf" in st) && !("site" in st), `${st.op.out}: not fused`);
    });

    test(`${arch}: each residual add stores a new residual, which the next reader of the residual reads`, () => {
      const { config, plan: p } = plan(arch);
      const { steps } = lower(p, config);
      const adds = steps.filter((s) => s.kind === "add_rms_norm");
      assert.equal(adds.length, 2 * config.numLayers - 1);
      const outs = new Set(adds.map((s) => (s.kind === "add_rms_norm" ? s.residualOut : "")));
      assert.equal(outs.size, adds.length, "a new storage each");
      adds.forEach((st, i) => {
        if (st.kind !== "add_rms_norm") return;
        assert.ok(!st.writes.includes(st.op.residual), "not in place");
        if (i > 0 && adds[i - 1].kind === "add_rms_norm")
          assert.equal(st.op.residual, (adds[i - 1] as { residualOut: string }).residualOut);
      });
      const last = adds[adds.length - 1];
      const finalAdd = steps.find((s) => s.kind === "add");
      assert.ok(last.kind === "add_rms_norm" && finalAdd?.kind === "add");
      assert.ok(
        [finalAdd.op.a, finalAdd.op.b].includes(last.residualOut),
        "the final add reads the newest residual",
      );
    });

    test(`${arch}: the last add, the logit-row gather and the final norm are marked for one add_rms_norm`, () => {
      const { config, plan: p } = plan(arch);
      const { steps } = lower(p, config);
      const marked = steps.flatMap((s, i) => ("finalNorm" in s && s.finalNorm ? [i] : []));
      assert.equal(marked.length, 3, "three consecutive steps");
      const [add, gather, norm] = marked.map((i) => steps[i]);
      assert.deepEqual(marked, [marked[0], marked[0] + 1, marked[0] + 2]);
      assert.ok(add.kind === "add" && gather.kind === "gather_rows" && norm.kind === "rms_norm");
      if (add.kind !== "add" || gather.kind !== "gather_rows" || norm.kind !== "rms_norm") return;
      assert.equal(gather.op.x, add.op.out);
      assert.equal(norm.op.x, gather.op.out);
      assert.deepEqual(add.finalNorm, { add: add.op, norm: norm.op });
      assert.ok(
        add.writes.includes(norm.op.out),
        "the add step writes the norm's output (the arena places it there)",
      );
      assert.ok(
        !add.reads.includes(norm.op.out) && !add.writes.includes(add.op.a) && !add.writes.includes(add.op.b),
      );
      const head = steps[marked[2] + 1];
      assert.ok(
        head.kind === "linear" && head.logits && head.op.x === norm.op.out,
        "the LM head reads the norm",
      );
    });

    test(`${arch}: each attention step links its RoPE step and reads its inputs (decode steps fuse the two)`, () => {
      for (const fuse of [true, false]) {
        const { config, plan: p } = plan(arch, fuse);
        const { steps } = lower(p, config);
        for (const [i, st] of steps.entries()) {
          if (st.kind !== "attention") continue;
          const rope = steps[i - 1];
          assert.ok(rope.kind === "rope" && st.rope === rope, "the rope step just before, linked");
          // attention_decode_rope* reads the rope step's q|k|v (or q, k, v) instead of its rotated q, so
          // the arena must keep them alive until the attention has run.
          for (const r of rope.reads) assert.ok(st.reads.includes(r), `attention reads ${r}`);
          assert.ok(st.reads.includes(st.q), "and the rotated q of the separate launch");
        }
      }
    });

    test(`${arch}: unfused plans lower to the unfused RoPE launch`, () => {
      const { config, plan: p } = plan(arch, false);
      const ropes = lower(p, config).steps.filter((s) => s.kind === "rope");
      assert.ok(ropes.every((r) => r.kind === "rope" && r.qkv === null));
    });

    test(`${arch}: arena regions of simultaneously live tensors never overlap`, () => {
      const { config, plan: p } = plan(arch);
      const lowered = lower(p, config);
      const bytesOf = (name: string) => (lowered.storage.get(name)?.width ?? 1) * 64 * 2;
      const { regions, totalBytes } = planArena(lowered.steps, bytesOf, new Set([lowered.output]));
      const first = new Map<string, number>();
      const last = new Map<string, number>();
      lowered.steps.forEach((st, i) => {
        for (const n of [...st.reads, ...st.writes]) {
          if (!first.has(n)) first.set(n, i);
          last.set(n, i);
        }
      });
      last.set(lowered.output, Number.POSITIVE_INFINITY);
      const names = [...regions.keys()];
      let sum = 0;
      for (const n of names) sum += regions.get(n)?.bytes ?? 0;
      assert.ok(totalBytes < sum, "some regions are reused");
      for (let a = 0; a < names.length; a++) {
        for (let b = a + 1; b < names.length; b++) {
          const ra = regions.get(names[a]);
          const rb = regions.get(names[b]);
          if (!ra || !rb) continue;
          const overlap = ra.offset < rb.offset + rb.bytes && rb.offset < ra.offset + ra.bytes;
          const live =
            (first.get(names[a]) as number) <= (last.get(names[b]) as number) &&
            (first.get(names[b]) as number) <= (last.get(names[a]) as number);
          assert.ok(!(overlap && live), `${names[a]} and ${names[b]} share memory while both are live`);
        }
      }
    });
  }
});

describe("step metadata packing", () => {
  test("packStep and packDecodeStep lay out ids, positions, slots, sequences and block tables", () => {
    const alloc = new BlockAllocator(16);
    const a = new Sequence(0, [5, 6, 7, 8, 9], 4);
    const b = new Sequence(1, [3], 4);
    for (const s of [a, b]) s.reserve(s.ids.length, alloc);
    const full = packStep(buildStep([a, b]), () => 0);
    const d = full.data;
    assert.deepEqual([...d.subarray(full.at.ids, full.at.ids + 6)], [5, 6, 7, 8, 9, 3]);
    assert.deepEqual([...d.subarray(full.at.positions, full.at.positions + 6)], [0, 1, 2, 3, 4, 0]);
    assert.deepEqual([...d.subarray(full.at.queryStart, full.at.queryStart + 3)], [0, 5, 6]);
    assert.deepEqual([...d.subarray(full.at.contextLen, full.at.contextLen + 2)], [5, 1]);
    assert.equal(full.tableStride, 2);
    assert.deepEqual([...d.subarray(full.at.slots, full.at.slots + 6)], [0, 1, 2, 3, 4, 8]);
    assert.equal(full.allDecode, false);
    // Decode step of both, padded to a bucket of 4 with a fixed stride of 3.
    for (const s of [a, b]) {
      s.numComputed = s.ids.length;
      s.ids.push(11);
      s.reserve(s.ids.length, alloc);
    }
    const dec = packDecodeStep(buildStep([a, b]), 4, 3, (i) => i);
    const x = dec.data;
    assert.deepEqual([...x.subarray(dec.at.ids, dec.at.ids + 4)], [11, 11, 0, 0]);
    assert.deepEqual([...x.subarray(dec.at.slots, dec.at.slots + 4)], [a.slot(5), b.slot(1), -1, -1]);
    assert.deepEqual(
      [...x.subarray(dec.at.contextLen, dec.at.contextLen + 4)],
      [6, 2, 0, 0],
      "padding rows have context 0",
    );
    assert.deepEqual([...x.subarray(dec.at.queryStart, dec.at.queryStart + 5)], [0, 1, 2, 3, 4]);
    assert.deepEqual([...x.subarray(dec.at.invFreqIndex, dec.at.invFreqIndex + 2)], [0, 1]);
    assert.equal(dec.numSeqs, 4);
    // Tables [stride, bucket]: entry j of every sequence together, built only as far as any is used.
    assert.equal(dec.tableStride, 1);
    assert.equal(dec.tableStep, 4);
    assert.deepEqual([a.blockTable.length, b.blockTable.length], [2, 1]);
    assert.equal(dec.data.length, dec.at.tables + 4 * 2);
    assert.deepEqual(
      [...x.subarray(dec.at.tables, dec.at.tables + 8)],
      [a.blockTable[0], b.blockTable[0], 0, 0, a.blockTable[1], 0, 0, 0],
    );
    assert.equal(dec.extent, 4 * (dec.at.tables + 4 * 3), "the device layout keeps the full stride");
    const long = packDecodeStep(buildStep([a, b]), 2, 8192, (i) => i);
    assert.equal(
      long.data.length,
      long.at.tables + 2 * 2,
      "a 128k-context stride uploads the entries in use",
    );
    assert.equal(full.tableStep, 1, "packStep: row-major tables");
  });

  test("packStep counts a mixed step's leading decodes, which take the decode attention kernels", () => {
    const alloc = new BlockAllocator(16);
    // Two decodes (one new token each, contexts 6 and 3), then a prompt chunk of 5, then a decode that
    // comes after it: only the leading run counts (sequence s must be row s).
    const d1 = new Sequence(0, [1, 2, 3, 4, 5, 6], 4);
    const d2 = new Sequence(1, [7, 8, 9], 4);
    const p = new Sequence(2, [10, 11, 12, 13, 14], 4);
    const d3 = new Sequence(3, [15, 16, 17, 18, 19, 20, 21, 22, 23], 4);
    for (const s of [d1, d2, d3]) s.numComputed = s.ids.length - 1;
    for (const s of [d1, d2, p, d3]) s.reserve(s.ids.length, alloc);
    const mixed = packStep(buildStep([d1, d2, p, d3]), () => 0);
    assert.equal(mixed.allDecode, false);
    assert.equal(mixed.leadingDecodes, 2);
    assert.equal(mixed.leadingDecodeContext, 6);
    assert.equal(mixed.maxContextLen, 9);
    // The prompt's launch starts at sequence 2: its query start is the absolute row 2.
    assert.equal(mixed.data[mixed.at.queryStart + mixed.leadingDecodes], 2);
    const prompts = packStep(buildStep([p, d1]), () => 0);
    assert.equal(prompts.leadingDecodes, 0);
    const decodes = packStep(buildStep([d1, d2]), () => 0);
    assert.equal(decodes.allDecode, true);
    assert.equal(decodes.leadingDecodes, 2);
  });

  test("metadataBytes holds the largest steps: every token a sequence, and a decode bucket", () => {
    const alloc = new BlockAllocator(64);
    const seqs = Array.from({ length: 8 }, (_, i) => new Sequence(i, [1, 2, 3, 4, 5, 6, 7, 8, 9], 4));
    for (const s of seqs) {
      s.reserve(s.ids.length, alloc);
      s.numComputed = s.ids.length - 1;
    }
    const blocks = Math.max(...seqs.map((s) => s.blockTable.length));
    const bytes = metadataBytes(8, 8, blocks);
    const prefill = packStep(buildStep(seqs), () => 0);
    assert.equal(prefill.numTokens, 8);
    assert.ok(prefill.data.byteLength <= bytes, `packStep: ${prefill.data.byteLength} > ${bytes}`);
    const dec = packDecodeStep(buildStep(seqs), 8, blocks, () => 0);
    assert.ok(dec.extent <= bytes, `packDecodeStep: ${dec.extent} > ${bytes}`);
  });

  test("fed tokens and sampling settings sit before the tables, unread rows at their defaults", () => {
    const alloc = new BlockAllocator(16);
    const seqs = [new Sequence(0, [5, 6, 7], 4), new Sequence(1, [3], 4), new Sequence(2, [9, 9], 4)];
    for (const s of seqs) {
      s.reserve(s.ids.length, alloc);
      s.numComputed = s.ids.length;
      s.ids.push(11);
      s.reserve(s.ids.length, alloc);
    }
    for (const packed of [
      packStep(buildStep(seqs), () => 0),
      packDecodeStep(buildStep(seqs), 4, 3, () => 0),
    ]) {
      const R = packed.samplingRows;
      assert.equal(R, packed.numSeqs, "one sampling row per logit row (the bucket in a decode step)");
      assert.equal(packed.at.sampling % 2, 0, "the f64 seeds are 8-byte aligned");
      const l = samplingLayout(R);
      assert.ok(packed.at.feed + packed.numTokens <= packed.at.sampling);
      assert.equal(packed.at.tables, packed.at.sampling + l.ints, "the tables follow the sampling block");
      const ids = [...packed.data.subarray(packed.at.ids, packed.at.ids + 3)];
      // Before anything is written: no token is fed; every row is greedy at temperature 1, filters off.
      assert.deepEqual(
        [...packed.data.subarray(packed.at.feed, packed.at.feed + packed.numTokens)],
        new Array(packed.numTokens).fill(-1),
      );
      const bytes = (o: number, n: number) =>
        new DataView(packed.data.buffer, packed.data.byteOffset + 4 * packed.at.sampling + o, n);
      const tables = [...packed.data.subarray(packed.at.tables)];
      writeFeed(packed, Int32Array.from([2, 0]), 128);
      writeSampleParams(packed, {
        greedy: Uint8Array.from([0, 1, 0]),
        temperature: Float32Array.from([0.5, 1, 0.75]),
        topK: Int32Array.from([40, 0, 7]),
        topP: Float32Array.from([0.9, 1, 0.5]),
        minP: Float32Array.from([0.05, 0, 0]),
        seed: Float64Array.from([2 ** 52 + 3, 1, 7]),
        sequence: Int32Array.from([4, 5, 6]),
        step: Int32Array.from([10, 11, 12]),
      });
      assert.deepEqual([...packed.data.subarray(packed.at.feed, packed.at.feed + 3)], [130, 128, -1]);
      assert.deepEqual([...packed.data.subarray(packed.at.ids, packed.at.ids + 3)], ids, "ids stay");
      assert.deepEqual([...packed.data.subarray(packed.at.tables)], tables, "tables stay");
      assert.equal(bytes(l.seed, 8).getFloat64(0, true), 2 ** 52 + 3);
      assert.equal(bytes(l.seed + 16, 8).getFloat64(0, true), 7);
      assert.equal(bytes(l.temperature + 8, 4).getFloat32(0, true), 0.75);
      assert.equal(bytes(l.topK, 4).getInt32(0, true), 40);
      assert.equal(bytes(l.topP + 8, 4).getFloat32(0, true), 0.5);
      assert.equal(bytes(l.minP, 4).getFloat32(0, true), Math.fround(0.05));
      assert.equal(bytes(l.sequence + 4, 4).getInt32(0, true), 5);
      assert.equal(bytes(l.step + 8, 4).getInt32(0, true), 12);
      assert.deepEqual(
        [0, 1, 2].map((r) => bytes(l.greedy + r, 1).getUint8(0)),
        [0, 1, 0],
      );
      if (R > 3) {
        // The graph's padding row: greedy, temperature 1, top-p 1, no top-k or min-p.
        assert.equal(bytes(l.greedy + 3, 1).getUint8(0), 1);
        assert.equal(bytes(l.temperature + 12, 4).getFloat32(0, true), 1);
        assert.equal(bytes(l.topP + 12, 4).getFloat32(0, true), 1);
        assert.equal(bytes(l.topK + 12, 4).getInt32(0, true), 0);
      }
      assert.throws(() => writeFeed(packed, new Int32Array(packed.numSeqs + 1), 0), RangeError);
    }
  });
  test("a mixed step feeds only its decode sequences, at their query starts; −1 keeps the host's ids", () => {
    const alloc = new BlockAllocator(16);
    // s0 a 3-token prompt chunk, s1 and s2 one decode token each: tokens [p p p | d1 | d2].
    const s0 = new Sequence(0, [5, 6, 7], 4);
    const s1 = new Sequence(1, [3, 4], 4);
    const s2 = new Sequence(2, [9, 9], 4);
    for (const s of [s0, s1, s2]) s.reserve(s.ids.length, alloc);
    s1.numComputed = 1;
    s2.numComputed = 1;
    const step = buildStep([s0, s1, s2]);
    assert.deepEqual(
      step.seqs.map((q) => [q.queryStart, q.queryLen]),
      [
        [0, 3],
        [3, 1],
        [4, 1],
      ],
    );
    const packed = packStep(step, () => 0);
    writeFeed(packed, Int32Array.from([-1, 6, -1]), 64);
    assert.deepEqual([...packed.data.subarray(packed.at.feed, packed.at.feed + 5)], [-1, -1, -1, 70, -1]);
    assert.deepEqual([...packed.data.subarray(packed.at.ids, packed.at.ids + 5)], [5, 6, 7, 4, 9]);
    // The same decode sequences alone, as a graph's padded decode step: sequence i is token i.
    const dec = packDecodeStep(buildStep([s1, s2]), 4, 4, () => 0);
    writeFeed(dec, Int32Array.from([-1, 2]), 64);
    assert.deepEqual([...dec.data.subarray(dec.at.feed, dec.at.feed + 4)], [-1, 66, -1, -1]);
  });
});
