// Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` at the
// end. Writes wait for the socket to drain (a slow reader slows its own stream, nothing else); once
// the client is gone every write is a no-op.
import { once } from "node:events";
import type { ServerResponse } from "node:http";
import { Socket } from "node:net";

export class SseStream {
  constructor(private readonly res: ServerResponse) {}

  /** Sends the headers (status 200). */
  open(headers: Record<string, string>): void {
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      ...headers,
    });
    this.res.flushHeaders();
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  async send(chunk: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(chunk)}\n\n`);
  }

  /** A chunk already serialised (its JSON text). A promise only while the socket is backed up (wait
   * for it before the next chunk). */
  sendJson(json: string): Promise<void> | undefined {
    return this.write(`data: ${json}\n\n`);
  }

  /** `data: [DONE]` and the end of the response. */
  async done(): Promise<void> {
    await this.write("data: [DONE]\n\n");
    if (!this.closed) this.res.end();
  }

  /** Writes s; a promise (the socket's drain or close) only when the socket is backed up. */
  private write(s: string): Promise<void> | undefined {
    if (this.closed) return undefined;
    const socket = this.res.socket;
    if (this.res.chunkedEncoding && socket instanceof Socket) {
      // The response's own TCP socket, chunked: the chunk goes out framed as http frames it, in one
      // write; http's write would cork the socket, queue four buffers and uncork on the next tick, a
      // large share of the server's work per token at a thousand streams. (A response queued behind a
      // pipelined one has no socket yet, and an injected one a stand-in: both go through http;
      // res.end writes the last chunk either way.)
      if (!socket.writable) return undefined;
      if (socket.write(`${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`) || this.closed) return undefined;
      return drained(socket, this.res);
    }
    if (this.res.write(s) || this.closed) return undefined;
    return drained(this.res, this.res);
  }
}

/** Resolves when `stream` drains or the response closes. */
async function drained(stream: NodeJS.EventEmitter, res: ServerResponse): Promise<void> {
  await Promise.race([once(stream, "drain"), once(res, "close")]);
}
