// `kiln run` checks the whole request before it works or prints: contradicting flags are refused before
// any build, a request the library refuses prints nothing on stdout, a flag that cannot apply is
// reported once on stderr, and a broken chat template names the user's file and a fix that works.
import assert from "node:assert/strict";
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { defaultModelDir } from "../../src/cli/args.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

describe("kiln run: requests are checked before work and output", () => {
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  const model = writeTinyModel("llama");
  const engine = join(cache.dir, "user-engine");
  before(() => {
    buildEngine(model.dir, engine);
  });
  after(() => {
    model.cleanup();
    cache.cleanup();
  });
  /** Entries of the content cache (empty while nothing was built). */
  const cached = () =>
    existsSync(join(cache.dir, "engines")) ? readdirSync(join(cache.dir, "engines")) : [];

  test("contradicting flags are refused before any build, naming both flags", () => {
    const conflicts: [string[], RegExp][] = [
      [["--prompt", "hi"], /either --prompt or --input-ids, not both/],
      [["--chat"], /--chat needs --prompt text .*not --input-ids/],
      [["--greedy", "--temperature", "1"], /--greedy conflicts with --temperature 1/],
      [["--greedy", "--top-k", "5"], /--greedy conflicts with --top-k 5/],
      [["--greedy", "--top-p", "0.9"], /--greedy conflicts with --top-p 0\.9/],
      [["--greedy", "--min-p", "0.1"], /--greedy conflicts with --min-p 0\.1/],
      [["--greedy", "--beam-width", "2"], /--greedy conflicts with --beam-width 2/],
      [["--seed", "1", "--random-seed", "2"], /--seed 1 and --random-seed 2/],
      [["--ignore-eos", "--end-id", "1"], /--ignore-eos .* --end-id 1/],
    ];
    for (const [flags, message] of conflicts) {
      const r = kiln(["run", "--model", model.dir, "--input-ids", "1,2", ...flags], env);
      assertUserError(r, "ConflictingFlagsError", message);
      assert.equal(r.stdout, "");
    }
    assert.deepEqual(cached(), [], "a refused run built nothing");
  });

  test("--dtype on an engine directory is refused: its dtype is fixed", () => {
    const r = kiln(["run", "--model", engine, "--input-ids", "1,2", "--dtype", "fp16"], env);
    assertUserError(r, "ConflictingFlagsError", /--dtype fp16: .*user-engine is a built engine.*fixed/);
  });

  test("a flag that cannot apply is reported once, in one line, and the run goes on", () => {
    const r = kiln(
      [
        "run",
        ...["--model", engine, "--input-ids", "1,2", "--max-new-tokens", "2", "--json"],
        ...["--cache-dir", join(cache.dir, "elsewhere"), "--system", "hi", "--length-penalty", "2"],
        ...["--kv-cache-free-gpu-mem-fraction", "0.5"],
      ],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).outputIds.length, 2);
    const lines = r.stderr.trimEnd().split("\n");
    assert.deepEqual(
      lines.map((l) => /^kiln: warning: (--[a-z-]+) has no effect: /.exec(l)?.[1]),
      ["--cache-dir", "--length-penalty", "--system", "--kv-cache-free-gpu-mem-fraction"],
      r.stderr,
    );
    assert.ok(!existsSync(join(cache.dir, "elsewhere")), "--cache-dir was not used");
  });

  test("a request the library refuses prints nothing on stdout", () => {
    const badTopP = kiln(["run", "--top-p", "2", "--max-new-tokens", "2"], env);
    assertUserError(badTopP, "InvalidSamplingConfigError", /topP must be in \(0, 1\], got 2/);
    assert.equal(badTopP.stdout, "");
    // The bundled model's context window is 512 tokens.
    const long = kiln(["run", "--prompt", "ROMEO: ".repeat(400), "--max-new-tokens", "2"], env);
    assertUserError(long, "ContextWindowExceededError", /context window is 512/);
    assert.equal(long.stdout, "");
    // A valid request still echoes the prompt before the generated text.
    const ok = kiln(["run", "--greedy", "--max-new-tokens", "3"], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ROMEO:\n.+\n$/s);
  });
});

describe("kiln run --chat: templates", () => {
  const cache = tempCache();
  const env = { KILN_CACHE_DIR: cache.dir };
  after(cache.cleanup);

  test("a broken template names the user's file and a fix that kiln run takes", () => {
    const copy = join(cache.dir, "my-model");
    cpSync(defaultModelDir(), copy, { recursive: true });
    const configPath = join(copy, "tokenizer_config.json");
    const config = JSON.parse(readFileSync(configPath, "utf8"));
    writeFileSync(configPath, JSON.stringify({ ...config, chat_template: "{% for m in messages %}" }));
    const r = kiln(["run", "--model", copy, "--chat", "--prompt", "hi"], env);
    assertUserError(r, "ChatTemplateError", /my-model\/tokenizer_config\.json.*--chat-template FILE/);
    assert.ok(!r.stderr.includes(join(cache.dir, "engines")), "no internal cache path");
    assert.equal(r.stdout, "");
    // The fix the message gives works: a template file replaces the model's.
    const file = join(cache.dir, "plain.jinja");
    writeFileSync(file, "{{ messages[-1]['content'] }}");
    const fixed = kiln(
      ["run", "--model", copy, "--chat", "--chat-template", file, "--prompt", "hi", "--greedy", "--json"],
      env,
    );
    assert.equal(fixed.code, 0, fixed.stderr);
    // That template renders the bare text, which the chat path tokenizes without special tokens.
    const plain = kiln(
      ["run", "--model", copy, "--prompt", "hi", "--no-special-tokens", "--greedy", "--json"],
      env,
    );
    assert.equal(plain.code, 0, plain.stderr);
    assert.deepEqual(JSON.parse(fixed.stdout).outputIds, JSON.parse(plain.stdout).outputIds);
  });
});
