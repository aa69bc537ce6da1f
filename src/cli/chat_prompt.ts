// The prompt of `kiln run --chat`: one user turn (after an optional system message) through the
// model's chat template. Its own file so that run does not import the chat command.
import { type ChatMessage, type ChatTemplate, encodeChat } from "../runtime/chat_template.ts";
import type { ModelRunner } from "../runtime/model_runner.ts";

/** A one-turn conversation: the system message (if any), then the user's text. */
function conversation(text: string, system?: string): ChatMessage[] {
  return [
    ...(system !== undefined ? [{ role: "system", content: system }] : []),
    { role: "user", content: text },
  ];
}

/** Prompt ids of a single-turn chat (for `kiln run --chat`): the chat template rendered with the
 * generation prompt, tokenized without added special tokens (the template writes BOS). */
export function chatPromptFromText(
  runner: ModelRunner,
  template: ChatTemplate,
  text: string,
  system?: string,
): number[] {
  return encodeChat(runner.tokenizer, conversation(text, system), { template });
}
