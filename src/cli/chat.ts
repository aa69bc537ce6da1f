// `kiln chat`: a conversation with a model through its chat template. On a terminal it is interactive
// (prompt "> ", replies streamed token by token, Ctrl-C stops a reply, /reset, /exit or Ctrl-D);
// with stdin piped, every line is a user turn and each reply is printed on its own line.
import { createInterface } from "node:readline";
import type { Command } from "commander";
import { KilnError } from "../errors.ts";
import { type ChatMessage, ChatTemplate, encodeChat } from "../runtime/chat_template.ts";
import { type GenerateOptions, ModelRunner } from "../runtime/model_runner.ts";
import { choiceArg, defaultModelDir, floatArg, intArg, modelDirArg } from "./args.ts";
import {
  type KvCacheFlags,
  kvCacheFromFlags,
  kvFractionOption,
  maxKvTokensOption,
} from "./kv_cache_flags.ts";

interface ChatFlags extends KvCacheFlags {
  model?: string;
  system?: string;
  chatTemplate?: string;
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  greedy?: boolean;
  backend?: "cpu" | "cuda";
  cacheDir?: string;
}

export function registerChat(program: Command): void {
  program
    .command("chat")
    .description(
      "chat with a model through its chat template (interactive on a terminal, one turn per line when piped)",
    )
    .option("--model <dir>", "checkpoint or engine directory (default: the bundled model)", modelDirArg)
    .option("--system <text>", "system message that starts the conversation")
    .option("--chat-template <file>", "Jinja chat template file to use instead of the model's")
    .option("--max-new-tokens <n>", "tokens per reply at most", intArg("--max-new-tokens", 1), 256)
    .option("--temperature <t>", "sampling temperature", floatArg("--temperature"))
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", intArg("--top-k", 0))
    .option("--top-p <p>", "nucleus sampling mass", floatArg("--top-p"))
    .option("--seed <s>", "random seed (same seed, same replies)", intArg("--seed", 0))
    .option("--greedy", "greedy decoding (argmax)")
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option("--cache-dir <dir>", "engine cache directory")
    .addOption(kvFractionOption())
    .addOption(maxKvTokensOption())
    .action(async (flags: ChatFlags) => chatCommand(flags));
}

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

async function chatCommand(f: ChatFlags): Promise<void> {
  const dir = f.model ?? defaultModelDir();
  // Read the template first: a model without one fails before its engine is built.
  const template = ChatTemplate.fromDir(
    dir,
    f.chatTemplate !== undefined ? { templateFile: f.chatTemplate } : {},
  );
  const runner = ModelRunner.fromDir(dir, {
    ...(f.backend ? { backend: f.backend } : {}),
    ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
    kvCache: kvCacheFromFlags(f),
  });
  try {
    const options: GenerateOptions = {
      maxNewTokens: f.maxNewTokens,
      ...(f.greedy ? { greedy: true } : {}),
      ...(f.temperature !== undefined ? { temperature: f.temperature } : {}),
      ...(f.topK !== undefined ? { topK: f.topK } : {}),
      ...(f.topP !== undefined ? { topP: f.topP } : {}),
      ...(f.seed !== undefined ? { seed: f.seed } : {}),
    };
    await chatLoop(runner, template, options, f.system);
  } finally {
    runner.dispose();
  }
}

async function chatLoop(
  runner: ModelRunner,
  template: ChatTemplate,
  options: GenerateOptions,
  system?: string,
): Promise<void> {
  const interactive = process.stdin.isTTY === true;
  const out = process.stdout;
  const rl = createInterface({
    input: process.stdin,
    ...(interactive ? { output: out, prompt: "> " } : {}),
    terminal: interactive,
  });
  const start: ChatMessage[] = system !== undefined ? [{ role: "system", content: system }] : [];
  const history = [...start];
  let generating: AbortController | null = null;
  let quitting = false;
  // On a terminal readline turns Ctrl-C into this event: it stops a reply; at the prompt it clears
  // the line, and a second one in a row quits (as node's REPL).
  rl.on("SIGINT", () => {
    if (generating) return generating.abort();
    if (quitting) return rl.close();
    quitting = true;
    rl.write(null, { ctrl: true, name: "u" });
    out.write("\n(to quit, press Ctrl-C again or Ctrl-D, or type /exit)\n");
    rl.prompt();
  });
  if (interactive) {
    out.write("kiln chat: /reset clears the conversation, /exit or Ctrl-D quits, Ctrl-C stops a reply\n");
    rl.prompt();
  }
  for await (const raw of rl) {
    quitting = false;
    const line = raw.trim();
    if (line === "/exit") break;
    if (line === "/reset") {
      history.splice(0, history.length, ...start);
      if (interactive) out.write("(conversation cleared)\n");
    }
    if (line !== "" && line !== "/reset") {
      history.push({ role: "user", content: line });
      generating = new AbortController();
      try {
        const reply = await streamReply(runner, template, history, { ...options, signal: generating.signal });
        history.push({ role: "assistant", content: reply });
      } catch (err) {
        // Piped input stops at the first error; a terminal session reports it and goes on.
        if (!interactive || !(err instanceof KilnError)) throw err;
        history.pop();
        out.write(`\nkiln: ${err.name}: ${err.message} (/reset starts over)\n`);
      } finally {
        generating = null;
      }
    }
    if (interactive) rl.prompt();
  }
  rl.close();
}

/** Streams the assistant's reply to stdout (then a newline) and returns its text. An aborted reply
 * keeps what was generated so far, so the history matches what the user saw. */
async function streamReply(
  runner: ModelRunner,
  template: ChatTemplate,
  history: readonly ChatMessage[],
  options: GenerateOptions & { signal: AbortSignal },
): Promise<string> {
  const ids = encodeChat(runner.tokenizer, history, { template });
  let reply = "";
  try {
    for await (const event of runner.stream({ ids }, options)) {
      process.stdout.write(event.text);
      reply += event.text;
      // A decode step is synchronous work: yield to the event loop so a Ctrl-C keypress is seen.
      await new Promise((resolve) => setImmediate(resolve));
    }
  } catch (err) {
    if (!options.signal.aborted) throw err;
    process.stdout.write(" [stopped]");
  }
  process.stdout.write("\n");
  return reply;
}
