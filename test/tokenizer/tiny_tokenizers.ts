// Small but complete tokenizer.json objects, built the way Hugging Face tokenizers writes them, for
// tests that cannot call Python: a GPT-2 / Llama-3 style byte-level BPE, a Llama-2 style SentencePiece
// BPE with byte fallback, and a BERT style WordPiece.

export type Json = Record<string, unknown>;

function addedToken(id: number, content: string, special: boolean): Json {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special, special };
}

/** Vocabulary: `base` tokens in order, then every merge result, ids from `firstId`. */
function bpeVocab(base: string[], merges: [string, string][], firstId: number): Record<string, number> {
  const vocab: Record<string, number> = {};
  let id = firstId;
  for (const token of [...base, ...merges.map(([a, b]) => a + b)]) {
    if (!(token in vocab)) vocab[token] = id++;
  }
  return vocab;
}

/** GPT-2's reversible byte → printable character map. */
export function bytesToUnicode(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let next = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(printable(b) ? b : 256 + next++));
  return out;
}

function byteLevelString(text: string): string {
  const map = bytesToUnicode();
  return Array.from(new TextEncoder().encode(text), (b) => map[b]).join("");
}

const BYTE_LEVEL_WORDS = ["hello", " world", " the", " hello", "€", " €"];
const LLAMA_WORDS = ["▁hello", "▁world", "▁the", "hello", "▁€"];

/** Merges that build each word left to right, in byte-level or plain character space. */
function mergesFor(words: string[]): [string, string][] {
  const merges: [string, string][] = [];
  const seen = new Set<string>();
  for (const word of words) {
    const chars = Array.from(word);
    let current = chars[0];
    for (const next of chars.slice(1)) {
      const key = `${current} ${next}`;
      if (!seen.has(key)) {
        seen.add(key);
        merges.push([current, next]);
      }
      current += next;
    }
  }
  return merges;
}

export const BYTE_LEVEL_SPECIAL = {
  bos: "<|begin_of_text|>",
  eos: "<|endoftext|>",
  eot: "<|im_end|>",
  /** An added token that is not special: never split, never skipped. */
  think: "<think>",
};

/**
 * Byte-level BPE as Llama 3 / GPT-2: ByteLevel pre-tokenizer and decoder, merges for a few words
 * ("€" is one token, "😀" stays four byte tokens), added tokens only in `added_tokens`, and a
 * Sequence[ByteLevel, TemplateProcessing] post-processor that adds the BOS.
 */
export function byteLevelBpe(opts: { llama3Split?: boolean } = {}): Json {
  const merges = mergesFor(BYTE_LEVEL_WORDS.map(byteLevelString));
  const vocab = bpeVocab(bytesToUnicode(), merges, 0);
  const first = Object.keys(vocab).length;
  const { bos, eos, eot, think } = BYTE_LEVEL_SPECIAL;
  const added = [
    addedToken(first, bos, true),
    addedToken(first + 1, eos, true),
    addedToken(first + 2, eot, true),
    addedToken(first + 3, think, false),
  ];
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  // Llama 3's pre-tokenizer: its own split regex, then ByteLevel without the GPT-2 regex.
  const llama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const preTokenizer = opts.llama3Split
    ? {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: llama3Regex }, behavior: "Isolated", invert: false },
          { ...byteLevel, use_regex: false },
        ],
      }
    : byteLevel;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: {
      type: "Sequence",
      processors: [
        { ...byteLevel, use_regex: false },
        {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
            { SpecialToken: { id: bos, type_id: 1 } },
            { Sequence: { id: "B", type_id: 1 } },
          ],
          special_tokens: { [bos]: { id: bos, ids: [first], tokens: [bos] } },
        },
      ],
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges, // the newer [a, b] form
    },
  };
}

export function byteLevelConfig(): Json {
  const { bos, eos } = BYTE_LEVEL_SPECIAL;
  return {
    bos_token: bos,
    eos_token: eos,
    tokenizer_class: "PreTrainedTokenizerFast",
    clean_up_tokenization_spaces: true,
  };
}

/** `<0x00>` … `<0xFF>`, the byte-fallback tokens of SentencePiece BPE. */
export const BYTE_TOKENS = Array.from(
  { length: 256 },
  (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`,
);

/**
 * Llama-2 style SentencePiece BPE: normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer,
 * byte fallback over `<0x00>`…`<0xFF>` (ids 3…258), SentencePiece decoder sequence, BOS template.
 * Characters outside the merges' alphabet ("é", "😀", "日") fall back to bytes.
 */
export function llamaSentencePiece(): Json {
  const merges = mergesFor(LLAMA_WORDS);
  const alphabet = [...new Set(LLAMA_WORDS.flatMap((w) => Array.from(w)))];
  const vocab = bpeVocab(["<unk>", "<s>", "</s>", ...BYTE_TOKENS, ...alphabet], merges, 0);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [addedToken(0, "<unk>", true), addedToken(1, "<s>", true), addedToken(2, "</s>", true)],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`), // the older "a b" form
    },
  };
}

/** tokenizer_config.json of Llama 2, special tokens in the AddedToken object form. */
export function llamaConfig(): Json {
  const token = (content: string) => ({
    __type: "AddedToken",
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
  });
  return {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: token("<s>"),
    eos_token: token("</s>"),
    unk_token: token("<unk>"),
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: false,
    tokenizer_class: "LlamaTokenizer",
  };
}

/** BERT style WordPiece; its decoder does not clean up, so tokenizer_config's clean-up flag matters. */
export function wordPiece(): Json {
  const words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "do", "n", "'", "t", "s", "m", "re", "ve", "i", "you"];
  const more = ["hello", "world", ".", ",", "?", "!", "the", "##s", "##n", "##'", "##t", "##re", "##ve"];
  const vocab = Object.fromEntries([...words, ...more].map((w, i) => [w, i]));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].map((t, i) => addedToken(i, t, true)),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: { type: "BertProcessing", sep: ["[SEP]", 3], cls: ["[CLS]", 2] },
    decoder: { type: "WordPiece", prefix: "##", cleanup: false },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

export function wordPieceConfig(): Json {
  return {
    cls_token: "[CLS]",
    sep_token: "[SEP]",
    pad_token: "[PAD]",
    unk_token: "[UNK]",
    clean_up_tokenization_spaces: true,
  };
}
