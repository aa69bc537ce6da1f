// The prompts' first forward step. Their KV blocks are reserved; prompts longer than the backend's
// largest step are run in chunks (chunked prefill) until the rest, every prompt's last token
// included, fits in one step.
import type { StepInput } from "../backends/backend.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import type { DecodeContext } from "./decode_context.ts";
import type { Sequence } from "./sequence.ts";
import { buildChunkStep, buildStep } from "./step_builder.ts";

/** Runs every chunk before the last and returns that last step, not yet run. */
export function prefillStep(ctx: DecodeContext, roots: Sequence[]): StepInput {
  const backend = ctx.backend;
  for (const r of roots) r.reserve(r.ids.length, ctx.alloc);
  const budget = backend.maxStepTokens;
  if (budget !== undefined) {
    if (roots.length > budget) {
      throw new InvalidArgumentError(
        `a batch of ${roots.length} prompts exceeds the engine's ${budget} tokens per step; send fewer prompts at once`,
      );
    }
    const remaining = () => roots.reduce((n, r) => n + r.ids.length - r.numComputed, 0);
    while (remaining() > budget) {
      const chunk = buildChunkStep(roots, budget - roots.length);
      if (!chunk) break;
      backend.forward(chunk.step);
      roots.forEach((r, i) => {
        r.numComputed += chunk.taken[i];
      });
    }
  }
  return buildStep(roots);
}

/** Context logits need every prompt row in one step (no chunking). */
function reserveAll(ctx: DecodeContext, roots: Sequence[]): StepInput {
  for (const r of roots) r.reserve(r.ids.length, ctx.alloc);
  return buildStep(roots);
}

/** Runs the whole prefill: every prompt's last-position logits [B, V] and, with
 * returnContextLogits, each prompt's logits of every position [promptLen, V]. */
export function prefill(
  ctx: DecodeContext,
  roots: Sequence[],
  cfg: ResolvedSamplingConfig,
): { last: Float32Array; context: Float32Array[] } {
  const backend = ctx.backend;
  const V = backend.vocabSize;
  const step = cfg.returnContextLogits ? reserveAll(ctx, roots) : prefillStep(ctx, roots);
  if (cfg.returnContextLogits)
    step.logitRows = Int32Array.from({ length: step.tokenIds.length }, (_, i) => i);
  const logits = backend.forward(step).slice();
  for (const r of roots) r.numComputed = r.ids.length;
  if (!cfg.returnContextLogits) return { last: logits, context: [] };
  const last = new Float32Array(roots.length * V);
  const context = step.seqs.map((q, i) => {
    last.set(logits.subarray((q.queryStart + q.queryLen - 1) * V, (q.queryStart + q.queryLen) * V), i * V);
    return logits.slice(q.queryStart * V, (q.queryStart + q.queryLen) * V);
  });
  return { last, context };
}
