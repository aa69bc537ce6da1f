// `kiln eval --perplexity`: on the bundled model its --json report equals a direct float64 computation
// from the backend's logits of every position, and each bad file or window option is a named error.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { runSteps } from "../../src/builder/steps.ts";
import { defaultModelDir } from "../../src/cli/args.ts";
import { openSessionSteps } from "../../src/runtime/open_session.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const TEXT =
  "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n" +
  "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n";

describe("kiln eval --perplexity", () => {
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  const files = mkdtempSync(join(tmpdir(), "kiln-eval-"));
  const textFile = join(files, "text.txt");
  writeFileSync(textFile, TEXT);
  after(() => {
    cache.cleanup();
    rmSync(files, { recursive: true, force: true });
  });

  /** Mean NLL of ids[from…] computed here: one step that returns every position's logits. */
  function directMeanNll(windows: [number, number, number][]): { ids: number[]; meanNll: number; n: number } {
    const { session } = runSteps(openSessionSteps(defaultModelDir(), {}, cache.dir));
    try {
      const ids = (session.tokenizer as NonNullable<typeof session.tokenizer>).encode(TEXT).ids;
      const b = session.backend;
      const V = b.vocabSize;
      let nll = 0;
      let n = 0;
      for (const [begin, end, firstScored] of windows) {
        const win = Int32Array.from(ids.slice(begin, end));
        const len = win.length;
        const blocks = Math.ceil(len / b.kvBlockSize);
        b.allocateKvCache(blocks);
        const pos = Int32Array.from({ length: len }, (_, i) => i);
        const logits = b.forward({
          tokenIds: win,
          positions: pos,
          slotMapping: pos.slice(),
          seqs: [
            {
              queryStart: 0,
              queryLen: len,
              contextLen: len,
              blockTable: Int32Array.from({ length: blocks }, (_, i) => i),
            },
          ],
          logitRows: pos.slice(),
        });
        for (let t = firstScored - begin; t < len; t++) {
          const row = logits.subarray((t - 1) * V, t * V);
          let m = Number.NEGATIVE_INFINITY;
          for (const x of row) m = Math.max(m, x);
          let s = 0;
          for (const x of row) s += Math.exp(x - m);
          nll += m + Math.log(s) - row[win[t]];
          n++;
        }
      }
      return { ids, meanNll: nll / n, n };
    } finally {
      session.dispose();
    }
  }

  function json(args: string[]): Record<string, number | string> {
    const r = kiln(["eval", "--perplexity", textFile, "--json", ...args], env);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  }

  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-9 * Math.abs(b), `${a} vs ${b}`);

  test("--json: one window over the whole text scores every token but the first", () => {
    const out = json([]);
    assert.deepEqual(Object.keys(out).sort(), [
      "backend",
      "kvCacheDtype",
      "maxLength",
      "meanNll",
      "perplexity",
      "scoredTokens",
      "stride",
      "tokens",
      "windows",
    ]);
    const d = directMeanNll([[0, Number(out.tokens), 1]]);
    assert.equal(out.tokens, d.ids.length);
    assert.equal(out.scoredTokens, d.ids.length - 1);
    assert.equal(out.maxLength, 512, "the default window is the engine's context window");
    assert.equal(out.stride, 256, "the default stride is half the window");
    assert.equal(out.windows, 1);
    assert.equal(out.kvCacheDtype, "auto", "the KV cache keeps the activations' dtype by default");
    close(Number(out.meanNll), d.meanNll);
    close(Number(out.perplexity), Math.exp(d.meanNll));
  });

  test("--max-length/--stride/--max-tokens: sliding windows, each token scored once with its context", () => {
    const out = json(["--max-length", "16", "--stride", "6", "--max-tokens", "40"]);
    assert.equal(out.tokens, 40);
    assert.equal(out.scoredTokens, 39);
    assert.equal(out.windows, 5); // begins 0, 6, 12, 18, 24 (24 + 16 = 40 ends it)
    const d = directMeanNll([
      [0, 16, 1],
      [6, 22, 16],
      [12, 28, 22],
      [18, 34, 28],
      [24, 40, 34],
    ]);
    close(Number(out.meanNll), d.meanNll);
  });

  test("prints one readable line without --json", () => {
    const r = kiln(["eval", "--perplexity", textFile, "--max-tokens", "20"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^perplexity \d+\.\d{4} \(mean NLL [\d.]+ nats\) over 19 scored of 20 tokens; 1 windows of 512, stride 256\n$/,
    );
  });

  test("bad files and window options are named errors (exit 2)", () => {
    const empty = join(files, "empty.txt");
    writeFileSync(empty, " \n\n");
    const cases: [string[], string, RegExp][] = [
      [["--perplexity", join(files, "missing.txt")], "EvalTextError", /missing\.txt: no such file/],
      [["--perplexity", empty], "EvalTextError", /empty\.txt is empty/],
      [["--perplexity", files], "EvalTextError", /is a directory/],
      [
        ["--perplexity", textFile, "--max-length", "8", "--stride", "9"],
        "PerplexityOptionsError",
        /--stride 9 is larger than --max-length 8/,
      ],
      [
        ["--perplexity", textFile, "--max-length", "600"],
        "PerplexityOptionsError",
        /--max-length 600 exceeds the engine's context window of 512/,
      ],
      [
        ["--perplexity", textFile, "--stride", "513"],
        "PerplexityOptionsError",
        /--stride 513 is larger than --max-length 512/,
      ],
      [
        ["--perplexity", textFile, "--max-length", "1"],
        "InvalidArgumentError",
        /--max-length expects an integer ≥ 2/,
      ],
    ];
    for (const [args, cls, message] of cases) assertUserError(kiln(["eval", ...args], env), cls, message);
  });

  test("the text and --stride against --max-length are checked before any build", () => {
    const fresh = tempCache();
    try {
      const freshEnv = { KILN_CACHE_DIR: fresh.dir };
      const r1 = kiln(["eval", "--perplexity", join(files, "missing.txt")], freshEnv);
      assertUserError(r1, "EvalTextError", /no such file/);
      const r2 = kiln(["eval", "--perplexity", textFile, "--max-length", "8", "--stride", "9"], freshEnv);
      assertUserError(r2, "PerplexityOptionsError", /--stride 9/);
      assert.equal(existsSync(join(fresh.dir, "engines")), false, "nothing was built");
    } finally {
      fresh.cleanup();
    }
  });

  test("--quantize int8-wo / fp8: the bundled model's held-out perplexity stays within +1% of fp32 (issue 19)", () => {
    const held = fileURLToPath(new URL("../fixtures/quantization/held_out.txt", import.meta.url));
    const ppl = (extra: string[]) => {
      const r = kiln(["eval", "--perplexity", held, "--json", ...extra], env);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { perplexity: number; scoredTokens: number };
    };
    const fp32 = ppl([]);
    for (const format of ["int8-wo", "fp8"]) {
      const q = ppl(["--quantize", format]);
      assert.equal(q.scoredTokens, fp32.scoredTokens);
      assert.notEqual(q.perplexity, fp32.perplexity, `the ${format} engine ran`);
      assert.ok(
        q.perplexity <= 1.01 * fp32.perplexity,
        `${format}: ${q.perplexity} against ${fp32.perplexity}`,
      );
    }
  });
});
