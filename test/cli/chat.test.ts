// `kiln chat` with piped stdin: every line is a user turn, each reply is printed followed by a blank
// line, and each reply is what `kiln run` generates from the ids of the conversation so far. A
// conversation longer than the context window drops its oldest turns and goes on.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { dropOldestTurns } from "../../src/cli/chat.ts";
import { type ChatMessage, ChatTemplate, encodeChat } from "../../src/runtime/chat_template.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { Tokenizer } from "../../src/tokenizer/tokenizer.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { type TinyModel, tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const SPECIAL = ["[UNK]", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"];
const WORDS = ["hello", "world", "how", "are", "you", "be", "brief"];
const VOCAB = 61; // the tiny llama's vocab_size: every id the model can sample must be a token

/** A WordPiece tokenizer.json whose vocabulary is exactly ids 0…60 (whole words, split on spaces). */
function tinyTokenizer(): Record<string, unknown> {
  const tokens = [...SPECIAL, ...WORDS];
  for (let i = 0; tokens.length < VOCAB; i++) tokens.push(`w${i}`);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "WhitespaceSplit" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: false },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(tokens.map((t, i) => [t, i])),
    },
  };
}

const TEMPLATE =
  "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|> {{ m.content }} {% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>{% endif %}";

/** The tiny llama (bos 1, eos 2) with the tokenizer above; `chatTemplate` null leaves it out. */
function chatModel(chatTemplate: string | null): TinyModel {
  const m = writeTinyModel("llama");
  writeFileSync(join(m.dir, "tokenizer.json"), JSON.stringify(tinyTokenizer()));
  const config = {
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "[UNK]",
    chat_template: chatTemplate ?? undefined,
  };
  writeFileSync(join(m.dir, "tokenizer_config.json"), JSON.stringify(config));
  return m;
}

describe("kiln chat (piped stdin)", () => {
  const model = chatModel(TEMPLATE);
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  const gen = ["--max-new-tokens", "4", "--greedy"];
  after(() => {
    model.cleanup();
    cache.cleanup();
  });

  /** What `kiln run` generates from the conversation's prompt ids. */
  function expectedReply(messages: ChatMessage[]): string {
    const tokenizer = Tokenizer.fromDir(model.dir);
    const ids = encodeChat(tokenizer, messages, { template: ChatTemplate.fromDir(model.dir) });
    assert.equal(ids.filter((id) => id === 1).length, 1, "one BOS: the template's");
    const r = kiln(["run", "--model", model.dir, "--input-ids", ids.join(","), ...gen, "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).text;
  }

  test("two lines in, two replies out, each the continuation of the whole conversation", () => {
    const r = kiln(["chat", "--model", model.dir, ...gen], env, { input: "hello world\nhow are you\n" });
    assert.equal(r.code, 0, r.stderr);
    const first = expectedReply([{ role: "user", content: "hello world" }]);
    const second = expectedReply([
      { role: "user", content: "hello world" },
      { role: "assistant", content: first },
      { role: "user", content: "how are you" },
    ]);
    assert.equal(r.stdout, `${first}\n\n${second}\n\n`);
  });

  test("--system starts the conversation; /reset clears it; /exit stops reading", () => {
    const input = "hello world\n/reset\nhello world\n/exit\nhow are you\n";
    const r = kiln(["chat", "--model", model.dir, "--system", "be brief", ...gen], env, { input });
    assert.equal(r.code, 0, r.stderr);
    const reply = expectedReply([
      { role: "system", content: "be brief" },
      { role: "user", content: "hello world" },
    ]);
    assert.equal(r.stdout, `${reply}\n\n${reply}\n\n`);
  });

  test("--dtype reaches the build: run then finds chat's fp16 engine in the cache", () => {
    const own = tempCache();
    try {
      const ownEnv = { KILN_CACHE_DIR: own.dir };
      const r = kiln(["chat", "--model", model.dir, "--dtype", "fp16", ...gen], ownEnv, { input: "hello\n" });
      assert.equal(r.code, 0, r.stderr);
      const run = kiln(
        ["run", "--model", model.dir, "--dtype", "fp16", "--input-ids", "1,7", ...gen, "--json"],
        ownEnv,
      );
      assert.equal(run.code, 0, run.stderr);
      assert.equal(JSON.parse(run.stdout).engine.origin, "hit");
    } finally {
      own.cleanup();
    }
  });

  test("run's decoding flags reach chat's replies; its contradictions are refused", () => {
    // Sampled replies: the seed and a logit bias that makes id 8 ("how") every token.
    const sampled = ["--max-new-tokens", "4", "--temperature", "1", "--seed", "3"];
    const input = "hello world\n";
    const biased = kiln(["chat", "--model", model.dir, ...sampled, "--embedding-bias", "8:100"], env, {
      input,
    });
    assert.equal(biased.code, 0, biased.stderr);
    assert.equal(biased.stdout.trim(), "how how how how");
    const plain = kiln(["chat", "--model", model.dir, ...sampled], env, { input });
    assert.equal(plain.code, 0, plain.stderr);
    assert.notEqual(plain.stdout, biased.stdout, "without the bias the reply differs");
    const r = kiln(["chat", "--model", model.dir, "--greedy", "--top-k", "5"], env, { input });
    assertUserError(r, "ConflictingFlagsError", /--greedy conflicts with --top-k 5/);
  });

  test("a model without a chat template: NoChatTemplateError, unless --chat-template FILE is given", () => {
    const bare = chatModel(null);
    try {
      const r = kiln(["chat", "--model", bare.dir, ...gen], env, { input: "hello\n" });
      assertUserError(
        r,
        "NoChatTemplateError",
        /tokenizer_config\.json has no chat_template.*--chat-template FILE/,
      );
      const file = join(bare.dir, "chat.jinja");
      writeFileSync(file, TEMPLATE);
      const ok = kiln(["chat", "--model", bare.dir, "--chat-template", file, ...gen], env, {
        input: "hello\n",
      });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^[^\n]+\n\n$/, "one reply, then a blank line");
    } finally {
      bare.cleanup();
    }
  });
});

test("dropOldestTurns drops whole turns from the oldest, keeping the system message and the newest", () => {
  const m = (role: string, content: string): ChatMessage => ({ role, content });
  const history = [
    m("system", "s"),
    m("user", "u1"),
    m("assistant", "a1"),
    m("user", "u2"),
    m("assistant", "a2"),
    m("user", "u3"),
  ];
  const tokens = (ms: readonly ChatMessage[]) => 10 * ms.length; // 10 tokens a message
  assert.equal(dropOldestTurns(history, tokens, 60), 0, "fits: nothing dropped");
  assert.equal(dropOldestTurns(history, tokens, 45), 2);
  assert.deepEqual(
    history.map((x) => x.content),
    ["s", "u2", "a2", "u3"],
  );
  // The newest message stays even when it alone is over the limit (the runner then names the error).
  assert.equal(dropOldestTurns(history, tokens, 5), 2);
  assert.deepEqual(
    history.map((x) => x.content),
    ["s", "u3"],
  );
});

test("kiln chat goes on past the context window (12 turns, the bundled model), saying so once", () => {
  const cache = tempCache();
  try {
    const input = "Who art thou, good sir?\n".repeat(12);
    const r = kiln(
      ["chat", "--max-new-tokens", "48", "--seed", "3"],
      { KILN_CACHE_DIR: cache.dir },
      { input },
    );
    assert.equal(r.code, 0, r.stderr);
    const notes = r.stderr.split("\n").filter((l) => l !== "");
    assert.equal(notes.length, 1, r.stderr);
    assert.match(notes[0], /outgrew the context window of 512 tokens; dropping the oldest turns/);
    // Every reply ends with a blank line, and no reply holds one: 12 turns, 12 blank lines.
    assert.ok(r.stdout.endsWith("\n\n"), "the last reply ends with a blank line");
    assert.equal(r.stdout.split("\n").filter((l) => l === "").length - 1, 12);
  } finally {
    cache.cleanup();
  }
});

// Multi-turn chats recorded from transformers (apply_chat_template + greedy generate, fp32) by
// tools/make_chat_fixtures.py: kiln must render the same prompt ids, generate the same reply ids,
// and `kiln chat` must print the same replies, turn by turn.
interface ChatFixture {
  model: string;
  template: string | null;
  eosIds: number[];
  system: string | null;
  maxNewTokens: number;
  turns: {
    user: string;
    messages: ChatMessage[];
    promptIds: number[];
    outputIds: number[];
    finished: boolean;
    reply: string;
  }[];
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURES = join(ROOT, "test/fixtures/chat");
const fixtureFiles = existsSync(FIXTURES)
  ? readdirSync(FIXTURES)
      .filter((f) => f.endsWith(".json"))
      .sort()
  : [];

/** A reply as piped `kiln chat` prints it: no empty lines (none at its start), then a blank line. */
function pipedTurn(reply: string): string {
  const text = reply.replace(/^\n+/, "").replace(/\n{2,}/g, "\n");
  return text === "" || text.endsWith("\n") ? `${text}\n` : `${text}\n\n`;
}

if (fixtureFiles.length === 0) {
  test("chat replies match transformers", {
    skip:
      "no fixtures in test/fixtures/chat/*.json yet: run tools/make_chat_fixtures.py on the GPU machine " +
      "(tools/README.md, Chat fixtures) and commit its output",
  }, () => {});
}

for (const file of fixtureFiles) {
  const fx = JSON.parse(readFileSync(join(FIXTURES, file), "utf8")) as ChatFixture;
  describe(`chat replies match transformers: ${file}`, () => {
    const modelDir = join(ROOT, fx.model);
    const templateArgs = fx.template !== null ? ["--chat-template", join(ROOT, fx.template)] : [];
    const cache = tempCache();
    const runner = ModelRunner.fromDir(modelDir, { cacheDir: cache.dir, dtype: "fp32" });
    const template = ChatTemplate.fromDir(
      modelDir,
      fx.template !== null ? { templateFile: join(ROOT, fx.template) } : {},
    );
    after(() => {
      runner.dispose();
      cache.cleanup();
    });

    test("prompt ids and reply ids, turn by turn (library)", async () => {
      assert.ok(fx.turns.length > 0, "the fixture has turns");
      for (const [i, turn] of fx.turns.entries()) {
        assert.deepEqual(
          encodeChat(runner.tokenizer, turn.messages, { template }),
          turn.promptIds,
          `turn ${i} prompt`,
        );
        const [out] = await runner.generate(
          { ids: turn.promptIds },
          { greedy: true, maxNewTokens: fx.maxNewTokens, endId: fx.eosIds },
        );
        assert.deepEqual(out.outputIds, turn.outputIds, `turn ${i} reply ids`);
        assert.equal(out.finishReason === "end", turn.finished, `turn ${i} finish`);
        assert.equal(out.text, turn.reply, `turn ${i} reply text`);
      }
    });

    test("kiln chat prints the same replies (piped)", () => {
      const args = ["chat", "--model", modelDir, ...templateArgs, "--dtype", "fp32", "--greedy"];
      if (fx.system !== null) args.push("--system", fx.system);
      args.push("--max-new-tokens", String(fx.maxNewTokens));
      const input = fx.turns.map((t) => `${t.user}\n`).join("");
      const r = kiln(args, { KILN_CACHE_DIR: cache.dir }, { input });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, fx.turns.map((t) => pipedTurn(t.reply)).join(""));
    });
  });
}
