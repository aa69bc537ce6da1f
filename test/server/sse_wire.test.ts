// SSE on a real socket, byte for byte: an HTTP/1.1 stream's chunks are framed as http frames them
// (hex byte length — not string length — CRLF, data, CRLF; a zero chunk at the end), and an HTTP/1.0
// client, which gets no chunked encoding, gets the bare events and the connection's close.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { type ScriptedEvent, ScriptedExecutor, scriptedApp } from "./scripted_executor.ts";

const TEXTS = ["é", " 中文", ' 🙂\n"q"'];
const events: ScriptedEvent[] = TEXTS.map((text, i) => ({
  tokenIds: [5 + i],
  text,
  finishReason: i === TEXTS.length - 1 ? "length" : null,
}));

const { app } = scriptedApp(new ScriptedExecutor(() => events));
let port = 0;
before(async () => {
  await app.listen({ host: "127.0.0.1", port: 0 });
  const a = app.server.address();
  port = typeof a === "object" && a ? a.port : 0;
});
after(() => app.close());

/** Sends raw request bytes and reads until the server closes or the chunked body ends. */
function exchange(version: "1.0" | "1.1"): Promise<Buffer> {
  const body = JSON.stringify({ model: "scripted", prompt: [1, 2], max_tokens: 3, stream: true });
  const head =
    `POST /v1/completions HTTP/${version}\r\nHost: x\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => s.end(head + body));
    const got: Buffer[] = [];
    s.on("data", (b: Buffer) => {
      got.push(b);
      if (Buffer.concat(got).includes("\r\n0\r\n\r\n")) s.destroy();
    });
    s.on("close", () => resolve(Buffer.concat(got)));
    s.on("error", reject);
  });
}

/** An SSE body's events, in order. */
function sseEvents(body: string): string[] {
  return body.split("\n\n").filter((e) => e !== "");
}

test("HTTP/1.1: every chunk framed by its byte length; the body's events are the OpenAI stream", async () => {
  const raw = await exchange("1.1");
  const split = raw.indexOf("\r\n\r\n");
  const head = raw.subarray(0, split).toString("latin1");
  assert.match(head, /^HTTP\/1\.1 200/);
  assert.match(head, /transfer-encoding: chunked/i);
  assert.match(head, /content-type: text\/event-stream/i);
  let at = split + 4;
  const datas: Buffer[] = [];
  for (;;) {
    const eol = raw.indexOf("\r\n", at);
    const size = Number.parseInt(raw.subarray(at, eol).toString("latin1"), 16);
    assert.ok(Number.isInteger(size), `a chunk size at byte ${at}`);
    const data = raw.subarray(eol + 2, eol + 2 + size);
    assert.equal(raw.subarray(eol + 2 + size, eol + 4 + size).toString("latin1"), "\r\n");
    at = eol + 4 + size;
    if (size === 0) break;
    datas.push(data);
  }
  assert.equal(at, raw.length, "nothing after the last chunk");
  const body = Buffer.concat(datas).toString("utf8");
  const evs = sseEvents(body);
  assert.equal(evs.at(-1), "data: [DONE]");
  const texts = evs.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0].text);
  assert.deepEqual(texts, TEXTS);
  // One chunk per event: each SSE event is its own chunk, whole.
  assert.ok(datas.every((d) => d.toString("utf8").endsWith("\n\n")));
});

test("HTTP/1.0: no chunked encoding, the bare events, then the connection closes", async () => {
  const raw = (await exchange("1.0")).toString("utf8");
  const split = raw.indexOf("\r\n\r\n");
  assert.match(raw.slice(0, split), /^HTTP\/1\.1 200/);
  assert.doesNotMatch(raw.slice(0, split), /transfer-encoding/i);
  const evs = sseEvents(raw.slice(split + 4));
  assert.equal(evs.at(-1), "data: [DONE]");
  assert.deepEqual(
    evs.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0].text),
    TEXTS,
  );
});
