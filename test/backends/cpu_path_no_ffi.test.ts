// The CPU path never loads the FFI library: a CPU generation on the bundled model, in a fresh process,
// leaves koffi's native addon unmapped (Linux: /proc/self/maps), although the CUDA backend's modules
// are imported.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { tempCache } from "../helpers/tiny_model.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const SCRIPT = `
import { readFileSync } from "node:fs";
import { BUNDLED_MODEL_DIR, ModelRunner } from "./src/index.ts";
const runner = ModelRunner.fromDir(BUNDLED_MODEL_DIR, { backend: "cpu" });
const [out] = await runner.generate("ROMEO:", { maxNewTokens: 2, greedy: true });
runner.dispose();
// koffi's native addon, once loaded, is mapped into the process.
const maps = readFileSync("/proc/self/maps", "utf8");
console.log(JSON.stringify({ tokens: out.outputIds.length, koffi: /koffi.*\\.node/.test(maps) }));
`;

const cache = tempCache();
after(cache.cleanup);

test("a CPU generation does not load koffi", {
  skip: process.platform !== "linux" && "reads /proc/self/maps",
}, () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", SCRIPT], {
    cwd: ROOT,
    encoding: "utf8",
    env: {
      ...process.env,
      KILN_CACHE_DIR: cache.dir,
    },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split("\n").at(-1) ?? ""), { tokens: 2, koffi: false });
});
