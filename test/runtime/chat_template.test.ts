// Chat templates render as transformers' apply_chat_template(tokenize=False): Jinja with trim_blocks
// and lstrip_blocks, the special tokens as variables, raise_exception, and the template found where
// transformers finds it. Expected strings are derived by hand from each template (and agree with
// Python jinja2 in transformers' configuration).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  type ChatMessage,
  ChatTemplate,
  ChatTemplateError,
  encodeChat,
  NoChatTemplateError,
  strftime,
} from "../../src/runtime/chat_template.ts";
import { UnknownOptionError } from "../../src/runtime/errors.ts";
import { Tokenizer } from "../../src/tokenizer/tokenizer.ts";
import { BYTE_LEVEL_SPECIAL, byteLevelBpe, byteLevelConfig } from "../tokenizer/tiny_tokenizers.ts";

// Qwen2's ChatML template without the tool branches. `\n` inside the Jinja strings are Jinja escapes.
const CHATML = String.raw`{%- for message in messages %}
    {%- if loop.first and message.role != 'system' %}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
    {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
`;

// Llama 2's template as its tokenizer_config.json had it.
const LLAMA2 = String.raw`{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}`;

// Plain text between block tags: indentation before a tag (lstrip_blocks) and the newline after one
// (trim_blocks) go; the template's final newline goes too (keep_trailing_newline=False).
const LINES = `{% for m in messages %}
  {% if m.role == 'user' %}
Q: {{ m.content }}
  {% else %}
A: {{ m.content }}
  {% endif %}
{% endfor %}
{% if add_generation_prompt %}
A:{% endif %}
`;

const user = (content: string): ChatMessage => ({ role: "user", content });
const assistant = (content: string): ChatMessage => ({ role: "assistant", content });
const system = (content: string): ChatMessage => ({ role: "system", content });

describe("ChatTemplate.render", () => {
  test("ChatML (Qwen style): default system message, generation prompt on and off", () => {
    const t = new ChatTemplate(CHATML);
    const head = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
    assert.equal(t.render([user("Hi")]), `${head}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`);
    assert.equal(
      t.render([user("Hi")], { addGenerationPrompt: false }),
      `${head}<|im_start|>user\nHi<|im_end|>\n`,
    );
    assert.equal(
      t.render([system("Be terse."), user("Hi"), assistant("Hello."), user("Bye")]),
      "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" +
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  test("Llama 2 [INST]: system folded into the first turn, bos/eos tokens, strip()", () => {
    const t = new ChatTemplate(LLAMA2, { bosToken: "<s>", eosToken: "</s>" });
    const messages = [system("Be brief."), user("Hi"), assistant(" Hello! "), user(" Bye ")];
    const expected = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]";
    assert.equal(t.render(messages), expected);
    // This template ignores add_generation_prompt.
    assert.equal(t.render(messages, { addGenerationPrompt: false }), expected);
    assert.equal(t.render([user("Hi")]), "<s>[INST] Hi [/INST]");
  });

  test("raise_exception in the template → ChatTemplateError with the template's message", () => {
    const t = new ChatTemplate(LLAMA2, { bosToken: "<s>", eosToken: "</s>" }, "llama2 template");
    assert.throws(
      () => t.render([user("a"), user("b")]),
      (e: unknown) =>
        e instanceof ChatTemplateError &&
        e.message ===
          "llama2 template raised: Conversation roles must alternate user/assistant/user/assistant/...",
    );
  });

  test("trim_blocks, lstrip_blocks and the dropped final newline, as transformers' Jinja environment", () => {
    const t = new ChatTemplate(LINES);
    assert.equal(t.render([user("hi"), assistant("yo")]), "Q: hi\nA: yo\nA:");
    assert.equal(t.render([user("hi"), assistant("yo")], { addGenerationPrompt: false }), "Q: hi\nA: yo\n");
  });

  test("special tokens that are not set render as nothing; extra variables reach the template", () => {
    const src = "[{{ bos_token }}|{{ pad_token }}|{{ unk_token }}]{% if enable_thinking %}think{% endif %}";
    assert.equal(new ChatTemplate(src, { bosToken: "<s>" }).render([]), "[<s>||]");
    assert.equal(new ChatTemplate(src).render([], { extra: { enable_thinking: true } }), "[||]think");
    // tools is None, as in transformers: "is none" holds and "if tools" is false.
    assert.equal(new ChatTemplate("{% if tools is none %}no tools{% endif %}").render([]), "no tools");
  });

  test("strftime_now and range are available", () => {
    const out = new ChatTemplate("{{ strftime_now('%d %b %Y') }}|{{ range(3) | join(',') }}").render([]);
    assert.match(out, /^\d\d [A-Z][a-z]{2} \d{4}\|0,1,2$/);
  });

  test("a template that does not parse, or a message without a role, is a ChatTemplateError", () => {
    assert.throws(
      () => new ChatTemplate("{% if %}", {}, "bad.jinja"),
      /bad\.jinja is not a valid Jinja template/,
    );
    const t = new ChatTemplate(CHATML);
    assert.throws(() => t.render([{ content: "x" } as unknown as ChatMessage]), ChatTemplateError);
  });
});

describe("strftime (C locale, as Python's)", () => {
  const d = new Date(2024, 2, 5, 14, 7, 9); // local time, as datetime.now()
  test("directives", () => {
    assert.equal(strftime(d, "%d %b %Y"), "05 Mar 2024");
    assert.equal(strftime(d, "%A %B %-d, %y %H:%M:%S %I%p %j %%"), "Tuesday March 5, 24 14:07:09 02PM 065 %");
    assert.equal(strftime(d, "%Q"), "%Q");
  });
});

describe("ChatTemplate.fromDir: where transformers finds the template", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  function modelDir(config: Record<string, unknown> | null, files: Record<string, string> = {}): string {
    const dir = mkdtempSync(join(tmpdir(), "kiln-chat-template-"));
    dirs.push(dir);
    if (config) writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  }
  const tokens = "{{ bos_token }}{{ eos_token }}{% for m in messages %}{{ m.content }}{% endfor %}";

  test("chat_template string with special tokens in AddedToken object form", () => {
    const dir = modelDir({
      bos_token: { content: "<s>", __type: "AddedToken" },
      eos_token: "</s>",
      chat_template: tokens,
    });
    assert.equal(ChatTemplate.fromDir(dir).render([user("x")]), "<s></s>x");
  });

  test("list-form chat_template: the entry named default", () => {
    const dir = modelDir({
      chat_template: [
        { name: "tool_use", template: "TOOLS" },
        { name: "default", template: "DEFAULT{{ messages | length }}" },
      ],
    });
    assert.equal(ChatTemplate.fromDir(dir).render([user("a"), user("b")]), "DEFAULT2");
  });

  test("list-form with no default entry → NoChatTemplateError naming the templates", () => {
    const dir = modelDir({ chat_template: [{ name: "tool_use", template: "TOOLS" }] });
    assert.throws(() => ChatTemplate.fromDir(dir), NoChatTemplateError);
    assert.throws(() => ChatTemplate.fromDir(dir), /tool_use/);
  });

  test("no template → NoChatTemplateError that says what to do", () => {
    for (const dir of [modelDir({ eos_token: "</s>" }), modelDir(null)]) {
      assert.throws(
        () => ChatTemplate.fromDir(dir),
        (e: unknown) =>
          e instanceof NoChatTemplateError &&
          e.message.includes("tokenizer_config.json has no chat_template") &&
          e.message.includes("--prompt") &&
          e.message.includes("--chat-template FILE"),
      );
    }
  });

  test("chat_template.jinja wins over tokenizer_config's; a template file wins over both", () => {
    const dir = modelDir(
      { bos_token: "<s>", chat_template: "CONFIG" },
      { "chat_template.jinja": "JINJA{{ bos_token }}\n" },
    );
    assert.equal(ChatTemplate.fromDir(dir).render([]), "JINJA<s>");
    const file = join(dir, "mine.jinja");
    writeFileSync(file, "MINE{{ bos_token }}");
    assert.equal(ChatTemplate.fromDir(dir, { templateFile: file }).render([]), "MINE<s>");
    // A file given for a model without any template.
    assert.equal(ChatTemplate.fromDir(modelDir(null), { templateFile: file }).render([]), "MINE");
  });

  test("an unreadable template file → ChatTemplateError naming it", () => {
    const dir = modelDir({ chat_template: "x" });
    assert.throws(() => ChatTemplate.fromDir(dir, { templateFile: join(dir, "nope.jinja") }), /nope\.jinja/);
  });

  test("special_tokens_map.json fills tokens tokenizer_config.json does not set", () => {
    const dir = modelDir(
      { chat_template: tokens },
      { "special_tokens_map.json": JSON.stringify({ bos_token: "<B>", eos_token: { content: "<E>" } }) },
    );
    assert.equal(ChatTemplate.fromDir(dir).render([]), "<B><E>");
  });
});

describe("encodeChat", () => {
  const { bos, eos } = BYTE_LEVEL_SPECIAL;
  const template = `{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}`;
  const tok = Tokenizer.fromJson(byteLevelBpe(), { ...byteLevelConfig(), chat_template: template });

  test("the rendered text is tokenized without added special tokens: one BOS, the template's", () => {
    const ids = encodeChat(tok, [user("hello world")]);
    const bosId = tok.tokenToId(bos)!;
    assert.deepEqual(ids, [bosId, tok.tokenToId("hello"), tok.tokenToId("Ġworld"), tok.tokenToId(eos)]);
    // The post-processor would have added a second BOS.
    assert.deepEqual(tok.encode(`${bos}hello world${eos}`).ids.slice(0, 2), [bosId, bosId]);
  });

  test("fromTokenizer recovers the special-token strings from the ids", () => {
    assert.equal(ChatTemplate.fromTokenizer(tok).render([user("x")]), `${bos}x${eos}`);
    const explicit = new ChatTemplate("[{{ messages[0].content }}]");
    assert.deepEqual(
      encodeChat(tok, [user("hello")], { template: explicit }),
      tok.encode("[hello]", { addSpecialTokens: false }).ids,
    );
  });

  test("misspelt option keys are refused with the nearest known key, not ignored", () => {
    const opts = { addGenerationPrompts: false } as object;
    const hint = /has no option "addGenerationPrompts"; did you mean "addGenerationPrompt"\?/;
    assert.throws(() => new ChatTemplate(template).render([user("x")], opts), UnknownOptionError);
    assert.throws(() => new ChatTemplate(template).render([user("x")], opts), hint);
    assert.throws(() => encodeChat(tok, [user("x")], opts), hint);
    assert.throws(() => ChatTemplate.fromTokenizer(tok, { templatefile: "x" } as object), /"templateFile"/);
    assert.throws(
      () => ChatTemplate.fromDir("/nonexistent", { template: "x" } as object),
      /TemplateSourceOptions has no option "template"; its options are "templateFile"$/,
    );
  });

  test("a tokenizer without a template → NoChatTemplateError", () => {
    const bare = Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig());
    assert.throws(() => encodeChat(bare, [user("x")]), NoChatTemplateError);
  });
});
