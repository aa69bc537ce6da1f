import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  cleanUpTokenization,
  IncrementalDetokenizer,
  StreamingCleanUp,
  Tokenizer,
  TokenizerError,
} from "../../src/tokenizer/index.ts";
import {
  BYTE_LEVEL_SPECIAL,
  byteLevelBpe,
  byteLevelConfig,
  llamaConfig,
  llamaSentencePiece,
  wordPiece,
  wordPieceConfig,
} from "./tiny_tokenizers.ts";

const TOKENIZERS = {
  byteLevel: Tokenizer.fromJson(byteLevelBpe(), byteLevelConfig()),
  llama: Tokenizer.fromJson(llamaSentencePiece(), llamaConfig()),
  wordPiece: Tokenizer.fromJson(wordPiece(), wordPieceConfig()),
};

const TEXTS = [
  "hello world",
  "héllo €😀 日本",
  "😀😀😀",
  " leading space",
  "trailing space ",
  "two  spaces and\nnew\n\nlines\ttab",
  "the hello the world €€ € 😀x",
  `hi${BYTE_LEVEL_SPECIAL.eos}there${BYTE_LEVEL_SPECIAL.think} <s>x</s> y`,
  "do n't you . hello , world ! what ' s up ?",
  "",
];

/** Mulberry32: a small seeded PRNG, so fuzz failures reproduce. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pushes ids one at a time; returns every chunk, the flush last. */
function stream(
  tok: Tokenizer,
  ids: number[],
  opts: { skipSpecialTokens?: boolean; promptIds?: number[] } = {},
) {
  const detok = new IncrementalDetokenizer(tok, opts);
  const chunks = ids.map((id) => detok.push(id));
  chunks.push(detok.flush());
  return chunks;
}

function assertInvariant(tok: Tokenizer, ids: number[], skipSpecialTokens: boolean, label: string): void {
  const streamed = stream(tok, ids, { skipSpecialTokens }).join("");
  assert.equal(streamed, tok.decode(ids, { skipSpecialTokens }), `${label}: ids [${ids.join(",")}]`);
}

describe("IncrementalDetokenizer invariant: pushes + flush === decode(all)", () => {
  for (const [name, tok] of Object.entries(TOKENIZERS)) {
    test(`${name}: encoded texts`, () => {
      for (const text of TEXTS) {
        for (const skipSpecialTokens of [false, true]) {
          assertInvariant(tok, tok.encode(text).ids, skipSpecialTokens, `${name} ${JSON.stringify(text)}`);
        }
      }
    });

    test(`${name}: random id sequences (invalid UTF-8, stray spaces, special tokens)`, () => {
      // Half the ids from a pool of troublemakers: specials, spaces, bytes of multi-byte characters.
      const troublemakers = [...tok.specialTokenIds];
      for (const t of [
        "▁",
        "Ġ",
        "<0x20>",
        "<0xE2>",
        "<0x82>",
        "<0xAC>",
        "<0xF0>",
        "<0x9F>",
        "ð",
        "Ł",
        "ĺ",
        "Ģ",
        "'",
        "n",
      ]) {
        const id = tok.tokenToId(t);
        if (id !== null) troublemakers.push(id);
      }
      const random = rng(1234);
      const pick = () =>
        random() < 0.5
          ? troublemakers[Math.floor(random() * troublemakers.length)]
          : Math.floor(random() * tok.vocabSize);
      for (let i = 0; i < 1500; i++) {
        const ids = Array.from({ length: 1 + Math.floor(random() * 30) }, pick);
        const skipSpecialTokens = i % 2 === 0;
        assertInvariant(tok, ids, skipSpecialTokens, name);

        // With the first ids as prompt: the stream is what decode(prompt + generated) adds.
        const cut = Math.floor(random() * ids.length);
        const all = tok.decode(ids, { skipSpecialTokens });
        const promptText = tok.decode(ids.slice(0, cut), { skipSpecialTokens });
        if (!all.startsWith(promptText) || promptText.endsWith("\uFFFD")) continue; // prompt ends mid-character
        const streamed = stream(tok, ids.slice(cut), {
          skipSpecialTokens,
          promptIds: ids.slice(0, cut),
        }).join("");
        assert.equal(
          streamed,
          all.slice(promptText.length),
          `${name} prompt [${ids.slice(0, cut)}] + [${ids.slice(cut)}]`,
        );
      }
    });
  }
});

describe("IncrementalDetokenizer chunks", () => {
  test("byte fallback: a 4-byte emoji is held until its last byte token", () => {
    const tok = TOKENIZERS.llama;
    const ids = tok.encode("hello😀", { addSpecialTokens: false }).ids;
    assert.deepEqual(
      ids.map((id) => tok.idToToken(id)),
      ["▁hello", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"],
    );
    assert.deepEqual(stream(tok, ids), ["hello", "", "", "", "😀", ""]);
  });

  test("byte-level BPE: a 4-byte emoji is held until its last byte token", () => {
    const tok = TOKENIZERS.byteLevel;
    const ids = tok.encode("a😀 world", { addSpecialTokens: false }).ids;
    assert.deepEqual(
      ids.map((id) => tok.idToToken(id)),
      ["a", "ð", "Ł", "ĺ", "Ģ", "Ġworld"],
    );
    assert.deepEqual(stream(tok, ids), ["a", "", "", "", "😀", " world", ""]);
  });

  test("SentencePiece: each word keeps its leading space after the first", () => {
    const tok = TOKENIZERS.llama;
    const ids = tok.encode("hello world the world").ids;
    assert.deepEqual(stream(tok, ids), ["<s>", " hello", " world", " the", " world", ""]);
    assert.deepEqual(stream(tok, ids, { skipSpecialTokens: true }), [
      "",
      "hello",
      " world",
      " the",
      " world",
      "",
    ]);
  });

  test("an incomplete character at the end comes out of flush", () => {
    const tok = TOKENIZERS.llama;
    const euro = [0xe2, 0x82].map((b) => tok.tokenToId(`<0x${b.toString(16).toUpperCase()}>`)!);
    const ids = [tok.tokenToId("▁hello")!, ...euro];
    const chunks = stream(tok, ids);
    assert.deepEqual(chunks.slice(0, 3), ["hello", "", ""]);
    assert.equal(chunks.join(""), tok.decode(ids));
    assert.ok(chunks[3].endsWith("\uFFFD"));
  });

  test("promptIds give the first generated token its context (leading space kept)", () => {
    const tok = TOKENIZERS.llama;
    const prompt = tok.encode("hello").ids;
    const generated = tok.encode("world the", { addSpecialTokens: false }).ids;
    const chunks = stream(tok, generated, { promptIds: prompt, skipSpecialTokens: true });
    assert.deepEqual(chunks, [" world", " the", ""]);
    const all = tok.decode([...prompt, ...generated], { skipSpecialTokens: true });
    assert.equal(chunks.join(""), all.slice(tok.decode(prompt, { skipSpecialTokens: true }).length));
    // Without the prompt the first word loses its space, as decode(generated) does.
    assert.equal(stream(tok, generated).join(""), tok.decode(generated));
  });

  test("promptIds ending in skipped special tokens still give context", () => {
    const tok = TOKENIZERS.llama;
    const prompt = [...tok.encode("hello").ids, ...Array(8).fill(2)];
    const generated = tok.encode("world", { addSpecialTokens: false }).ids;
    assert.deepEqual(stream(tok, generated, { promptIds: prompt, skipSpecialTokens: true }), [" world", ""]);
  });

  test("WordPiece with clean-up: contractions and punctuation are joined across chunks", () => {
    const tok = TOKENIZERS.wordPiece;
    const ids = tok.encode("do n't you . hello , world", { addSpecialTokens: false }).ids;
    const chunks = stream(tok, ids);
    assert.equal(chunks.join(""), "don't you. hello, world");
  });

  test("an unknown id throws TokenizerError and leaves the stream usable", () => {
    const tok = TOKENIZERS.llama;
    const detok = new IncrementalDetokenizer(tok);
    let text = detok.push(tok.tokenToId("▁hello")!);
    assert.throws(() => detok.push(tok.vocabSize + 3), TokenizerError);
    text += detok.push(tok.tokenToId("▁world")!) + detok.flush();
    assert.equal(text, "hello world");
  });

  test("work per push stays bounded by the window, not the sequence", () => {
    const tok = Tokenizer.fromJson(llamaSentencePiece(), llamaConfig());
    const decode = tok.decode.bind(tok);
    let longest = 0;
    tok.decode = (ids, opts) => {
      longest = Math.max(longest, ids.length);
      return decode(ids, opts);
    };
    const ids = tok.encode("hello world héllo €😀 日本 ".repeat(200)).ids;
    const detok = new IncrementalDetokenizer(tok);
    let text = "";
    for (const id of ids) text += detok.push(id);
    text += detok.flush();
    tok.decode = decode;
    assert.equal(text, tok.decode(ids));
    assert.ok(ids.length > 3000);
    assert.ok(longest <= 10, `longest decode window ${longest}`);
  });
});

describe("StreamingCleanUp", () => {
  test("equals the batch clean-up for random text cut at random points", () => {
    const alphabet = [" ", " ", "n", "'", "t", "s", "m", "r", "e", "v", ".", ",", "?", "!", "a", "😀", "\n"];
    const random = rng(99);
    for (let i = 0; i < 2000; i++) {
      const text = Array.from(
        { length: Math.floor(random() * 30) },
        () => alphabet[Math.floor(random() * alphabet.length)],
      ).join("");
      const cleanUp = new StreamingCleanUp();
      let out = "";
      for (let at = 0; at < text.length; ) {
        const step = 1 + Math.floor(random() * 4);
        out += cleanUp.push(text.slice(at, at + step));
        at += step;
      }
      out += cleanUp.flush();
      assert.equal(out, cleanUpTokenization(text), JSON.stringify(text));
    }
  });
});
