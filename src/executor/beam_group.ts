// The beams of a beam-search request (beamWidth W > 1) as the executor decodes them: W rows per step,
// beside other requests' rows. Each step their logits become log-probs through the request's logits
// pipeline (sampling/beam_log_probs.ts, as the runtime's beams), sampling/beam_search.ts picks the W
// best (parent, token) pairs, and the scheduler turns them into branches: a parent picked twice is
// forked (its KV table shared, the partial block copied on write), one not picked is freed.
//
//   step 0: the prompt's one row stands for W identical beams (HF: beams > 0 start at −1e9)
//   step s: rows [ b0 b1 … b(W−1) ] → BeamSearch.step → branches [ (parent_k, token_k) ] for k < W
import type { DecodingOps } from "../backends/decoding_ops.ts";
import { beamLogProbs } from "../sampling/beam_log_probs.ts";
import { BeamSearch } from "../sampling/beam_search.ts";
import type { Row } from "../sampling/logits_pipeline.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { RequestCallbackError, RequestLogitsNotFiniteError } from "./errors.ts";
import type { DecodingState } from "./executor_request.ts";
import type { Request } from "./request.ts";
import type { WholeEvent } from "./request_results.ts";
import type { Branch } from "./scheduler.ts";

export type BeamStep =
  | { branches: Branch[]; beams: number[][]; finals: WholeEvent[] | null }
  | { error: unknown };

export class BeamGroup {
  private readonly search: BeamSearch;
  private steps = 0;

  /** `maxNewTokens`: the request's, capped by the context window. */
  constructor(
    private readonly state: DecodingState,
    maxNewTokens: number,
    private readonly tokenizer: Tokenizer | null,
  ) {
    const c = state.cfg;
    this.search = new BeamSearch({
      beamWidth: c.beamWidth,
      lengthPenalty: c.lengthPenalty[0],
      earlyStopping: c.earlyStopping[0],
      numReturnSequences: c.numReturnSequences,
      endIds: c.endIds,
      promptLen: state.promptIds.length,
      maxNewTokens,
      diversityRate: c.beamSearchDiversityRate[0],
    });
  }

  /** `logits`: the step's raw logits of r's sequences, [r.seqs.length × V] in row order. */
  step(r: Request, ops: DecodingOps, logits: Float32Array, V: number): BeamStep {
    const W = this.state.cfg.beamWidth;
    const first = r.seqs.length === 1;
    const seqOf = (k: number) => r.seqs[first ? 0 : k];
    const x = new Float32Array(W * V);
    for (let k = 0; k < W; k++) x.set(logits.subarray((first ? 0 : k) * V, ((first ? 0 : k) + 1) * V), k * V);
    const rows: Row[] = Array.from({ length: W }, (_, k) => {
      const ids = seqOf(k).tokens;
      return {
        promptIndex: 0,
        sequenceIndex: k,
        promptIds: this.state.promptIds,
        outputIds: ids.slice(r.promptLength),
        ids,
      };
    });
    // A processor's throw ends only this request (RequestCallbackError names it).
    const processors = this.state.processors.map((proc, i) => ({
      process: (...args: Parameters<typeof proc.process>) => {
        try {
          proc.process(...args);
        } catch (e) {
          throw new RequestCallbackError(r.id, `logitsProcessors[${i}]`, e);
        }
      },
    }));
    let lp: Float32Array;
    try {
      lp = beamLogProbs(ops, x, V, rows, this.state.cfg, [this.state.badWordIds], processors, this.steps);
    } catch (e) {
      if (e instanceof RequestCallbackError) return { error: e };
      throw e;
    }
    const { parents, tokens } = this.search.step(lp, V);
    for (const [k, p] of parents.entries()) {
      if (Number.isNaN(lp[p * V + tokens[k]]))
        return { error: new RequestLogitsNotFiniteError(r.id, this.steps, k) };
    }
    this.steps++;
    const branches = parents.map((p, k) => ({ parent: first ? 0 : p, token: tokens[k] }));
    const beams = branches.map((b, k) => [...seqOf(parents[k]).tokens.slice(r.promptLength), b.token]);
    return { branches, beams, finals: this.search.done ? this.finals() : null };
  }

  /** The returned beams, best first, as the request's last events. */
  private finals(): WholeEvent[] {
    const tok = this.tokenizer;
    const out = this.search.finalize();
    return out.map((f, rank) => ({
      sequenceIndex: rank,
      isFinal: rank === out.length - 1,
      tokenIds: f.tokens,
      logProbs: f.logProbs,
      cumLogProb: f.logProbs.reduce((a, b) => a + b, 0),
      text: tok ? tok.decode(f.tokens, { skipSpecialTokens: true }) : "",
      score: f.score,
      finishReason: f.finishReason,
    }));
  }
}
