// TextTracker's deltas with a stop-string holdback never split a surrogate pair, whatever the
// holdback and wherever the pair falls; the deltas and the final flush add up to the whole text.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { TextTracker } from "../../src/executor/text_tracker.ts";
import { Tokenizer } from "../../src/tokenizer/tokenizer.ts";

const tokenizer = Tokenizer.fromDir(BUNDLED_MODEL_DIR);
const split = (s: string) => /[\uD800-\uDBFF]$|^[\uDC00-\uDFFF]/.test(s);

test("no delta ends inside a surrogate pair, for every holdback", () => {
  const text = "ab😀c😀😀d 𝄞x";
  const ids = tokenizer.encode(text, { addSpecialTokens: false }).ids;
  for (let holdback = 0; holdback <= 6; holdback++) {
    const t = new TextTracker(tokenizer, [], holdback);
    const deltas: string[] = [];
    for (const id of ids) {
      t.push(id);
      deltas.push(t.delta());
    }
    deltas.push(t.finish());
    for (const d of deltas) assert.ok(!split(d), `holdback ${holdback}: ${JSON.stringify(d)} splits a pair`);
    assert.equal(deltas.join(""), text, `holdback ${holdback}`);
  }
});

test("a holdback edge between the halves of a pair keeps the whole character back", () => {
  const t = new TextTracker(null, [], 1);
  t.text = "a😀";
  assert.equal(t.delta(), "a");
  t.text += "b";
  assert.equal(t.delta(), "😀");
  assert.equal(t.finish(), "b");
});
