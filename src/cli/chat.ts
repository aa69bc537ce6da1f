// `kiln chat`: a conversation with a model through its chat template. On a terminal it is interactive
// (prompt "> ", replies streamed token by token, Ctrl-C stops a reply, /reset, /exit or Ctrl-D);
// with stdin piped, every line is a user turn and each reply is printed followed by a blank line (blank
// lines inside a reply are printed as one newline, so a blank line always ends a turn). When the
// conversation outgrows the context window, the oldest turns are dropped (the system message stays).
import { createInterface } from "node:readline";
import type { Command } from "commander";
import { isEngineDir } from "../engine/reader.ts";
import { KilnError } from "../errors.ts";
import { type ChatMessage, ChatTemplate, encodeChat } from "../runtime/chat_template.ts";
import { type GenerateOptions, ModelRunner } from "../runtime/model_runner.ts";
import { choiceArg, defaultModelDir, intArg, modelDirArg } from "./args.ts";
import { addDecodingOptions, type DecodingFlags, decodingOptionsFromFlags } from "./decoding_flags.ts";
import { checkRunFlags } from "./flag_conflicts.ts";
import { whileInterruptible } from "./interruptible.ts";
import {
  type KvCacheFlags,
  kvCacheDtypeOption,
  kvCacheFromFlags,
  kvFractionOption,
  maxKvTokensOption,
} from "./kv_cache_flags.ts";
import {
  type CalibrationFlags,
  calibrationBuild,
  calibrationOptions,
  type QuantizeFlag,
  quantizeOption,
} from "./quantize_flag.ts";

interface ChatFlags extends DecodingFlags, KvCacheFlags, CalibrationFlags {
  model?: string;
  system?: string;
  chatTemplate?: string;
  maxNewTokens: number;
  dtype?: "fp32" | "fp16" | "bf16";
  quantize?: QuantizeFlag;
  backend?: "cpu" | "cuda";
  cacheDir?: string;
}

export function registerChat(program: Command): void {
  const cmd = program
    .command("chat")
    .description(
      "chat with a model through its chat template (interactive on a terminal, one turn per line when piped)",
    )
    .option("--model <dir>", "checkpoint or engine directory (default: the bundled model)", modelDirArg)
    .option("--system <text>", "system message that starts the conversation")
    .option("--chat-template <file>", "Jinja chat template file to use instead of the model's")
    .option("--max-new-tokens <n>", "tokens per reply at most", intArg("--max-new-tokens", 1), 256);
  addDecodingOptions(cmd, { whole: false })
    .option(
      "--dtype <dtype>",
      "weight dtype of the built engine",
      choiceArg("--dtype", ["fp32", "fp16", "bf16"] as const),
    )
    .addOption(quantizeOption())
    .addOption(calibrationOptions()[0])
    .addOption(calibrationOptions()[1])
    .option("--backend <backend>", "execution backend", choiceArg("--backend", ["cpu", "cuda"] as const))
    .option("--cache-dir <dir>", "engine cache directory")
    .addOption(kvFractionOption())
    .addOption(maxKvTokensOption())
    .addOption(kvCacheDtypeOption())
    .action(async (flags: ChatFlags) => chatCommand(flags));
}

async function chatCommand(f: ChatFlags): Promise<void> {
  const dir = f.model ?? defaultModelDir();
  // The same contradictions as run's are refused before any work (chat always uses its template).
  for (const w of checkRunFlags({ ...f, chat: true }, dir, isEngineDir(dir)))
    process.stderr.write(`kiln: warning: ${w}\n`);
  // Read the template first: a model without one fails before its engine is built.
  const template = ChatTemplate.fromDir(
    dir,
    f.chatTemplate !== undefined ? { templateFile: f.chatTemplate } : {},
  );
  const runner = await whileInterruptible((signal) =>
    ModelRunner.load(
      dir,
      {
        ...(f.backend ? { backend: f.backend } : {}),
        ...(f.dtype ? { dtype: f.dtype } : {}),
        ...(f.quantize ? { quantize: f.quantize } : {}),
        ...calibrationBuild(f),
        ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
        kvCache: kvCacheFromFlags(f),
      },
      signal,
    ),
  );
  try {
    const options = { ...decodingOptionsFromFlags(f), maxNewTokens: f.maxNewTokens };
    await chatLoop(runner, template, options, f.system);
  } finally {
    runner.dispose();
  }
}

/**
 * Drops the oldest turns (a user message and the replies after it) that follow the leading system
 * messages until `promptTokens(history)` is at most `limit`; the newest message is always kept.
 * Edits `history` in place and returns how many messages were dropped.
 */
export function dropOldestTurns(
  history: ChatMessage[],
  promptTokens: (messages: readonly ChatMessage[]) => number,
  limit: number,
): number {
  let first = 0;
  while (first < history.length && history[first].role === "system") first++;
  let dropped = 0;
  while (first < history.length - 1 && promptTokens(history) > limit) {
    let end = first + 1; // the turn's user message, then everything up to the next user message
    while (end < history.length - 1 && history[end].role !== "user") end++;
    history.splice(first, end - first);
    dropped += end - first;
  }
  return dropped;
}

async function chatLoop(
  runner: ModelRunner,
  template: ChatTemplate,
  options: GenerateOptions & { maxNewTokens: number },
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
  // The prompt leaves room for a whole reply, or half the window when replies may be longer.
  const window = runner.maxSeqLen;
  const limit = window - Math.min(options.maxNewTokens, Math.floor(window / 2));
  const promptTokens = (m: readonly ChatMessage[]) => encodeChat(runner.tokenizer, m, { template }).length;
  let toldDropping = false;
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
        if (dropOldestTurns(history, promptTokens, limit) > 0 && !toldDropping) {
          toldDropping = true;
          process.stderr.write(
            `kiln chat: the conversation outgrew the context window of ${window} tokens; ` +
              "dropping the oldest turns to make room (the system message is kept)\n",
          );
        }
        const reply = await streamReply(runner, template, history, {
          ...options,
          signal: generating.signal,
          piped: !interactive,
        });
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

/** Streams the assistant's reply to stdout (then a newline; piped, a blank line) and returns its text.
 * An aborted reply keeps what was generated so far, so the history matches what the user saw. */
async function streamReply(
  runner: ModelRunner,
  template: ChatTemplate,
  history: readonly ChatMessage[],
  { piped, ...options }: GenerateOptions & { signal: AbortSignal; piped: boolean },
): Promise<string> {
  const ids = encodeChat(runner.tokenizer, history, { template });
  let reply = "";
  // Piped: no empty line inside a reply (none at its start either), so a blank line ends the turn.
  let atLineStart = true;
  const write = (text: string) => {
    if (!piped) return process.stdout.write(text);
    let kept = "";
    for (const ch of text) {
      if (ch === "\n" && atLineStart) continue;
      kept += ch;
      atLineStart = ch === "\n";
    }
    process.stdout.write(kept);
  };
  try {
    for await (const event of runner.stream({ ids }, options)) {
      write(event.text);
      reply += event.text;
      // A decode step is synchronous work: yield to the event loop so a Ctrl-C keypress is seen.
      await new Promise((resolve) => setImmediate(resolve));
    }
  } catch (err) {
    if (!options.signal.aborted) throw err;
    write(" [stopped]");
  }
  process.stdout.write(piped ? (atLineStart ? "\n" : "\n\n") : "\n");
  return reply;
}
