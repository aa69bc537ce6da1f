// Tokenization equals Python Hugging Face tokenizers on byte-level BPE (Llama 3 / Qwen style) and
// SentencePiece-style byte-fallback BPE (Llama 2 / Mistral style), using the ids, tokens and decodes
// tools/make_fixtures.py recorded with transformers' AutoTokenizer.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "../../src/tokenizer/tokenizer.ts";
import { kiln } from "../helpers/cli.ts";

interface TokRecord {
  text: string;
  ids: number[];
  idsNoSpecial: number[];
  tokens: string[];
  decoded: string;
  decodedSkipSpecial: string;
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dirs = [
  ...readdirSync(join(ROOT, "test/fixtures/models")).map((n) => ({
    dir: join(ROOT, "test/fixtures/models", n),
    expected: join(ROOT, "test/fixtures/models", n, "expected.json"),
  })),
  { dir: join(ROOT, "models/default"), expected: join(ROOT, "test/fixtures/default_model_expected.json") },
];

for (const { dir, expected } of dirs) {
  const records: TokRecord[] = JSON.parse(readFileSync(expected, "utf8")).tokenization;
  describe(`tokenization equals HF: ${dir.split("/").pop()}`, () => {
    const tok = Tokenizer.fromDir(dir);
    for (const r of records) {
      test(JSON.stringify(r.text), () => {
        const withSpecial = tok.encode(r.text, { addSpecialTokens: true });
        assert.deepEqual(withSpecial.ids, r.ids, "ids");
        assert.deepEqual(withSpecial.tokens, r.tokens, "tokens");
        assert.deepEqual(
          tok.encode(r.text, { addSpecialTokens: false }).ids,
          r.idsNoSpecial,
          "ids without special tokens",
        );
        assert.equal(tok.decode(r.ids), r.decoded, "decode");
        assert.equal(
          tok.decode(r.ids, { skipSpecialTokens: true }),
          r.decodedSkipSpecial,
          "decode skipping special tokens",
        );
      });
    }
  });
}

test("kiln tokenize --json prints HF's ids and tokens", () => {
  const d = dirs.find((x) => x.dir.endsWith("mistral-sp-trained"));
  assert.ok(d);
  const rec: TokRecord = JSON.parse(readFileSync(d.expected, "utf8")).tokenization[3];
  const r = kiln(["tokenize", "--model", d.dir, "--text", rec.text, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { ids: rec.ids, tokens: rec.tokens });
  const n = kiln(["tokenize", "--model", d.dir, "--text", rec.text, "--no-special-tokens", "--json"]);
  assert.deepEqual(JSON.parse(n.stdout).ids, rec.idsNoSpecial);
});
