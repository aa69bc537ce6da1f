// The CUDA backend's house (src/backends/cuda): cuda_backend.ts is a facade over concept files that each
// own what they allocate, and no file runs past about 500 lines without saying why at its top.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const DIR = fileURLToPath(new URL("../../../src/backends/cuda", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("src/backends/cuda layout", () => {
  test("no file over 500 lines unless its opening comment says why", () => {
    for (const file of sources(DIR)) {
      const text = readFileSync(file, "utf8");
      const lines = text.split("\n").length;
      const opening = text.slice(0, text.indexOf("\nimport"));
      assert.ok(
        lines <= 500 || /over 500 lines/.test(opening),
        `${file.slice(DIR.length + 1)}: ${lines} lines`,
      );
    }
  });

  test("cuda_backend.ts is a facade: the concepts live in their own files, each with dispose()", () => {
    const facade = readFileSync(join(DIR, "cuda_backend.ts"), "utf8");
    for (const concept of [
      "weights",
      "activations",
      "kv_cache",
      "step_uploads",
      "kernel_launcher",
      "step_launcher",
      "decode_graphs",
      "device_sampler",
      "profile",
      "tuning",
    ]) {
      assert.match(facade, new RegExp(`from "\\./${concept}\\.ts"`), `imports ${concept}.ts`);
      if (concept !== "profile" && concept !== "tuning")
        assert.match(
          readFileSync(join(DIR, `${concept}.ts`), "utf8"),
          /\n {2}dispose\(\): void \{/,
          `${concept}.ts`,
        );
    }
    assert.ok(facade.split("\n").length <= 400, "the facade stays small");
    // The facade launches nothing itself and touches no device buffer directly.
    assert.doesNotMatch(facade, /DeviceBuffer\.alloc|\.launch\("|GraphCapture/);
  });

  test("the integrity check of the weight upload is kept: checkRegions before the copies, wait() after", () => {
    const weights = readFileSync(join(DIR, "weights.ts"), "utf8");
    const check = weights.indexOf("const check = engine.checkRegions(engine.header.weights);");
    const wait = weights.indexOf("check.wait();");
    assert.ok(check > 0 && wait > check && weights.indexOf("memcpyHtoDAsync") > check);
  });
});
