// A small fastify app that imitates an OpenAI-compatible streaming /v1/completions at a fixed pace:
// the first chunk after firstMs, then one text chunk every gapMs up to max_tokens, a final chunk with
// finish_reason, a usage chunk and `data: [DONE]`; `tokenText: ""` streams token chunks without text,
// as a server without a tokenizer does (kiln serve on a random-weight checkpoint). It records each request's body and arrival time
// and how many were in flight at most. For the serving benchmark's tests.
import type { AddressInfo } from "node:net";
import Fastify from "fastify";

export interface FakeOpenAiServer {
  url: string;
  /** Each completion request, in arrival order (performance.now()). */
  seen: { body: Record<string, unknown>; at: number }[];
  /** Completions in flight at most since the last reset(). */
  maxInFlight: number;
  /** While true, completions answer 400 with an OpenAI error. */
  refuse: boolean;
  reset(): void;
  close(): Promise<void>;
}

export async function startFakeOpenAi(
  firstMs: number,
  gapMs: number,
  { tokenText = "ab" }: { tokenText?: string } = {},
): Promise<FakeOpenAiServer> {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const app = Fastify({ logger: false, forceCloseConnections: true });
  let inFlight = 0;
  const fake: FakeOpenAiServer = {
    url: "",
    seen: [],
    maxInFlight: 0,
    refuse: false,
    reset() {
      fake.seen.length = 0;
      fake.maxInFlight = 0;
    },
    close: () => app.close(),
  };
  app.get("/v1/models", async () => ({ object: "list", data: [{ id: "fake", object: "model" }] }));
  app.post("/v1/completions", async (req, reply) => {
    const body = req.body as Record<string, unknown>;
    if (fake.refuse)
      return reply.code(400).send({ error: { message: "max_tokens is too large", code: 400 } });
    fake.seen.push({ body, at: performance.now() });
    inFlight++;
    fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
    const raw = reply.hijack().raw;
    raw.writeHead(200, { "content-type": "text/event-stream" });
    const data = (x: unknown) => raw.write(`data: ${JSON.stringify(x)}\n\n`);
    const chunk = (text: string, finish: string | null) =>
      data({ object: "text_completion", choices: [{ index: 0, text, finish_reason: finish }] });
    const n = body.max_tokens as number;
    for (let i = 0; i < n; i++) {
      await sleep(i === 0 ? firstMs : gapMs);
      chunk(tokenText, null);
    }
    chunk("", "length");
    data({ choices: [], usage: { prompt_tokens: 0, completion_tokens: n } });
    raw.write("data: [DONE]\n\n");
    inFlight--;
    raw.end();
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  fake.url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return fake;
}
