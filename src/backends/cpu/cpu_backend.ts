// The CPU backend: interprets an engine's plan op by op in fp32 TypeScript. It is the reference the
// CUDA kernels are tested against, so it favours the obvious over the clever; only `linear` is tuned.
import { cpus } from "node:os";
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { EngineError } from "../../engine/errors.ts";
import type { Op, Plan } from "../../engine/format.ts";
import { fakeQuantizeActivations } from "../../engine/fp8_format.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import type {
  ExecutionBackend,
  ForwardTicket,
  LinearInputObserver,
  SampleTicket,
  StepInput,
  TokenFeed,
} from "../backend.ts";
import { applyTransforms, type SampleParams, type StepTransforms } from "../decoding_ops.ts";
import { cpuDecodingOps } from "../host_decoding.ts";
import type { KvCacheDtype } from "../kv_cache_dtype.ts";
import { checkFeed, checkPenaltyFeed, fedPenalties, fedTokenIds } from "../token_feed.ts";
import { CpuKvPool } from "./cpu_kv_cache.ts";
import {
  act,
  addRmsNorm,
  applyRope,
  gatedAct,
  kvCacheWrite,
  layerNorm,
  linear,
  pagedAttention,
  rmsNorm,
  ropeInvFreq,
} from "./kernels/index.ts";
import { measureCopyRate, measureLinearRate } from "./rates.ts";
import { type Sampled, SampleQueue } from "./sample_queue.ts";
import { type Fp8Input, loadCpuWeights } from "./weights.ts";

/** An activation: `rows` rows of `data.length / rows` columns. */
interface Act {
  data: Float32Array;
  rows: number;
}

type AttentionOp = Extract<Op, { kind: "attention" }>;

export class CpuBackend implements ExecutionBackend {
  readonly name = "cpu";
  readonly vocabSize: number;
  readonly kvBlockSize: number;
  readonly kvBytesPerBlock: number;
  readonly decoding = cpuDecodingOps;
  /** Unbounded: a step's logits are allocated per step. forward() still holds a step to it, so a test
   * that lowers it runs the CPU under the CUDA backend's bound. */
  readonly maxLogitRows: number = Number.POSITIVE_INFINITY;
  /** The best rates measured so far (see measureCopyBandwidth). */
  private bestCopyRate = 0;
  private bestLinearRate = 0;
  private kv: CpuKvPool | null = null;
  /** Steps queued by enqueueSample, already run, until collected. */
  private readonly queue = new SampleQueue();
  /** The step enqueueForward ran, until collected (at most one). */
  private forwarded: { id: number; logits: Float32Array } | null = null;
  private forwardTickets = 0;
  private readonly ropeCache = new Map<string, { invFreq: Float32Array; attentionScaling: number }>();

  constructor(
    private readonly model: ModelConfig,
    private readonly plan: Plan,
    private readonly weights: Map<string, Float32Array>,
    kvBlockSize: number,
    /** Linears whose (fp8) weight quantizes their input first, by weight name; the rest do not. */
    private readonly fp8Inputs: ReadonlyMap<string, Fp8Input>,
    /** How the KV pool stores K and V (backends/kv_cache_dtype.ts); fixed for the backend's life. */
    readonly kvCacheDtype: KvCacheDtype,
    /** Absent on every normal path: one undefined check per linear op. */
    private readonly observeLinear?: LinearInputObserver,
  ) {
    this.vocabSize = model.vocabSize;
    this.kvBlockSize = kvBlockSize;
    this.kvBytesPerBlock = CpuKvPool.bytesPerBlock(
      model.numLayers,
      kvBlockSize,
      model.numKvHeads,
      model.headDim,
      kvCacheDtype,
    );
  }

  static fromEngine(engine: LoadedEngine, kvCacheDtype: KvCacheDtype = "auto"): CpuBackend {
    const { tensors, fp8Inputs } = loadCpuWeights(engine);
    return new CpuBackend(
      engine.config.model,
      engine.header.plan,
      tensors,
      engine.config.build.kvBlockSize,
      fp8Inputs,
      kvCacheDtype,
    );
  }

  get deviceName(): string {
    return `CPU: ${cpus()[0]?.model ?? "unknown"} (1 thread)`;
  }

  /** Peak copy bandwidth at the size of this engine's weights (see rates.ts), measured again on each
   * call and the best kept: a measurement made while another process ran would lower it. */
  measureCopyBandwidth(): number {
    let bytes = 0;
    for (const t of this.weights.values()) bytes += t.byteLength;
    this.bestCopyRate = Math.max(this.bestCopyRate, measureCopyRate(bytes));
    return this.bestCopyRate;
  }

  /** Peak rate of the linear kernel over the plan's own linear shapes (see rates.ts), the best of
   * every call, as above. */
  measureGemmFlops(): number {
    const shapes = this.plan.ops.flatMap((op) =>
      op.kind === "linear" ? [{ k: op.inFeatures, n: op.outFeatures }] : [],
    );
    this.bestLinearRate = Math.max(this.bestLinearRate, measureLinearRate(shapes));
    return this.bestLinearRate;
  }

  get numKvBlocks(): number {
    return this.kv?.numBlocks ?? 0;
  }

  allocateKvCache(numBlocks: number): void {
    const m = this.model;
    const dtype = this.kvCacheDtype;
    this.kv = new CpuKvPool(m.numLayers, numBlocks, this.kvBlockSize, m.numKvHeads, m.headDim, dtype);
  }

  copyKvBlocks(src: readonly number[], dst: readonly number[]): void {
    if (!this.kv) throw new Error("internal: copyKvBlocks before allocateKvCache");
    this.kv.copyBlocks(src, dst);
  }

  dispose(): void {
    this.kv = null;
    this.weights.clear();
  }

  /** forward, then the built-in transforms and `sample` over the step's logit rows: what the host
   * pipeline does for a request without LogitsProcessors or generation logits, bit for bit. */
  forwardSample(step: StepInput, p: SampleParams, t: StepTransforms): Sampled {
    return this.collectSample(this.enqueueSample(step, p, t));
  }

  /** Runs the step now (its fed tokens, and the penalty lists' fed entries, read from the earlier
   * ticket's stored result); collectSample hands the result back. Same rules as the CUDA queue
   * (sample_queue.ts). */
  enqueueSample(step: StepInput, p: SampleParams, t: StepTransforms, feed?: TokenFeed): SampleTicket {
    let run = step;
    let transforms = t;
    if (feed) checkFeed(step, feed, this.queue.lastTicket);
    checkPenaltyFeed(step, t, feed);
    if (feed) {
      const sampled = this.queue.tokensOf(feed.from);
      run = { ...step, tokenIds: fedTokenIds(step, feed.rows, sampled) };
      if (t.penalties?.fed) transforms = { ...t, penalties: fedPenalties(t.penalties, sampled) };
    }
    const B = step.logitRows.length;
    const logits = this.forward(run);
    applyTransforms(this.decoding, logits, B, this.vocabSize, transforms);
    return this.queue.push(this.decoding.sample(logits, B, this.vocabSize, p));
  }

  collectSample(ticket: SampleTicket): Sampled {
    return this.queue.collect(ticket);
  }

  /** Runs the step now; collectForward hands its logits back (no forwardReady: never waits). */
  enqueueForward(step: StepInput): ForwardTicket {
    this.forwarded = null;
    const logits = this.forward(step);
    const id = this.forwardTickets++;
    this.forwarded = { id, logits };
    return { id, rows: step.logitRows.length };
  }

  collectForward(ticket: ForwardTicket): Float32Array {
    const f = this.forwarded;
    if (f?.id !== ticket.id) throw new Error(`internal: forward ticket ${ticket.id} is not outstanding`);
    this.forwarded = null;
    return f.logits;
  }

  forward(step: StepInput): Float32Array {
    if (step.logitRows.length > this.maxLogitRows) {
      throw new EngineError(
        `a step asks for ${step.logitRows.length} rows of logits; this backend returns at most ${this.maxLogitRows} per step`,
      );
    }
    const acts = new Map<string, Act>();
    const get = (name: string): Act => {
      const a = acts.get(name);
      if (!a) throw new Error(`internal: plan reads activation ${name} before it is written`);
      return a;
    };
    const w = (name: string): Float32Array => {
      const t = this.weights.get(name);
      if (!t) throw new Error(`internal: weight ${name} not loaded`);
      return t;
    };
    const T = step.tokenIds.length;
    for (const op of this.plan.ops) {
      switch (op.kind) {
        case "embedding": {
          const table = w(op.weight);
          const out = new Float32Array(T * op.width);
          for (let t = 0; t < T; t++) {
            const id = step.tokenIds[t];
            out.set(table.subarray(id * op.width, (id + 1) * op.width), t * op.width);
          }
          acts.set(op.out, { data: out, rows: T });
          break;
        }
        case "linear": {
          const x = get(op.x);
          this.observeLinear?.(op, x.data, x.rows);
          const out = new Float32Array(x.rows * op.outFeatures);
          const fp8 = this.fp8Inputs.get(op.weight);
          linear(
            fp8 ? fp8Input(x.data, op.inFeatures, fp8) : x.data,
            w(op.weight),
            op.bias ? w(op.bias) : null,
            x.rows,
            op.inFeatures,
            op.outFeatures,
            out,
          );
          acts.set(op.out, { data: out, rows: x.rows });
          break;
        }
        case "rms_norm": {
          const x = get(op.x);
          const out = new Float32Array(x.data.length);
          const g = op.groupWidth ?? op.width;
          rmsNorm(x.data, w(op.weight), op.eps, (x.rows * op.width) / g, g, out);
          acts.set(op.out, { data: out, rows: x.rows });
          break;
        }
        case "layer_norm": {
          const x = get(op.x);
          const out = new Float32Array(x.data.length);
          layerNorm(x.data, w(op.weight), w(op.bias), op.eps, x.rows, op.width, out);
          acts.set(op.out, { data: out, rows: x.rows });
          break;
        }
        case "add_rms_norm": {
          const r = get(op.residual);
          const x = get(op.x);
          const out = new Float32Array(x.data.length);
          addRmsNorm(r.data, x.data, w(op.weight), op.eps, r.rows, op.width, out);
          acts.set(op.out, { data: out, rows: r.rows });
          break;
        }
        case "add": {
          const a = get(op.a);
          const b = get(op.b);
          const out = new Float32Array(a.data.length);
          for (let i = 0; i < out.length; i++) out[i] = a.data[i] + b.data[i];
          acts.set(op.out, { data: out, rows: a.rows });
          break;
        }
        case "split": {
          const x = get(op.x);
          const total = op.widths.reduce((s, v) => s + v, 0);
          let col = 0;
          op.outs.forEach((name, i) => {
            const width = op.widths[i];
            const out = new Float32Array(x.rows * width);
            for (let r = 0; r < x.rows; r++)
              out.set(x.data.subarray(r * total + col, r * total + col + width), r * width);
            acts.set(name, { data: out, rows: x.rows });
            col += width;
          });
          break;
        }
        case "gated_act": {
          const x = get(op.gateUp);
          const out = new Float32Array(x.rows * op.width);
          gatedAct(x.data, x.rows, op.width, op.act, out);
          acts.set(op.out, { data: out, rows: x.rows });
          break;
        }
        case "gated_act2": {
          // Unfused form: interleave into [gate | up] rows and reuse the fused kernel.
          const g = get(op.gate);
          const u = get(op.up);
          const both = new Float32Array(g.rows * 2 * op.width);
          for (let r = 0; r < g.rows; r++) {
            both.set(g.data.subarray(r * op.width, (r + 1) * op.width), r * 2 * op.width);
            both.set(u.data.subarray(r * op.width, (r + 1) * op.width), (r * 2 + 1) * op.width);
          }
          const out = new Float32Array(g.rows * op.width);
          gatedAct(both, g.rows, op.width, op.act, out);
          acts.set(op.out, { data: out, rows: g.rows });
          break;
        }
        case "act": {
          const x = get(op.x);
          const out = new Float32Array(x.data.length);
          act(x.data, x.data.length, op.act, out);
          acts.set(op.out, { data: out, rows: x.rows });
          break;
        }
        case "attention":
          acts.set(op.out, { data: this.attention(op, get(op.q), get(op.k), get(op.v), step), rows: T });
          break;
        case "gather_rows": {
          const x = get(op.x);
          const R = step.logitRows.length;
          const out = new Float32Array(R * op.width);
          for (let i = 0; i < R; i++) {
            const r = step.logitRows[i];
            out.set(x.data.subarray(r * op.width, (r + 1) * op.width), i * op.width);
          }
          acts.set(op.out, { data: out, rows: R });
          break;
        }
      }
    }
    return get(this.plan.output).data;
  }

  private invFreq(op: AttentionOp, seqLen: number): { invFreq: Float32Array; attentionScaling: number } {
    // Dynamic NTK frequencies depend on the sequence length; all others are computed once.
    const dynamic = op.rope.scaling.type === "dynamic";
    const key = dynamic ? `${seqLen}` : "static";
    let r = this.ropeCache.get(key);
    if (!r) {
      r = ropeInvFreq(op.rope, seqLen);
      if (this.ropeCache.size > 4096) this.ropeCache.clear();
      this.ropeCache.set(key, r);
    }
    return r;
  }

  private attention(op: AttentionOp, qa: Act, ka: Act, va: Act, step: StepInput): Float32Array {
    if (!this.kv) throw new Error("internal: forward before allocateKvCache");
    const { numHeads: H, numKvHeads: Hkv, headDim: D } = op;
    const q = qa.data.slice(); // [T, H·D], rotated in place below
    const k = ka.data.slice(); // [T, Hkv·D]
    for (const s of step.seqs) {
      // HF computes the frequencies from the longest position in the call: contextLen here.
      const { invFreq, attentionScaling } = this.invFreq(op, s.contextLen);
      const pos = step.positions.subarray(s.queryStart, s.queryStart + s.queryLen);
      const qs = q.subarray(s.queryStart * H * D, (s.queryStart + s.queryLen) * H * D);
      const ks = k.subarray(s.queryStart * Hkv * D, (s.queryStart + s.queryLen) * Hkv * D);
      applyRope(qs, s.queryLen, H, D, op.rope.rotaryDim, pos, invFreq, attentionScaling);
      applyRope(ks, s.queryLen, Hkv, D, op.rope.rotaryDim, pos, invFreq, attentionScaling);
    }
    const T = step.tokenIds.length;
    const kc = this.kv.k[op.layer];
    const vc = this.kv.v[op.layer];
    kvCacheWrite(k, va.data, step.slotMapping, T, Hkv, D, kc, vc);
    const out = new Float32Array(T * H * D);
    pagedAttention({
      q,
      kCache: kc,
      vCache: vc,
      blockSize: this.kvBlockSize,
      numHeads: H,
      numKvHeads: Hkv,
      headDim: D,
      seqs: step.seqs,
      scale: op.scale,
      slidingWindow: op.slidingWindow,
      out,
    });
    return out;
  }
}

/** A linear's input [rows, cols] as its fp8 weight sees it: a copy quantized to E4M3 and back, per token
 * or by the static scale (fp8_format.ts). A fused linear (QKV, gate/up) is one op: one quantization. */
function fp8Input(x: Float32Array, cols: number, how: Fp8Input): Float32Array {
  const q = x.slice();
  fakeQuantizeActivations(q, cols, how.activation === "static" ? how.scale : undefined);
  return q;
}
