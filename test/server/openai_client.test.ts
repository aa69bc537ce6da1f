// The official `openai` client against `kiln serve` on the bundled model (CPU, loopback): completions
// and chat, streamed and not, with stop, seed and logprobs. Greedy answers equal ModelRunner.generate
// for the same request token for token (the tokens' text, their log-probabilities, the text and the
// finish reason), also with 32 requests in flight at once.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { encodeChat } from "../../src/runtime/chat_template.ts";
import type { GenerationOutput } from "../../src/runtime/model_runner.ts";
import { type BundledServer, bundledServer, kvIdle } from "./server_helpers.ts";

let s: BundledServer;
let client: OpenAI;
const MODEL = "default";

before(async () => {
  s = await bundledServer();
  client = new OpenAI({ baseURL: `${s.server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(() => s.close());

const PROMPTS = [
  "ROMEO:",
  "First Citizen:\nBefore we proceed",
  "KING RICHARD",
  "O",
  "What say you, my lord?",
];

const finish = (w: GenerationOutput) => (w.finishReason === "length" ? "length" : "stop");
const tokenTexts = (ids: readonly number[]) =>
  ids.map((id) =>
    (s.runner.session.tokenizer as NonNullable<typeof s.runner.session.tokenizer>).decode([id]),
  );

function closeTo(got: readonly number[], want: readonly number[], what: string) {
  assert.equal(got.length, want.length, what);
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-4, `${what}: logprob ${i} ${g} vs ${want[i]}`));
}

describe("kiln serve through the openai client", () => {
  test("greedy completions equal ModelRunner.generate token for token, 32 requests in flight", async () => {
    const reqs = Array.from({ length: 32 }, (_, i) => ({
      prompt: PROMPTS[i % PROMPTS.length],
      max: 8 + (i % 7) * 3,
    }));
    const got = await Promise.all(
      reqs.map((r) =>
        client.completions.create({
          model: MODEL,
          prompt: r.prompt,
          max_tokens: r.max,
          temperature: 0,
          logprobs: 0,
        }),
      ),
    );
    for (const [i, r] of reqs.entries()) {
      const [want] = await s.runner.generate(r.prompt, { maxNewTokens: r.max, greedy: true });
      const c = got[i].choices[0];
      assert.equal(c.text, want.text, `request ${i}`);
      assert.deepEqual(c.logprobs?.tokens, tokenTexts(want.outputIds), `request ${i}`);
      closeTo(c.logprobs?.token_logprobs as number[], want.logProbs, `request ${i}`);
      assert.equal(c.finish_reason, finish(want));
      assert.equal(got[i].usage?.completion_tokens, want.outputIds.length);
    }
    assert.ok(kvIdle(s.server).idle, kvIdle(s.server).detail);
  });

  test("streamed completions add up to the plain answer; usage chunk last", async () => {
    const body = { model: MODEL, prompt: PROMPTS[1], max_tokens: 30, temperature: 0 };
    const plain = await client.completions.create(body);
    const stream = await client.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let reason: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        assert.equal(reason, null, "nothing after the finish reason");
        text += c.text;
        reason = c.finish_reason;
      }
    }
    assert.equal(text, plain.choices[0].text);
    assert.equal(reason, plain.choices[0].finish_reason);
    assert.deepEqual(usage, plain.usage);
  });

  test("stop strings cut the text where generate cuts it, streamed or not; include_stop_str_in_output", async () => {
    const [free] = await s.runner.generate(PROMPTS[0], { maxNewTokens: 30, greedy: true, ignoreEos: true });
    const word = free.text.trim().split(/\s+/)[2];
    assert.ok(word, free.text);
    const [want] = await s.runner.generate(PROMPTS[0], { maxNewTokens: 30, greedy: true, stopWords: [word] });
    assert.equal(want.finishReason, "stop");
    const body = { model: MODEL, prompt: PROMPTS[0], max_tokens: 30, temperature: 0, stop: [word] };
    const plain = await client.completions.create(body);
    assert.equal(plain.choices[0].text, want.text);
    assert.equal(plain.choices[0].finish_reason, "stop");
    let streamed = "";
    for await (const chunk of await client.completions.create({ ...body, stream: true })) {
      for (const c of chunk.choices) {
        streamed += c.text;
        assert.ok(!streamed.includes(word), `the stop string was emitted: ${JSON.stringify(streamed)}`);
      }
    }
    assert.equal(streamed, want.text);
    const withStop = await client.completions.create({
      ...body,
      include_stop_str_in_output: true,
    } as typeof body);
    assert.equal(withStop.choices[0].text, want.text + word);
  });

  test("chat: the template's prompt, greedy equal to generate; streamed role first and the same text", async () => {
    const messages = [
      { role: "system" as const, content: "You are a player." },
      { role: "user" as const, content: "Speak, Romeo." },
    ];
    const tok = s.runner.session.tokenizer as NonNullable<typeof s.runner.session.tokenizer>;
    const ids = encodeChat(tok, messages, { template: s.server.ctx.model.chatTemplate ?? undefined });
    const [want] = await s.runner.generate({ ids }, { maxNewTokens: 20, greedy: true });
    const plain = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_completion_tokens: 20,
      temperature: 0,
      logprobs: true,
    });
    const c = plain.choices[0];
    assert.equal(c.message.role, "assistant");
    assert.equal(c.message.content, want.text);
    assert.equal(plain.usage?.prompt_tokens, ids.length);
    assert.deepEqual(
      c.logprobs?.content?.map((t) => t.token),
      tokenTexts(want.outputIds),
    );
    closeTo(c.logprobs?.content?.map((t) => t.logprob) ?? [], want.logProbs, "chat");
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [messages[0], { role: "user", content: [{ type: "text", text: "Speak, Romeo." }] }],
      max_tokens: 20,
      temperature: 0,
      stream: true,
    });
    let text = "";
    let first = true;
    let reason: string | null = null;
    for await (const chunk of stream) {
      const d = chunk.choices[0];
      if (first) assert.equal(d.delta.role, "assistant");
      first = false;
      text += d.delta.content ?? "";
      reason = d.finish_reason;
    }
    assert.equal(text, want.text);
    assert.equal(reason, finish(want));
  });

  test("seed: the same seed gives the same sampled text; the seeds give different texts", async () => {
    const ask = (seed: number) =>
      client.completions
        .create({ model: MODEL, prompt: PROMPTS[2], max_tokens: 24, temperature: 1, seed })
        .then((r) => r.choices[0].text);
    const [a, b] = await Promise.all([ask(11), ask(11)]);
    assert.equal(a, b);
    const others = await Promise.all([12, 13, 14, 15].map(ask));
    assert.ok(
      others.some((t) => t !== a),
      "every seed gave the same text",
    );
  });

  test("usage.prompt_tokens_details.cached_tokens: a request over a long shared prefix reports its cached whole blocks", async () => {
    const tok = s.runner.session.tokenizer as NonNullable<typeof s.runner.session.tokenizer>;
    const B = s.server.ctx.model.executor.stats().kv.tokensPerBlock;
    const prefix = tok.encode("Now is the winter of our discontent made glorious summer. ".repeat(6)).ids;
    assert.ok(prefix.length > 2 * B, `${prefix.length} tokens make at least two blocks of ${B}`);
    const ask = (tail: number[], stream: boolean) =>
      client.completions.create({
        model: MODEL,
        prompt: [...prefix, ...tail],
        max_tokens: 2,
        temperature: 0,
        ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
      } as OpenAI.CompletionCreateParamsNonStreaming);
    const first = await ask([11], false);
    assert.deepEqual(first.usage?.prompt_tokens_details, { cached_tokens: 0 });
    const second = await ask([12, 13], false);
    const whole = Math.floor(prefix.length / B) * B;
    assert.equal(second.usage?.prompt_tokens, prefix.length + 2);
    assert.deepEqual(second.usage?.prompt_tokens_details, { cached_tokens: whole });
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    const stream = (await ask([14], true)) as unknown as AsyncIterable<OpenAI.Completion>;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    assert.deepEqual(usage?.prompt_tokens_details, { cached_tokens: whole });
  });

  test("client errors arrive as the client's APIError with status and param", async () => {
    await assert.rejects(
      client.completions.create({ model: MODEL, prompt: "x", temperature: 3 }),
      (e: InstanceType<typeof OpenAI.APIError>) =>
        e.status === 400 && (e.error as { param: string }).param === "temperature",
    );
    await assert.rejects(
      client.completions.create({ model: "nope", prompt: "x" }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404,
    );
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      [MODEL],
    );
  });
});
