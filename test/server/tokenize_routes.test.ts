// /tokenize and /detokenize on the bundled model: a prompt gives the tokenizer's ids (BOS unless
// add_special_tokens is false); messages give encodeChat's ids for the model's template; detokenize
// round-trips; errors are OpenAI-shaped 400/404s naming the field.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { encodeChat } from "../../src/runtime/chat_template.ts";
import { tokenizeRoutes } from "../../src/server/tokenize_routes.ts";
import type { Tokenizer } from "../../src/tokenizer/tokenizer.ts";
import { type BundledServer, bundledServer } from "./bundled_server.ts";

let s: BundledServer;
let tok: Tokenizer;
before(async () => {
  s = await bundledServer([tokenizeRoutes]);
  tok = s.ctx.model.tokenizer as Tokenizer;
});
after(() => s.close());

const post = (url: string, payload: object) => s.app.inject({ method: "POST", url, payload });
const TEXT = "To be, or not to be: that is the question.";

test("a prompt gives the tokenizer's ids, count and max_model_len", async () => {
  const r = await post("/tokenize", { model: "default", prompt: TEXT });
  assert.equal(r.statusCode, 200);
  const want = tok.encode(TEXT).ids;
  assert.equal(want[0], tok.bosTokenId, "BOS added by default");
  assert.deepEqual(r.json(), { count: want.length, max_model_len: 512, tokens: want });
  const bare = (
    await post("/tokenize", { prompt: TEXT, add_special_tokens: false, return_token_strs: true })
  ).json();
  assert.deepEqual(bare.tokens, tok.encode(TEXT, { addSpecialTokens: false }).ids);
  assert.deepEqual(
    bare.token_strs,
    bare.tokens.map((id: number) => tok.idToToken(id)),
  );
});

test("messages give encodeChat's ids, with and without the generation prompt", async () => {
  const messages = [
    { role: "system", content: "You are terse." },
    {
      role: "user",
      content: [
        { type: "text", text: "Who is" },
        { type: "text", text: "Hamlet?" },
      ],
    },
  ];
  const flat = [
    { role: "system", content: "You are terse." },
    { role: "user", content: "Who is\nHamlet?" },
  ];
  const template = s.ctx.model.chatTemplate ?? undefined;
  for (const add of [true, false]) {
    const r = await post("/tokenize", { model: "default", messages, add_generation_prompt: add });
    assert.equal(r.statusCode, 200, r.body);
    const want = encodeChat(tok, flat, { template, addGenerationPrompt: add });
    assert.deepEqual(r.json().tokens, want);
    assert.equal(r.json().count, want.length);
    assert.equal(tok.decode(want).endsWith("ASSISTANT:\n"), add);
  }
});

test("detokenize round-trips tokenize", async () => {
  const { tokens } = (await post("/tokenize", { prompt: TEXT, add_special_tokens: false })).json();
  const r = await post("/detokenize", { model: "default", tokens });
  assert.equal(r.statusCode, 200);
  assert.deepEqual(r.json(), { prompt: TEXT });
});

test("errors are OpenAI-shaped, naming the field", async () => {
  const cases: [string, object, number, string, RegExp][] = [
    ["/tokenize", { model: "gpt-4", prompt: "x" }, 404, "model", /"gpt-4" is not served/],
    ["/tokenize", { prompt: 3 }, 400, "prompt", /prompt must be a string/],
    ["/tokenize", { prompt: "x", messages: [] }, 400, "prompt", /not both/],
    ["/tokenize", { messages: [{ role: "wizard", content: "x" }] }, 400, "messages", /wizard/],
    ["/tokenize", { messages: [] }, 400, "messages", /non-empty/],
    ["/tokenize", { prompt: "x", add_special_tokens: 1 }, 400, "add_special_tokens", /true or false/],
    ["/tokenize", { prompt: "x", tools: [] }, 400, "tools", /field tools is not supported/],
    ["/detokenize", { tokens: [1, 99999] }, 400, "tokens", /99999 .*0\.\.2047/],
    ["/detokenize", { tokens: "abc" }, 400, "tokens", /list of token ids/],
  ];
  for (const [url, payload, status, param, message] of cases) {
    const r = await post(url, payload);
    assert.equal(r.statusCode, status, JSON.stringify(payload));
    const { error } = r.json();
    assert.equal(error.param, param);
    assert.equal(error.code, status);
    assert.match(error.message, message);
  }
});
