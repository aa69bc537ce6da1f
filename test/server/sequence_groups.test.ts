// n > 1 and beam search through `kiln serve` on the bundled model, driven by the official `openai`
// client (Triton's beam_width by fetch): each choice equals the sequence of the same index that
// ModelRunner.generate gives for numReturnSequences / beamWidth, for completions and chat, streamed
// (n > 1) and not. Streaming beam search is refused with 400 naming the field.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { encodeChat } from "../../src/runtime/chat_template.ts";
import type { GenerationOutput } from "../../src/runtime/model_runner.ts";
import { type BundledServer, bundledServer, kvIdle } from "./server_helpers.ts";

let s: BundledServer;
let client: OpenAI;
const MODEL = "default";
const PROMPT = "First Citizen:\nBefore we proceed";
const MESSAGES = [{ role: "user" as const, content: "Speak, Romeo." }];

before(async () => {
  s = await bundledServer();
  client = new OpenAI({ baseURL: `${s.server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(() => s.close());

const finish = (r: string) => (r === "length" ? "length" : "stop");
const chatIds = () => {
  const tok = s.runner.session.tokenizer as NonNullable<typeof s.runner.session.tokenizer>;
  return encodeChat(tok, MESSAGES, { template: s.server.ctx.model.chatTemplate ?? undefined });
};

/** The runner's sequences as [text, finish_reason] per choice index. */
function expected(w: GenerationOutput): [string, string][] {
  return w.sequences.map((q) => [q.text, finish(q.finishReason)]);
}

/** Choice index → [text, finish_reason] from stream chunks. */
function gather(parts: { index: number; text: string; finish: string | null }[], n: number) {
  const out: [string, string | null][] = Array.from({ length: n }, () => ["", null]);
  for (const p of parts) {
    assert.equal(out[p.index][1], null, `choice ${p.index}: nothing after its finish reason`);
    out[p.index][0] += p.text;
    out[p.index][1] = p.finish;
  }
  return out;
}

describe("n > 1 and beam search through the openai client", () => {
  const sampled = { maxNewTokens: 12, numReturnSequences: 3, temperature: 1, seed: 7 };

  test("completions, n 3 with a seed: each choice equals generate's numReturnSequences 3, streamed or not", async () => {
    const [want] = await s.runner.generate(PROMPT, sampled);
    assert.equal(want.sequences.length, 3);
    assert.ok(new Set(want.sequences.map((q) => q.text)).size > 1, "the three samples differ");
    const body = { model: MODEL, prompt: PROMPT, max_tokens: 12, n: 3, temperature: 1, seed: 7 };
    const plain = await client.completions.create(body);
    assert.deepEqual(
      plain.choices.map((c) => [c.text, c.finish_reason]),
      expected(want),
    );
    const total = want.sequences.reduce((k, q) => k + q.outputIds.length, 0);
    assert.equal(plain.usage?.completion_tokens, total);
    const parts = [];
    for await (const chunk of await client.completions.create({ ...body, stream: true }))
      for (const c of chunk.choices) parts.push({ index: c.index, text: c.text, finish: c.finish_reason });
    assert.deepEqual(gather(parts, 3), expected(want));
    assert.ok(kvIdle(s.server).idle, kvIdle(s.server).detail);
  });

  test("chat, n 3 with a seed: each choice equals generate's, streamed or not", async () => {
    const [want] = await s.runner.generate({ ids: chatIds() }, sampled);
    const body = { model: MODEL, messages: MESSAGES, max_tokens: 12, n: 3, temperature: 1, seed: 7 };
    const plain = await client.chat.completions.create(body);
    assert.deepEqual(
      plain.choices.map((c) => [c.message.content, c.finish_reason]),
      expected(want),
    );
    const parts = [];
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true }))
      for (const c of chunk.choices)
        parts.push({ index: c.index, text: c.delta.content ?? "", finish: c.finish_reason });
    assert.deepEqual(gather(parts, 3), expected(want));
  });

  test("use_beam_search (best_of 3, n 2, length_penalty): the choices equal generate's beams", async () => {
    const beams = { maxNewTokens: 10, beamWidth: 3, numReturnSequences: 2, lengthPenalty: 0.8 };
    const extra = { use_beam_search: true, best_of: 3, n: 2, length_penalty: 0.8, max_tokens: 10 };
    const [want] = await s.runner.generate(PROMPT, beams);
    assert.equal(want.sequences.length, 2);
    const plain = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      ...extra,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.deepEqual(
      plain.choices.map((c) => [c.text, c.finish_reason]),
      expected(want),
    );
    const [wantChat] = await s.runner.generate({ ids: chatIds() }, beams);
    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      ...extra,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.deepEqual(
      chat.choices.map((c) => [c.message.content, c.finish_reason]),
      expected(wantChat),
    );
    assert.ok(kvIdle(s.server).idle, kvIdle(s.server).detail);
  });

  test("streamed beam search and beams with stop are 400s naming the field", async () => {
    const ask = (more: object) =>
      client.completions.create({
        model: MODEL,
        prompt: PROMPT,
        use_beam_search: true,
        best_of: 2,
        ...more,
      } as OpenAI.CompletionCreateParamsNonStreaming);
    for (const [more, param] of [
      [{ stream: true }, "stream"],
      [{ stop: ["x"] }, "stop"],
    ] as const)
      await assert.rejects(ask(more), (e: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(e.status, 400);
        assert.equal((e.error as { param: string }).param, param);
        return true;
      });
  });
});

test("Triton beam_width 3: text_output lists every beam, best first, as generate's beam search", async () => {
  const [want] = await s.runner.generate(PROMPT, { maxNewTokens: 8, beamWidth: 3, numReturnSequences: 3 });
  const r = await fetch(`${s.server.url}/v2/models/${MODEL}/generate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      text_input: PROMPT,
      max_tokens: 8,
      beam_width: 3,
      exclude_input_in_output: true,
      return_log_probs: true,
    }),
  });
  assert.equal(r.status, 200);
  const body = (await r.json()) as { text_output: string[]; cum_log_probs: number[] };
  assert.deepEqual(
    body.text_output,
    want.sequences.map((q) => q.text),
  );
  body.cum_log_probs.forEach((c, i) => {
    assert.ok(Math.abs(c - want.sequences[i].cumLogProb) < 1e-4, `beam ${i}: ${c}`);
  });
});
