// A pipelined run of mixed steps on any backend with enqueueSample, against the same steps run
// unfed and synchronously (forwardSample with every token from the host). Shared by the CPU test
// (test/backends/cpu/mixed_feed.test.ts) and the CUDA one (test/gpu/mixed_feed.test.ts).
//
//   step 0:  [ B prompt (3) | A prompt (5) ]                    rows: B 0, A 1
//   step 1:  [ C prompt chunk (4) | A decode | B decode ]       feed [−1, 1, −1]: A from step 0 row 1,
//                                                               B's token from the host
//   step 2:  [ A decode | B decode | C decode ]                 feed [1, 2, 0]: all fed, permuted
// Step 2 is a decode-only step (the CUDA backend replays its graph); step 1 runs eagerly.
import type { ExecutionBackend, StepInput } from "../../src/backends/backend.ts";
import type { SampleParams } from "../../src/backends/decoding_ops.ts";
import { BlockAllocator, buildStep, Sequence } from "./paged_sequence.ts";

export type Sampled = { tokens: Int32Array; logProbs: Float32Array };

const PROMPTS = { a: [11, 23, 5, 42, 7], b: [3, 19, 30], c: [8, 8, 51, 2] };
const NO_TRANSFORMS = { bias: null, penalties: null, banned: null };

/** Seeded sampling over B rows (row r keyed by sequence r, at `step`). */
export function sampleParams(B: number, step: number): SampleParams {
  return {
    greedy: new Uint8Array(B),
    temperature: new Float32Array(B).fill(0.8),
    topK: new Int32Array(B).fill(40),
    topP: new Float32Array(B).fill(0.95),
    minP: new Float32Array(B),
    seed: new Float64Array(B).fill(7),
    sequence: Int32Array.from({ length: B }, (_, r) => r),
    step: new Int32Array(B).fill(step),
  };
}

/** The three steps' samples: each run synchronously with the host's tokens, or, with `fed`, queued
 * ahead with feeds (B's host token in step 1 is `fed.hostTokenOfB`: the unfed run's step-0 token of
 * row 0; a fed token's place holds `fed.placeholder`). The backend's KV cache must hold 16 blocks. */
export function runMixedSteps(
  backend: ExecutionBackend,
  fed?: { hostTokenOfB: number; placeholder: number },
): Sampled[] {
  const alloc = new BlockAllocator(16);
  const bs = backend.kvBlockSize;
  const a = new Sequence(0, PROMPTS.a, bs);
  const b = new Sequence(1, PROMPTS.b, bs);
  const c = new Sequence(2, PROMPTS.c, bs);
  const reserve = (...seqs: Sequence[]) => {
    for (const s of seqs) s.reserve(s.ids.length, alloc);
  };
  const computed = (...seqs: Sequence[]) => {
    for (const s of seqs) s.numComputed = s.ids.length;
  };
  const enqueue = backend.enqueueSample?.bind(backend);
  const collect = backend.collectSample?.bind(backend);
  const forwardSample = backend.forwardSample?.bind(backend);
  if (!enqueue || !collect || !forwardSample) throw new Error("the backend has no enqueueSample");
  const sync = (step: StepInput, n: number) =>
    forwardSample(step, sampleParams(step.seqs.length, n), NO_TRANSFORMS);

  reserve(b, a);
  const step0 = buildStep([b, a]);
  computed(a, b);
  if (!fed) {
    const s0 = sync(step0, 0);
    a.ids.push(s0.tokens[1]);
    b.ids.push(s0.tokens[0]);
    reserve(a, b, c);
    const s1 = sync(buildStep([c, a, b]), 1);
    computed(a, b, c);
    a.ids.push(s1.tokens[1]);
    b.ids.push(s1.tokens[2]);
    c.ids.push(s1.tokens[0]);
    reserve(a, b, c);
    const s2 = sync(buildStep([a, b, c]), 2);
    return [s0, s1, s2];
  }
  const t0 = enqueue(step0, sampleParams(2, 0), NO_TRANSFORMS);
  // B's token is one the host already has (the reference run's); A's comes from step 0 on the device.
  const { placeholder } = fed;
  a.ids.push(placeholder);
  b.ids.push(fed.hostTokenOfB);
  reserve(a, b, c);
  const step1 = buildStep([c, a, b]);
  computed(a, b, c);
  const t1 = enqueue(step1, sampleParams(3, 1), NO_TRANSFORMS, {
    from: t0,
    rows: Int32Array.from([-1, 1, -1]),
  });
  const s0 = collect(t0);
  for (const s of [a, b, c]) s.ids.push(placeholder);
  reserve(a, b, c);
  const step2 = buildStep([a, b, c]);
  const t2 = enqueue(step2, sampleParams(3, 2), NO_TRANSFORMS, {
    from: t1,
    rows: Int32Array.from([1, 2, 0]),
  });
  const s1 = collect(t1);
  const s2 = collect(t2);
  return [s0, s1, s2];
}
