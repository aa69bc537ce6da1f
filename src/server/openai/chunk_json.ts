// The JSON text of streamed chunks, built from pre-serialised fixed parts: every chunk of a response
// shares its id, object, created and model (and `"usage":null` with include_usage), so only the choice
// is serialised per token. The text is what JSON.stringify gives for the chunk object, key order
// included:
//   {"id":…,"object":…,"created":…,"model":…,"choices":[<choice>]}        (,"usage":null before the })
export interface ChunkFixed {
  id: string;
  object: string;
  created: number;
  model: string;
}

export class ChunkJson {
  private readonly head: string;
  private readonly tail: string;

  constructor(fixed: ChunkFixed, usageNull: boolean) {
    const { id, object, created, model } = fixed; // only these keys, in this order
    this.head = `${JSON.stringify({ id, object, created, model }).slice(0, -1)},"choices":[`;
    this.tail = usageNull ? '],"usage":null}' : "]}";
  }

  /** A chunk of one choice, given as JSON text. */
  of(choiceJson: string): string {
    return this.head + choiceJson + this.tail;
  }
}

/** JSON text of a /v1/completions streamed choice {index, text, logprobs, finish_reason}. */
export function completionChoiceJson(
  index: number,
  text: string,
  logprobs: unknown,
  finishReason: string | null,
): string {
  return `{"index":${index},"text":${JSON.stringify(text)},"logprobs":${JSON.stringify(logprobs)},"finish_reason":${JSON.stringify(finishReason)}}`;
}

/** JSON text of a /v1/chat/completions streamed choice {index, delta, logprobs, finish_reason}, its
 * delta given as JSON text. */
export function chatChoiceJson(
  index: number,
  deltaJson: string,
  logprobs: unknown,
  finishReason: string | null,
): string {
  return `{"index":${index},"delta":${deltaJson},"logprobs":${JSON.stringify(logprobs)},"finish_reason":${JSON.stringify(finishReason)}}`;
}
