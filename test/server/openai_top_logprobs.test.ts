// Top log-probabilities through the official `openai` client against `kiln serve` on the bundled model
// (CPU): chat `top_logprobs` and completions `logprobs: k`, streamed and not. Each position's top
// entries are sorted, hold the chosen token when it is in the top k (with its own logprob), and equal
// what the executor returns for the same request (ExecutorRequest.topLogProbs).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { ExecutorRequest } from "../../src/executor/executor_request.ts";
import type { TokenLogProb } from "../../src/executor/request_results.ts";
import { encodeChat } from "../../src/runtime/chat_template.ts";
import { type BundledServer, bundledServer, kvIdle } from "./server_helpers.ts";

let s: BundledServer;
let client: OpenAI;
const MODEL = "default";

before(async () => {
  s = await bundledServer();
  client = new OpenAI({ baseURL: `${s.server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(() => s.close());

const text = (id: number) =>
  (s.runner.session.tokenizer as NonNullable<typeof s.runner.session.tokenizer>).decode([id], {
    skipSpecialTokens: false,
  });

/** The served executor's answer to `r`: its tokens, logProbs and top lists. */
async function direct(r: ExecutorRequest) {
  const ex = s.server.ctx.model.executor;
  const out = { tokens: [] as number[], logProbs: [] as number[], top: [] as TokenLogProb[][] };
  for await (const ev of ex.results(await ex.enqueue(r))) {
    out.tokens.push(...ev.tokenIds);
    out.logProbs.push(...ev.logProbs);
    out.top.push(...(ev.topLogProbs ?? []));
  }
  return out;
}

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a} vs ${b}`);

type ChatToken = OpenAI.Chat.Completions.ChatCompletionTokenLogprob;

function checkChat(content: ChatToken[], want: Awaited<ReturnType<typeof direct>>, k: number, what: string) {
  assert.equal(content.length, want.tokens.length, what);
  content.forEach((t, i) => {
    assert.equal(t.token, text(want.tokens[i]), `${what} token ${i}`);
    close(t.logprob, want.logProbs[i], `${what} token ${i}`);
    assert.equal(t.top_logprobs.length, k, `${what} token ${i}: k entries`);
    t.top_logprobs.forEach((e, j) => {
      assert.equal(e.token, text(want.top[i][j].tokenId), `${what} token ${i} entry ${j}`);
      close(e.logprob, want.top[i][j].logProb, `${what} token ${i} entry ${j}`);
      assert.deepEqual(e.bytes, [...Buffer.from(e.token, "utf8")]);
      if (j > 0) assert.ok(t.top_logprobs[j - 1].logprob >= e.logprob, "not sorted");
    });
    const mine = want.top[i].findIndex((e) => e.tokenId === want.tokens[i]);
    if (mine >= 0) assert.equal(t.top_logprobs[mine].logprob, t.logprob, "the chosen token's entry differs");
  });
}

describe("top log-probs through the openai client", () => {
  const messages = [{ role: "user" as const, content: "Speak, Romeo." }];
  const K = 4;

  test("chat top_logprobs: sorted, the chosen token first (greedy), equal to the executor's", async () => {
    const tok = s.runner.session.tokenizer as NonNullable<typeof s.runner.session.tokenizer>;
    const ids = encodeChat(tok, messages, { template: s.server.ctx.model.chatTemplate ?? undefined });
    const want = await direct({ prompt: ids, maxNewTokens: 10, greedy: true, topLogProbs: K });
    const body = { model: MODEL, messages, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: K };
    const plain = await client.chat.completions.create(body);
    const content = plain.choices[0].logprobs?.content ?? [];
    checkChat(content, want, K, "chat");
    content.forEach((t) => assert.equal(t.top_logprobs[0].token, t.token, "greedy token not first"));
    const streamed: ChatToken[] = [];
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true }))
      for (const c of chunk.choices) streamed.push(...(c.logprobs?.content ?? []));
    checkChat(streamed, want, K, "chat streamed");
    assert.ok(kvIdle(s.server).idle, kvIdle(s.server).detail);
  });

  test("completions logprobs k: {token: logprob} dicts, most likely first, the chosen token included", async () => {
    const prompt = "ROMEO:";
    const sampling = { temperature: 0.8, seed: 7 };
    const want = await direct({ prompt, maxNewTokens: 12, ...sampling, topLogProbs: K });
    // The executor's top k (first of equal texts kept), then the chosen token if not among them.
    const dicts = want.tokens.map((id, i) => {
      const d: Record<string, number> = {};
      for (const e of want.top[i]) if (!(text(e.tokenId) in d)) d[text(e.tokenId)] = e.logProb;
      if (!(text(id) in d)) d[text(id)] = want.logProbs[i];
      return d;
    });
    const body = { model: MODEL, prompt, max_tokens: 12, ...sampling, logprobs: K };
    const plain = await client.completions.create(body);
    let streamed: Record<string, number>[] = [];
    for await (const chunk of await client.completions.create({ ...body, stream: true }))
      for (const c of chunk.choices) streamed = streamed.concat(c.logprobs?.top_logprobs ?? []);
    for (const [what, got] of [
      ["plain", plain.choices[0].logprobs?.top_logprobs ?? []],
      ["streamed", streamed],
    ] as const) {
      assert.equal(got.length, want.tokens.length, what);
      got.forEach((d, i) => {
        const entries = Object.entries(d);
        assert.deepEqual(
          entries.map(([t]) => t),
          Object.keys(dicts[i]),
          `${what} position ${i}: keys`,
        );
        entries.forEach(([t, lp]) => close(lp, dicts[i][t], `${what} position ${i} ${JSON.stringify(t)}`));
        const top = entries.slice(0, want.top[i].length).map(([, lp]) => lp);
        for (let j = 1; j < top.length; j++)
          assert.ok(top[j - 1] >= top[j], `${what} position ${i}: not sorted`);
        assert.ok(text(want.tokens[i]) in d, `${what} position ${i}: the chosen token is missing`);
        assert.ok(entries.length >= Math.min(K, want.top[i].length), `${what} position ${i}: too few`);
      });
    }
    const chosen = plain.choices[0].logprobs?.token_logprobs ?? [];
    chosen.forEach((lp, i) => close(lp as number, want.logProbs[i], `token_logprobs ${i}`));
    assert.ok(kvIdle(s.server).idle, kvIdle(s.server).detail);
  });
});
