// Chat templates: a conversation (a list of {role, content} messages) → the prompt text, rendered from
// the model's Jinja chat template through @huggingface/jinja exactly as transformers'
// `apply_chat_template(messages, tokenize=False)` does, then → token ids as transformers tokenizes it.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { KilnError } from "../errors.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import { TokenizerError } from "../tokenizer/errors.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { isRecord, parseTokenizerConfig } from "../tokenizer/tokenizer_config.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | (string & {});
  content: string;
}

/** A chat template that cannot be read, parsed or rendered, or that called raise_exception. */
export class ChatTemplateError extends KilnError {}

/** The model has no chat template (tokenizer_config.json has no chat_template, no chat_template.jinja). */
export class NoChatTemplateError extends KilnError {}

/** The special tokens a template sees as bos_token, eos_token, pad_token, unk_token (strings). */
export interface SpecialTokenStrings {
  bosToken?: string | null;
  eosToken?: string | null;
  padToken?: string | null;
  unkToken?: string | null;
}

export interface RenderOptions {
  /** End with the header of an assistant turn (default true; transformers' default is false). */
  addGenerationPrompt?: boolean;
  /** More template variables, as apply_chat_template's **kwargs (e.g. enable_thinking). */
  extra?: Record<string, unknown>;
}

export interface TemplateSourceOptions {
  /** A Jinja file that replaces the model's template (the CLI's --chat-template FILE). */
  templateFile?: string;
}

const RENDER_OPTION_KEYS: KeySet<RenderOptions> = { addGenerationPrompt: true, extra: true };
const TEMPLATE_SOURCE_OPTION_KEYS: KeySet<TemplateSourceOptions> = { templateFile: true };

const NO_TEMPLATE_FIX =
  "pass a plain --prompt instead (kiln run without --chat), or give --chat-template FILE with a Jinja chat template";

export class ChatTemplate {
  private readonly parsed: Template["parsed"];
  private readonly tokens: Record<string, string>;

  /** `origin` names the template in error messages (a file, or "DIR/tokenizer_config.json"). */
  constructor(
    readonly source: string,
    specialTokens: SpecialTokenStrings = {},
    readonly origin = "the chat template",
  ) {
    try {
      this.parsed = new Template(source).parsed;
    } catch (err) {
      throw new ChatTemplateError(
        `${origin} is not a valid Jinja template (${reason(err)}); fix it or give --chat-template FILE`,
        { cause: err },
      );
    }
    // transformers passes special_tokens_map, which holds only the tokens that are set.
    const entries = {
      bos_token: specialTokens.bosToken,
      eos_token: specialTokens.eosToken,
      pad_token: specialTokens.padToken,
      unk_token: specialTokens.unkToken,
    };
    this.tokens = Object.fromEntries(
      Object.entries(entries).filter((e): e is [string, string] => typeof e[1] === "string"),
    );
  }

  /**
   * The template of a checkpoint or engine directory, with the exact special-token strings of its
   * tokenizer_config.json (else special_tokens_map.json). Precedence as transformers: the file given,
   * then chat_template.jinja, then tokenizer_config's chat_template (a string, or the entry named
   * "default" of a list).
   */
  static fromDir(dir: string, options: TemplateSourceOptions = {}): ChatTemplate {
    rejectUnknownKeys("TemplateSourceOptions", options, TEMPLATE_SOURCE_OPTION_KEYS);
    const { templateFile } = options;
    const configPath = join(dir, "tokenizer_config.json");
    const raw = existsSync(configPath) ? readJson(configPath) : {};
    const config = parseTokenizerConfig(raw, configPath);
    const mapPath = join(dir, "special_tokens_map.json");
    const map = existsSync(mapPath) ? parseTokenizerConfig(readJson(mapPath), mapPath) : null;
    const tokens: SpecialTokenStrings = {
      bosToken: config.bosToken ?? map?.bosToken,
      eosToken: config.eosToken ?? map?.eosToken,
      padToken: config.padToken ?? map?.padToken,
      unkToken: config.unkToken ?? map?.unkToken,
    };
    if (templateFile !== undefined)
      return new ChatTemplate(readTemplateFile(templateFile), tokens, templateFile);
    const jinjaPath = join(dir, "chat_template.jinja");
    if (existsSync(jinjaPath)) return new ChatTemplate(readTemplateFile(jinjaPath), tokens, jinjaPath);
    if (config.chatTemplate === null) {
      const named = Array.isArray(raw.chat_template)
        ? ` (its chat_template list has only named templates: ${raw.chat_template.map((t) => t.name).join(", ")}, no "default")`
        : "";
      throw new NoChatTemplateError(
        `the model's ${configPath} has no chat_template${named} and there is no ${jinjaPath}; ${NO_TEMPLATE_FIX}`,
      );
    }
    return new ChatTemplate(config.chatTemplate, tokens, `the chat_template of ${configPath}`);
  }

  /**
   * The template of a loaded Tokenizer. Its special-token strings are recovered from the token ids
   * (bos from bosTokenId, eos from the last of eosTokenIds, where the tokenizer puts tokenizer_config's
   * eos_token; no unk_token): right for nearly every model, but `fromDir` reads the exact strings.
   */
  static fromTokenizer(tokenizer: Tokenizer, options: TemplateSourceOptions = {}): ChatTemplate {
    rejectUnknownKeys("TemplateSourceOptions", options, TEMPLATE_SOURCE_OPTION_KEYS);
    const { templateFile } = options;
    const token = (id: number | null | undefined) =>
      id === null || id === undefined ? null : tokenizer.idToToken(id);
    const tokens: SpecialTokenStrings = {
      bosToken: token(tokenizer.bosTokenId),
      eosToken: token(tokenizer.eosTokenIds.at(-1)),
      padToken: token(tokenizer.padTokenId),
    };
    if (templateFile !== undefined)
      return new ChatTemplate(readTemplateFile(templateFile), tokens, templateFile);
    if (tokenizer.chatTemplate === null) {
      throw new NoChatTemplateError(
        `the model's tokenizer_config.json has no chat_template; ${NO_TEMPLATE_FIX}`,
      );
    }
    return new ChatTemplate(tokenizer.chatTemplate, tokens, "the model's chat_template");
  }

  /** The prompt text, as transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt). */
  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    rejectUnknownKeys("RenderOptions", options, RENDER_OPTION_KEYS);
    const { addGenerationPrompt = true, extra = {} } = options;
    messages.forEach((m, i) => {
      if (!isRecord(m) || typeof m.role !== "string" || typeof m.content !== "string") {
        throw new ChatTemplateError(
          `message ${i} is ${JSON.stringify(m)}; each message must be {"role": string, "content": string}`,
        );
      }
    });
    // The globals of transformers' Jinja environment, built here because @huggingface/jinja's
    // Template.render refuses to redefine its own raise_exception and (locale-dependent) strftime_now.
    const variables: Record<string, unknown> = {
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      range: pythonRange,
      raise_exception: (message: unknown) => {
        throw new ChatTemplateError(`${this.origin} raised: ${String(message)}`);
      },
      strftime_now: (format: unknown) => strftime(new Date(), String(format)),
      ...this.tokens,
      tools: null,
      documents: null,
      ...extra,
      messages,
      add_generation_prompt: addGenerationPrompt,
    };
    const env = new Environment();
    for (const [name, value] of Object.entries(variables)) env.set(name, value);
    try {
      return String(new Interpreter(env).run(this.parsed).value);
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw new ChatTemplateError(
        `${this.origin} failed to render (${reason(err)}); fix the template or give --chat-template FILE`,
        { cause: err },
      );
    }
  }
}

export interface EncodeChatOptions extends RenderOptions {
  /** Default: ChatTemplate.fromTokenizer(tokenizer). */
  template?: ChatTemplate;
}

/**
 * The conversation's prompt ids. Like transformers' apply_chat_template(tokenize=True), the rendered
 * text is encoded with add_special_tokens=False: the template writes BOS itself (`{{ bos_token }}`),
 * so letting the post-processor add one too would give two. A template without bos_token gives none.
 */
export function encodeChat(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: EncodeChatOptions = {},
): number[] {
  rejectUnknownKeys("EncodeChatOptions", options, { template: true }, RENDER_OPTION_KEYS);
  const { template, ...render } = options;
  const text = (template ?? ChatTemplate.fromTokenizer(tokenizer)).render(messages, render);
  return tokenizer.encode(text, { addSpecialTokens: false }).ids;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function readTemplateFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new ChatTemplateError(
      `cannot read the chat template file ${path} (${reason(err)}); pass a readable Jinja file`,
      { cause: err },
    );
  }
}

function readJson(path: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new TokenizerError(`${path} is not readable JSON (${reason(err)}); download the checkpoint again`, {
      cause: err,
    });
  }
  if (!isRecord(json))
    throw new TokenizerError(`${path} must hold a JSON object; download the checkpoint again`);
  return json;
}

/** Python's range(stop) / range(start, stop[, step]). */
function pythonRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new ChatTemplateError("range() step must not be zero");
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/** Python's datetime.now().strftime(format) in the C locale (what Llama 3's "%d %b %Y" expects);
 * glibc's "%-d" (no padding) too. Unknown directives are left as written. */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const hour12 = date.getHours() % 12 || 12;
  const dayOfYear = Math.floor(
    (Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) /
      86_400_000,
  );
  const values: Record<string, [number | string, number]> = {
    a: [DAYS[date.getDay()].slice(0, 3), 0],
    A: [DAYS[date.getDay()], 0],
    b: [MONTHS[date.getMonth()].slice(0, 3), 0],
    B: [MONTHS[date.getMonth()], 0],
    d: [date.getDate(), 2],
    m: [date.getMonth() + 1, 2],
    y: [date.getFullYear() % 100, 2],
    Y: [date.getFullYear(), 0],
    H: [date.getHours(), 2],
    I: [hour12, 2],
    M: [date.getMinutes(), 2],
    S: [date.getSeconds(), 2],
    p: [date.getHours() < 12 ? "AM" : "PM", 0],
    j: [dayOfYear + 1, 3],
  };
  return format.replace(/%(-?)([a-zA-Z%])/g, (whole, noPad: string, d: string) => {
    if (d === "%") return noPad ? whole : "%";
    const v = values[d];
    if (v === undefined) return whole;
    const [value, width] = v;
    return typeof value === "number" && !noPad ? pad(value, width) : String(value);
  });
}
