// Fuzzing the request parser: random JSON values and mutations of valid bodies (fields dropped,
// retyped, set to extreme numbers, nested), raw byte noise, sent to both generation endpoints. The
// server never answers 500, never crashes, and still serves a valid request at the end. Seeded, and
// bounded in time.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type ScriptedEvent, ScriptedExecutor, scriptedApp } from "./scripted_executor.ts";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const VALID: Record<string, unknown>[] = [
  { model: "scripted", prompt: [1, 2, 3], max_tokens: 4, temperature: 0.7, stop: ["x"], n: 2, logprobs: 1 },
  {
    model: "scripted",
    prompt: [[1], [2, 3]],
    stream: true,
    stream_options: { include_usage: true },
    seed: 3,
  },
  { model: "scripted", messages: [{ role: "user", content: "hi" }], logprobs: true, top_p: 0.9 },
];

test("fuzzed bodies: never a 500, and the server keeps serving", async () => {
  const ex = new ScriptedExecutor(() => [
    { sequenceIndex: 0, tokenIds: [5], text: "a", finishReason: "end" } as ScriptedEvent,
  ]);
  const { app, ctx } = scriptedApp(ex);
  ctx.model.chatTemplate = { render: () => "x" } as unknown as typeof ctx.model.chatTemplate;
  const r = rng(1234);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const EXTREMES = [0, -1, 1, 0.5, -0.0, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 1e-320, 64, 65, 100, -100, 101];
  const value = (depth: number): unknown => {
    const k = r();
    if (k < 0.2) return pick(EXTREMES);
    if (k < 0.35) return pick(["", "x", "scripted", "\u0000", "😀", "a".repeat(300), "__proto__"]);
    if (k < 0.45) return pick([true, false, null]);
    if (depth > 2) return 1;
    if (k < 0.7) return Array.from({ length: Math.floor(r() * 4) }, () => value(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = 0; i < Math.floor(r() * 4); i++) o[pick(FIELDS)] = value(depth + 1);
    return o;
  };
  const FIELDS = [
    ...new Set([
      ...VALID.flatMap((v) => Object.keys(v)),
      "type",
      "text",
      "role",
      "content",
      "logit_bias",
      "best_of",
    ]),
    "use_beam_search",
    "min_tokens",
    "stop_token_ids",
    "top_k",
    "echo",
    "max_completion_tokens",
    "top_logprobs",
  ];
  const deadline = Date.now() + 3000;
  let sent = 0;
  const statuses = new Map<number, number>();
  while (Date.now() < deadline && sent < 3000) {
    const url = r() < 0.5 ? "/v1/completions" : "/v1/chat/completions";
    let payload: string;
    const k = r();
    if (k < 0.15) payload = JSON.stringify(value(0));
    else if (k < 0.25) {
      const s = JSON.stringify(pick(VALID));
      const at = Math.floor(r() * s.length);
      payload = s.slice(0, at) + pick(["", "{", "]", '"', "\\", ",", "\u0000"]) + s.slice(at + 1);
    } else {
      const body: Record<string, unknown> = structuredClone(pick(VALID));
      for (let i = 0; i < 1 + Math.floor(r() * 3); i++) {
        const key = pick([...Object.keys(body), ...FIELDS]);
        if (r() < 0.2) delete body[key];
        else body[key] = value(1);
      }
      payload = JSON.stringify(body);
    }
    const res = await app.inject({
      method: "POST",
      url,
      payload,
      headers: { "content-type": "application/json" },
    });
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    assert.ok(
      res.statusCode < 500,
      `${res.statusCode} for ${url} ${payload.slice(0, 300)}: ${res.body.slice(0, 300)}`,
    );
    if (res.statusCode >= 400) assert.ok(res.json().error.message, "OpenAI error shape");
    sent++;
  }
  assert.ok(sent > 200, `only ${sent} bodies in the time allowed`);
  assert.ok((statuses.get(200) ?? 0) > 0 && (statuses.get(400) ?? 0) > 0, JSON.stringify([...statuses]));
  assert.equal(ctx.inFlight.numAdmitted, 0);
  const ok = await app.inject({ method: "POST", url: "/v1/completions", payload: VALID[0] });
  assert.equal(ok.statusCode, 200);
});
