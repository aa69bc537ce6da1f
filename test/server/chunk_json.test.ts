// Streamed chunks built from pre-serialised parts must be byte for byte what JSON.stringify gives for
// the chunk object (key order, escapes, the usage: null of include_usage).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChunkJson, chatChoiceJson, completionChoiceJson } from "../../src/server/openai/chunk_json.ts";

const TEXTS = ["", " the", 'quote " and \\ back', "line\nbreak\ttab", "é 中文 🙂", "\u0000\u001f\u2028"];
const fixed = { id: 'cmpl-"x"', object: "text_completion", created: 1733400000, model: "a/b \u00e9" };

test("a completions chunk equals JSON.stringify of its object", () => {
  for (const usageNull of [false, true])
    for (const text of TEXTS)
      for (const [lp, finish] of [
        [null, null],
        [{ tokens: ["a"], token_logprobs: [-0.5], top_logprobs: null, text_offset: [3] }, "length"],
        [null, "stop"],
      ] as const) {
        const want = JSON.stringify({
          ...fixed,
          choices: [{ index: 3, text, logprobs: lp, finish_reason: finish }],
          ...(usageNull ? { usage: null } : {}),
        });
        const got = new ChunkJson(fixed, usageNull).of(completionChoiceJson(3, text, lp, finish));
        assert.equal(got, want);
      }
});

test("a chat chunk equals JSON.stringify of its object", () => {
  const chat = { ...fixed, object: "chat.completion.chunk" };
  for (const usageNull of [false, true])
    for (const delta of [{ role: "assistant", content: "" }, {}, ...TEXTS.map((content) => ({ content }))]) {
      const want = JSON.stringify({
        ...chat,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: null }],
        ...(usageNull ? { usage: null } : {}),
      });
      const got = new ChunkJson(chat, usageNull).of(chatChoiceJson(0, JSON.stringify(delta), null, null));
      assert.equal(got, want);
    }
});

test("fields beyond id, object, created and model are not part of the envelope", () => {
  const extra = { ...fixed, choices: ["x"], usage: 1 } as typeof fixed;
  assert.equal(
    new ChunkJson(extra, false).of("{}"),
    '{"id":"cmpl-\\"x\\"","object":"text_completion","created":1733400000,"model":"a/b é","choices":[{}]}',
  );
});
