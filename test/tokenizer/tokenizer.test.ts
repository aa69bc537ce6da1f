import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Tokenizer, TokenizerError } from "../../src/tokenizer/index.ts";
import {
  BYTE_LEVEL_SPECIAL,
  BYTE_TOKENS,
  byteLevelBpe,
  byteLevelConfig,
  type Json,
  llamaConfig,
  llamaSentencePiece,
  wordPiece,
  wordPieceConfig,
} from "./tiny_tokenizers.ts";

const MULTIBYTE = "héllo €😀 日本";
const TEXTS = ["hello world", MULTIBYTE, "  leading and trailing  ", "line\nbreak\ttab", "the the hello", ""];

function byteToken(b: number): string {
  return BYTE_TOKENS[b];
}

describe("byte-level BPE (GPT-2 / Llama 3 style)", () => {
  const tok = Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig());
  const bos = tok.tokenToId(BYTE_LEVEL_SPECIAL.bos)!;

  test("encode applies merges and the post-processor's BOS", () => {
    const e = tok.encode("hello world");
    assert.deepEqual(e.tokens, [BYTE_LEVEL_SPECIAL.bos, "hello", "Ġworld"]);
    assert.deepEqual(e.ids, [bos, tok.tokenToId("hello"), tok.tokenToId("Ġworld")]);
    assert.deepEqual(tok.encode("hello world", { addSpecialTokens: false }).tokens, ["hello", "Ġworld"]);
    assert.deepEqual(tok.encode("").ids, [bos]);
  });

  test("multi-byte text: merged '€', emoji as four byte tokens, round trip", () => {
    const e = tok.encode(MULTIBYTE, { addSpecialTokens: false });
    assert.ok(e.tokens.includes("âĤ¬"), "€ (E2 82 AC) is one merged token");
    const emoji = e.tokens.indexOf("ð"); // F0 9F 98 80
    assert.deepEqual(e.tokens.slice(emoji, emoji + 4), ["ð", "Ł", "ĺ", "Ģ"]);
    assert.equal(tok.decode(e.ids), MULTIBYTE);
  });

  test("round trip of assorted texts, with and without special tokens", () => {
    for (const text of TEXTS) {
      const ids = tok.encode(text).ids;
      assert.equal(tok.decode(ids), BYTE_LEVEL_SPECIAL.bos + text);
      assert.equal(tok.decode(ids, { skipSpecialTokens: true }), text);
    }
  });

  test("special and added tokens in text are single tokens; only special ones are skipped", () => {
    const { bos: bosText, eos, think } = BYTE_LEVEL_SPECIAL;
    const text = `hi${eos}there ${think}x`;
    const e = tok.encode(text);
    assert.ok(e.ids.includes(tok.tokenToId(eos)!));
    assert.ok(e.ids.includes(tok.tokenToId(think)!));
    assert.ok(e.tokens.includes(eos) && e.tokens.includes(think));
    assert.equal(tok.decode(e.ids), bosText + text);
    assert.equal(tok.decode(e.ids, { skipSpecialTokens: true }), `hithere ${think}x`);
  });

  test("Llama 3 split regex pre-tokenizer gives the same round trip", () => {
    const l3 = Tokenizer.fromJson(byteLevelBpe({ llama3Split: true }), byteLevelConfig());
    for (const text of [...TEXTS, "It's 12345 o'clock!\n\n  x"]) {
      assert.equal(l3.decode(l3.encode(text).ids, { skipSpecialTokens: true }), text);
    }
    // The Llama 3 regex splits digits in groups of at most three.
    assert.deepEqual(l3.encode("12345", { addSpecialTokens: false }).tokens, ["1", "2", "3", "4", "5"]);
  });

  test("vocabulary: size counts added tokens, id ↔ token", () => {
    assert.equal(tok.vocabSize, 256 + 22 + 4); // bytes + merges + added tokens
    assert.equal(tok.idToToken(bos), BYTE_LEVEL_SPECIAL.bos);
    assert.equal(tok.idToToken(tok.vocabSize), null);
    assert.equal(tok.idToToken(-1), null);
    assert.equal(tok.tokenToId("no such token"), null);
  });

  test("BPE ignores clean_up_tokenization_spaces, as transformers 5 does", () => {
    assert.equal(tok.cleanUpTokenizationSpaces, false);
    const ids = tok.encode("do n't stop .", { addSpecialTokens: false }).ids;
    assert.equal(tok.decode(ids), "do n't stop .");
  });
});

describe("SentencePiece BPE with byte fallback (Llama 2 style)", () => {
  const tok = Tokenizer.fromJson(llamaSentencePiece(), llamaConfig());

  test("encode: prepended ▁, BOS from the template", () => {
    const e = tok.encode("hello world");
    assert.deepEqual(e.tokens, ["<s>", "▁hello", "▁world"]);
    assert.equal(e.ids[0], 1);
    assert.deepEqual(tok.encode("hello world", { addSpecialTokens: false }).tokens, ["▁hello", "▁world"]);
  });

  test("characters outside the vocabulary fall back to UTF-8 byte tokens", () => {
    const e = tok.encode(MULTIBYTE, { addSpecialTokens: false });
    const bytes = (s: string) => Array.from(new TextEncoder().encode(s), byteToken);
    assert.deepEqual(e.tokens, [
      "▁h",
      ...bytes("é"),
      "l",
      "l",
      "o",
      "▁€",
      ...bytes("😀"),
      "▁",
      ...bytes("日本"),
    ]);
    assert.equal(tok.decode(e.ids), MULTIBYTE);
  });

  test("decode strips the one leading space; BOS decodes as '<s> '", () => {
    const ids = tok.encode("hello world").ids;
    assert.equal(tok.decode(ids), "<s> hello world");
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "hello world");
    for (const text of TEXTS.filter((t) => !t.startsWith(" "))) {
      assert.equal(tok.decode(tok.encode(text).ids, { skipSpecialTokens: true }), text);
    }
  });

  test("special tokens written in the text are recognised", () => {
    const e = tok.encode("<s>hello</s> world", { addSpecialTokens: false });
    assert.deepEqual(e.tokens, ["<s>", "▁hello", "</s>", "▁", "▁world"]);
    assert.deepEqual(e.ids.slice(0, 1), [1]);
    assert.equal(e.ids[2], 2);
  });

  test("bos/eos/unk from tokenizer_config objects {content}", () => {
    assert.equal(tok.bosTokenId, 1);
    assert.deepEqual(tok.eosTokenIds, [2]);
    assert.equal(tok.padTokenId, null);
    assert.deepEqual(
      [...tok.specialTokenIds].sort((a, b) => a - b),
      [0, 1, 2],
    );
    assert.equal(tok.vocabSize, 3 + 256 + 28);
  });
});

describe("special token ids", () => {
  test("string forms in tokenizer_config", () => {
    const tok = Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig());
    assert.equal(tok.bosTokenId, tok.tokenToId(BYTE_LEVEL_SPECIAL.bos));
    assert.deepEqual(tok.eosTokenIds, [tok.tokenToId(BYTE_LEVEL_SPECIAL.eos)]);
  });

  test("model config ids come first and win; tokenizer eos is added once", () => {
    const base = Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig());
    const eos = base.tokenToId(BYTE_LEVEL_SPECIAL.eos)!;
    const eot = base.tokenToId(BYTE_LEVEL_SPECIAL.eot)!;
    const tok = Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig(), {
      bosTokenId: 7,
      eosTokenIds: [eot, eos],
      padTokenId: eos,
    });
    assert.equal(tok.bosTokenId, 7);
    assert.deepEqual(tok.eosTokenIds, [eot, eos]);
    assert.equal(tok.padTokenId, eos);
    assert.deepEqual(
      Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig(), { eosTokenIds: [eot] }).eosTokenIds,
      [eot, eos],
    );
    // null from a model config means "not given": the tokenizer's value stays.
    assert.equal(
      Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig(), { bosTokenId: null }).bosTokenId,
      base.bosTokenId,
    );
  });

  test("no tokenizer_config: no bos/eos, special ids from added tokens", () => {
    const tok = Tokenizer.fromJson(byteLevelBpe());
    assert.equal(tok.bosTokenId, null);
    assert.deepEqual(tok.eosTokenIds, []);
    assert.equal(tok.specialTokenIds.size, 3);
    assert.equal(tok.chatTemplate, null);
  });

  test("additional_special_tokens and added_tokens_decoder mark ids special", () => {
    const config = {
      ...byteLevelConfig(),
      additional_special_tokens: [{ content: BYTE_LEVEL_SPECIAL.think }],
      added_tokens_decoder: { "104": { content: "h", special: true } },
    };
    const tok = Tokenizer.fromJson(byteLevelBpe(), config);
    assert.ok(tok.specialTokenIds.has(tok.tokenToId(BYTE_LEVEL_SPECIAL.think)!));
    assert.ok(tok.specialTokenIds.has(104));
    const ids = tok.encode(`x${BYTE_LEVEL_SPECIAL.think}y`, { addSpecialTokens: false }).ids;
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "xy");
  });

  test("a post-processor-less tokenizer.json gets BOS/EOS from add_bos_token / add_eos_token", () => {
    const json = { ...llamaSentencePiece(), post_processor: null };
    assert.deepEqual(Tokenizer.fromJson(json, {}).encode("hello").tokens, ["▁hello"]);
    const both = Tokenizer.fromJson(json, { ...llamaConfig(), add_eos_token: true });
    assert.deepEqual(both.encode("hello").tokens, ["<s>", "▁hello", "</s>"]);
    assert.deepEqual(both.encode("hello").ids, [1, both.tokenToId("▁hello"), 2]);
    assert.deepEqual(both.encode("hello", { addSpecialTokens: false }).tokens, ["▁hello"]);
    assert.throws(() => Tokenizer.fromJson(json, { add_bos_token: true }), TokenizerError);
  });
});

describe("chat template", () => {
  test("string, list with a default, list without", () => {
    const json = byteLevelBpe();
    assert.equal(Tokenizer.fromJson(json, { chat_template: "{{ x }}" }).chatTemplate, "{{ x }}");
    const list = [
      { name: "tool_use", template: "T" },
      { name: "default", template: "D" },
    ];
    assert.equal(Tokenizer.fromJson(json, { chat_template: list }).chatTemplate, "D");
    assert.equal(Tokenizer.fromJson(json, { chat_template: list.slice(0, 1) }).chatTemplate, null);
    assert.throws(() => Tokenizer.fromJson(json, { chat_template: 3 }), TokenizerError);
  });
});

describe("clean_up_tokenization_spaces on a WordPiece tokenizer", () => {
  test("decode cleans up spaces before punctuation and contractions", () => {
    const tok = Tokenizer.fromJson(wordPiece(), wordPieceConfig());
    assert.equal(tok.cleanUpTokenizationSpaces, true);
    const ids = tok.encode("do n't you . hello , world").ids;
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "don't you. hello, world");
    assert.equal(
      tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }),
      "do n ' t you . hello , world",
    );
    assert.equal(tok.decode(ids), "[CLS] don't you. hello, world [SEP]");
  });
});

describe("errors", () => {
  const tok = Tokenizer.fromJson(llamaSentencePiece(), llamaConfig());

  test("decode of an id outside the vocabulary names the id and the size", () => {
    for (const id of [tok.vocabSize, 100000, -1, 1.5]) {
      assert.throws(
        () => tok.decode([1, id]),
        (err: unknown) =>
          err instanceof TokenizerError &&
          err.message.includes(`token id ${id} `) &&
          err.message.includes(`${tok.vocabSize}`),
      );
    }
    assert.equal(tok.decode([]), "");
  });

  test("invalid tokenizer.json and tokenizer_config.json", () => {
    const cases: [unknown, unknown, RegExp][] = [
      [[], {}, /tokenizer\.json must hold a JSON object/],
      [{ version: "1.0" }, {}, /no "model" object/],
      [{ model: { type: "BPE" } }, {}, /has no "vocab"/],
      [
        { ...llamaSentencePiece(), decoder: { type: "NoSuchDecoder" } },
        {},
        /could not be loaded.*NoSuchDecoder/,
      ],
      [llamaSentencePiece(), { bos_token: 5 }, /"bos_token" must be a string/],
      [llamaSentencePiece(), "config", /tokenizer_config\.json must hold a JSON object/],
    ];
    for (const [json, config, message] of cases) {
      assert.throws(
        () => Tokenizer.fromJson(json, config),
        (err: unknown) => {
          assert.ok(err instanceof TokenizerError, String(err));
          assert.match(err.message, message);
          return true;
        },
      );
    }
  });

  test("fromJson does not modify its arguments", () => {
    const json = llamaSentencePiece();
    const config = llamaConfig();
    const before = JSON.stringify([json, config]);
    Tokenizer.fromJson({ ...json, post_processor: null }, config);
    Tokenizer.fromJson(json, config);
    assert.equal(JSON.stringify([json, config]), before);
  });
});

describe("fromDir", () => {
  const root = mkdtempSync(join(tmpdir(), "kiln-tokenizer-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  /** A fresh checkpoint directory holding `files` (objects are written as JSON). */
  function checkpoint(files: Record<string, string | Json>): string {
    const dir = join(root, `ckpt${n++}`);
    mkdirSync(dir);
    for (const [name, content] of Object.entries(files)) {
      writeFileSync(join(dir, name), typeof content === "string" ? content : JSON.stringify(content));
    }
    return dir;
  }

  test("loads tokenizer.json, tokenizer_config.json and chat_template.jinja", () => {
    const dir = checkpoint({
      "tokenizer.json": llamaSentencePiece(),
      "tokenizer_config.json": { ...llamaConfig(), chat_template: "from config" },
      "chat_template.jinja": "from jinja file",
    });
    const tok = Tokenizer.fromDir(dir, { eosTokenIds: [1] });
    assert.deepEqual(tok.encode("hello").tokens, ["<s>", "▁hello"]);
    assert.deepEqual(tok.eosTokenIds, [1, 2]);
    assert.equal(tok.chatTemplate, "from jinja file");
  });

  test("tokenizer_config.json is optional", () => {
    const tok = Tokenizer.fromDir(checkpoint({ "tokenizer.json": byteLevelBpe() }));
    assert.equal(tok.decode(tok.encode(MULTIBYTE).ids, { skipSpecialTokens: true }), MULTIBYTE);
  });

  test("missing tokenizer.json: error names the path", () => {
    const dir = checkpoint({ "config.json": {} });
    assert.throws(
      () => Tokenizer.fromDir(dir),
      (err: unknown) => err instanceof TokenizerError && err.message.includes(join(dir, "tokenizer.json")),
    );
    const sp = checkpoint({ "tokenizer.model": "binary" });
    assert.throws(() => Tokenizer.fromDir(sp), /only tokenizer\.model \(SentencePiece\).*save_pretrained/);
    assert.throws(() => Tokenizer.fromDir(join(root, "nope")), /does not exist/);
  });

  test("unreadable JSON: error names the file", () => {
    const broken = checkpoint({ "tokenizer.json": '{"model": {' });
    assert.throws(
      () => Tokenizer.fromDir(broken),
      (err: unknown) => {
        return (
          err instanceof TokenizerError &&
          err.message.includes(join(broken, "tokenizer.json")) &&
          /not valid JSON/.test(err.message)
        );
      },
    );
    const lfs = checkpoint({
      "tokenizer.json": "version https://git-lfs.github.com/spec/v1\noid sha256:00\n",
    });
    assert.throws(() => Tokenizer.fromDir(lfs), /Git LFS pointer/);
    const config = checkpoint({ "tokenizer.json": byteLevelBpe(), "tokenizer_config.json": "{,}" });
    assert.throws(
      () => Tokenizer.fromDir(config),
      (err: unknown) => {
        return err instanceof TokenizerError && err.message.includes(join(config, "tokenizer_config.json"));
      },
    );
    const invalid = checkpoint({ "tokenizer.json": { version: "1.0" } });
    assert.throws(
      () => Tokenizer.fromDir(invalid),
      (err: unknown) => {
        return err instanceof TokenizerError && err.message.includes(join(invalid, "tokenizer.json"));
      },
    );
  });
});
