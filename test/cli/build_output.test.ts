// `kiln build` never deletes what is not a kiln engine, refuses an output that overlaps the
// checkpoint or a checkpoint that is already an engine, and leaves nothing behind on Ctrl-C.
// `kiln verify` checks an engine without running it.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { openEngine } from "../../src/engine/reader.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const KILN = fileURLToPath(new URL("../../bin/kiln", import.meta.url));

/** Every file under `dir` with its bytes, to show a command touched nothing. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const p = join(dir, name);
    try {
      out[name] = readFileSync(p).toString("base64");
    } catch {
      out[name] = "<dir>";
    }
  }
  return out;
}

function assertExit2(r: { code: number | null; stdout: string; stderr: string }, cls: string, msg: RegExp) {
  assertUserError(r, cls, msg);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
}

describe("kiln build --output safety", () => {
  const model = writeTinyModel("llama");
  const work = tempCache();
  after(() => {
    model.cleanup();
    work.cleanup();
  });

  test("a directory of user files at --output is refused and untouched", () => {
    const user = join(work.dir, "thesis");
    mkdirSync(join(user, "chapters"), { recursive: true });
    writeFileSync(join(user, "chapters", "one.tex"), "text");
    writeFileSync(join(user, "notes.md"), "notes");
    const before = snapshot(work.dir);
    const r = kiln(["build", "--model", model.dir, "--output", user]);
    assertExit2(r, "OutputNotEngineError", /--output .*thesis is a directory that is not a kiln engine/);
    assert.deepEqual(snapshot(work.dir), before);
  });

  test("a file at --output is refused and untouched", () => {
    const file = join(work.dir, "report.pdf");
    writeFileSync(file, "pdf");
    const r = kiln(["build", "--model", model.dir, "--output", file]);
    assertExit2(r, "OutputNotEngineError", /report\.pdf is a file/);
    assert.equal(readFileSync(file, "utf8"), "pdf");
  });

  test("--output equal to, inside, or containing --model is refused; the checkpoint is untouched", () => {
    const before = snapshot(model.dir);
    for (const [output, how] of [
      [model.dir, "is"],
      [join(model.dir, "engine"), "is inside"],
      [dirname(model.dir), "contains"],
    ]) {
      const r = kiln(["build", "--model", model.dir, "--output", output]);
      assertExit2(r, "OutputOverlapsModelError", new RegExp(`--output \\S+ ${how} the checkpoint`));
    }
    assert.deepEqual(snapshot(model.dir), before);
  });

  test("--output . in a directory of user files is refused", () => {
    const cwd = join(work.dir, "home");
    mkdirSync(cwd);
    writeFileSync(join(cwd, "keep.txt"), "keep");
    const r = spawnSync(KILN, ["build", "--model", model.dir, "--output", "."], { cwd, encoding: "utf8" });
    assertExit2(
      { code: r.status, stdout: r.stdout, stderr: r.stderr },
      "OutputNotEngineError",
      /--output \. is a directory/,
    );
    assert.deepEqual(readdirSync(cwd), ["keep.txt"]);
  });

  test("an --output where no directory can be created is a named error, exit 2", () => {
    const file = join(work.dir, "plain-file");
    writeFileSync(file, "x");
    const under = kiln(["build", "--model", model.dir, "--output", join(file, "engine")]);
    assertExit2(under, "OutputNotWritableError", /plain-file is a file, not a directory/);
    // /proc accepts no new directories, even for root (file permissions would not stop root).
    const proc = kiln(["build", "--model", model.dir, "--output", "/proc/kiln-engine"]);
    assertExit2(proc, "OutputNotWritableError", /cannot create a directory in \/proc \(E[A-Z]+\)/);
  });

  test("an engine as --model says it is already an engine", () => {
    const engine = join(work.dir, "engine");
    assert.equal(kiln(["build", "--model", model.dir, "--output", engine]).code, 0);
    const r = kiln(["build", "--model", engine, "--output", join(work.dir, "again")]);
    assertExit2(r, "ModelIsEngineError", /is already a kiln engine \(built from .*\); run it with kiln run/);
  });

  test("build --verify reads the engine back and says so, in text and JSON", () => {
    const engine = join(work.dir, "engine-checked");
    const text = kiln(["build", "--model", model.dir, "--output", engine, "--verify"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /; every checksum verified\n$/);
    const plain = kiln(["build", "--model", model.dir, "--output", engine]);
    assert.doesNotMatch(plain.stdout, /checksum/);
    const json = kiln(["build", "--model", model.dir, "--output", engine, "--verify", "--json"]);
    assert.equal(JSON.parse(json.stdout).verified, true);
  });

  test("rebuilding over an engine replaces it; kiln verify says OK, then lists damage with exit 2", () => {
    const engine = join(work.dir, "engine2");
    assert.equal(kiln(["build", "--model", model.dir, "--output", engine]).code, 0);
    assert.equal(kiln(["build", "--model", model.dir, "--output", engine, "--dtype", "bf16"]).code, 0);
    const ok = kiln(["verify", engine]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /intact/);
    assert.equal(ok.stdout.trim().split("\n").length, 1);
    // Two damaged weight regions: both are listed, by name.
    const e = openEngine(engine);
    const [first, last] = [e.header.weights[0], e.header.weights.at(-1)];
    e.close();
    assert.ok(first && last);
    const rank = join(engine, "rank0.engine");
    const bytes = readFileSync(rank);
    bytes[first.offset] ^= 1;
    bytes[last.offset + last.byteLength - 1] ^= 1;
    writeFileSync(rank, bytes);
    const bad = kiln(["verify", engine]);
    assertExit2(
      bad,
      "EngineCorruptError",
      new RegExp(`${first.name} at byte \\d+: checksum mismatch\\), rank0\\.engine \\(${last.name}`),
    );
    // Damage found at open (an edited config.json) is listed too.
    writeFileSync(join(engine, "config.json"), "{}");
    assertExit2(kiln(["verify", engine]), "EngineCorruptError", /config\.json \(\d+ bytes, expected \d+\)/);
    // A checkpoint is not an engine, not a damaged one.
    assertExit2(kiln(["verify", model.dir]), "InvalidArgumentError", /is not a kiln engine/);
  });
});

/** A config large enough that a build takes a while (random weights, no checkpoint needed). */
const SLOW_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  vocab_size: 32000,
  hidden_size: 512,
  intermediate_size: 1408,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  max_position_embeddings: 256,
};

describe("builds interrupted", () => {
  const work = tempCache();
  after(work.cleanup);

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    test(`${signal} during a build removes its temp dir and exits ${signal === "SIGINT" ? 130 : 143}`, async () => {
      const model = join(work.dir, `model-${signal}`);
      mkdirSync(model);
      writeFileSync(join(model, "config.json"), JSON.stringify(SLOW_CONFIG));
      const parent = join(work.dir, `out-${signal}`);
      mkdirSync(parent);
      const output = join(parent, "engine");
      const child = spawn(KILN, ["build", "--random-weights", "--model", model, "--output", output], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      // Signal as soon as the build has started writing.
      const deadline = Date.now() + 60_000;
      while (!readdirSync(parent).some((n) => n.includes(".tmp-")) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      assert.ok(readdirSync(parent).length > 0, "the build never started writing");
      child.kill(signal);
      const code = await exited;
      assert.equal(code, signal === "SIGINT" ? 130 : 143, stderr);
      assert.match(stderr, new RegExp(`BuildInterruptedError: build interrupted by ${signal}`));
      assert.deepEqual(readdirSync(parent), []);
      assert.ok(!existsSync(output));
    });
  }

  test("SIGINT during kiln run's cache build removes its temp dir and lock, exits 130", async () => {
    const model = join(work.dir, "model-run");
    mkdirSync(model);
    writeFileSync(join(model, "config.json"), JSON.stringify(SLOW_CONFIG));
    const cache = join(work.dir, "cache-run");
    const engines = join(cache, "engines");
    const child = spawn(KILN, ["run", "--random-weights", "--model", model, "--input-ids", "1"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, KILN_CACHE_DIR: cache },
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const writing = () => existsSync(engines) && readdirSync(engines).some((n) => n.includes(".tmp-"));
    const deadline = Date.now() + 60_000;
    while (!writing() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(writing(), "the build never started writing");
    child.kill("SIGINT");
    assert.equal(await exited, 130, stderr);
    assert.match(stderr, /BuildInterruptedError: build interrupted by SIGINT/);
    assert.deepEqual(readdirSync(engines), [], "no temp dir, no lock, no entry");
  });
});
