// What a request's decoding loop works with: the backend, the tokenizer, the request's block
// allocator and the engine's context window. The GenerationSession makes one per request, after
// `setup` has started the allocator; the loops (sampling_loop.ts, beam_decode.ts) only read it.
import type { ExecutionBackend } from "../backends/backend.ts";
import type { LogitsProcessor, StoppingCriteria } from "../sampling/logits_processor.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { BlockAllocator } from "./block_allocator.ts";

export interface DecodeContext {
  readonly backend: ExecutionBackend;
  readonly tokenizer: Tokenizer | null;
  readonly alloc: BlockAllocator;
  /** The engine's longest sequence, prompt included. */
  readonly maxSeqLen: number;
}

export interface DecodeOptions {
  stoppingCriteria?: StoppingCriteria | readonly StoppingCriteria[];
  logitsProcessors?: LogitsProcessor | readonly LogitsProcessor[];
  signal?: AbortSignal;
}

/** An option that takes one value or a list, as a list. */
export const list = <T>(x: T | readonly T[] | undefined): readonly T[] =>
  x === undefined ? [] : Array.isArray(x) ? x : [x as T];

/** Lets other tasks (the consumer, timers, aborts) run between two steps. */
export const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
