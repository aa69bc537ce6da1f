// `kiln serve` as a user starts it: with no model it serves the bundled one, prints one ready line with
// the real port (--port 0), answers, and exits 0 on SIGTERM. Bad flags are named errors, exit 2.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const KILN = fileURLToPath(new URL("../../bin/kiln", import.meta.url));

describe("kiln serve", () => {
  const cache = tempCache();
  after(() => cache.cleanup());

  test("serves the bundled model, prints the ready line, exits 0 on SIGTERM", async () => {
    const flags = ["--port", "0", "--log-level", "warn", "--max-kv-tokens", "1024"];
    const child = spawn(KILN, ["serve", ...flags, "--kv-cache-free-gpu-mem-fraction", "0.5"], {
      env: { ...process.env, KILN_CACHE_DIR: cache.dir, KILN_API_KEY: "k" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
    });
    const ready = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line; stderr: ${err}`)), 60_000);
      child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("\n")) {
          clearTimeout(timer);
          resolve(out.split("\n")[0]);
        }
      });
      child.once("exit", (code) => reject(new Error(`exited ${code} before ready; stderr: ${err}`)));
    });
    const m =
      /^kiln serve: (http:\/\/127\.0\.0\.1:(\d+)) {2}model default {2}backend cpu {2}KV capacity (\d+) tokens$/.exec(
        ready,
      );
    assert.ok(m, ready);
    assert.notEqual(m[2], "0", "the real port is printed");
    assert.equal(m[3], "1024", "--max-kv-tokens reaches the executor");
    const r = await fetch(`${m[1]}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer k" },
      body: JSON.stringify({ model: "default", prompt: "ROMEO:", max_tokens: 3 }),
    });
    assert.equal(r.status, 200, "KILN_API_KEY is the key");
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const [code] = await exited;
    assert.equal(code, 0, err);
    assert.equal(out.trim().split("\n").length, 1, `one line on stdout: ${out}`);
  });

  test("bad flags: named errors, exit 2", () => {
    assertUserError(
      kiln(["serve", "--port", "70000"]),
      "InvalidArgumentError",
      /--port expects a port number/,
    );
    assertUserError(
      kiln(["serve", "--request-timeout", "0"]),
      "InvalidArgumentError",
      /--request-timeout expects seconds/,
    );
    assertUserError(
      kiln(["serve", "--log-stats-interval", "-1"]),
      "InvalidArgumentError",
      /--log-stats-interval expects seconds, a number ≥ 0/,
    );
    assertUserError(
      kiln(["serve", "--log-level", "loud"]),
      "InvalidArgumentError",
      /--log-level must be one of/,
    );
    assertUserError(
      kiln(["serve", "--kv-cache-free-gpu-mem-fraction", "1.5"]),
      "InvalidArgumentError",
      /--kv-cache-free-gpu-mem-fraction/,
    );
    assertUserError(
      kiln(["serve", "--quantize", "int3"]),
      "InvalidArgumentError",
      /--quantize must be one of/,
    );
    assertUserError(
      kiln(["serve", "--max-concurrent", "0"]),
      "InvalidArgumentError",
      /--max-concurrent expects an integer ≥ 1/,
    );
  });
});
