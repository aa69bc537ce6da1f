// kernels/attention_decode_mma.cu on the CPU emulator (kernels/emulation/attention_decode_mma_run.sh):
// within the written bound of the double reference (P rounded to the dtype before P·V) for four of the
// run script's configurations (bf16 and fp16, D 128 and 64, BLOCK_SIZE 16 and 7, G 4, 4, 16, 1; windows
// 0, 5 and 70, both block-table layouts, a padding row, contexts 1 … 300), attention_decode_mma and its
// body with one K/V stage more (decode_mma_deeper, the check's own), bit for bit the entry's; a copy of
// the kernel with the context mask off by one fails it, and so does an entry that rounds differently.
// The full matrix: the run script without --ci. Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(
  new URL("../../../kernels/emulation/attention_decode_mma_run.sh", import.meta.url),
);
const KERNEL = fileURLToPath(new URL("../../../kernels/attention_decode_mma.cu", import.meta.url));
const gxx = spawnSync("g++", ["--version"], { encoding: "utf8" });
const skip = gxx.status !== 0 ? "g++ not found" : false;

describe("attention_decode_mma.cu on the CPU emulator", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-mma-emu-"));
  /** The emulator's run of a copy of the kernel (one configuration). */
  const runCopy = (name: string, src: string) => {
    const path = join(dir, name);
    writeFileSync(path, src);
    return spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, SRC: path, ONLY: "BF16 64 16 8 2" },
    });
  };
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("four configurations within the bound of the double reference; a deeper pipeline, the same bits", () => {
    const r = spawnSync("bash", [SCRIPT, "--ci"], { encoding: "utf8", timeout: 300_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(r.stdout.match(/^decode_mma .* PASS$/gm)?.length, 4, r.stdout);
    const deeper = r.stdout.match(/^decode_mma_deeper .* PASS$/gm) ?? [];
    assert.equal(deeper.length, 4, r.stdout);
    for (const line of deeper) assert.match(line, /same bits as decode_mma/);
  });

  test("a kernel that lets key ctx in fails the check", () => {
    const src = readFileSync(KERNEL, "utf8");
    const broken = src.replace("x[e] = key < ctx ? v * sl", "x[e] = key <= ctx ? v * sl");
    assert.notEqual(broken, src, "the mask line moved: update this test");
    const r = runCopy("broken.cu", broken);
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /FAIL: \d+ elements/);
  });

  test("an entry that rounds differently from its body fails the check, within the bound or not", () => {
    const src = readFileSync(KERNEL, "utf8");
    const call =
      "attn::decode_mma<attn::kMmaStages>(out, q, k_cache, v_cache, context_len, block_tables, block_table_stride,\n                                     block_table_step, scale,";
    const broken = src.replace(
      call,
      call.replace("block_table_step, scale,", "block_table_step, scale * 1.0001f,"),
    );
    assert.notEqual(broken, src, "the entry's call moved: update this test");
    const r = runCopy("rounding.cu", broken);
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^decode_mma .* PASS$/m);
    assert.match(r.stdout, /^decode_mma_deeper .*differs from decode_mma \(FAIL: \d+ runs\)/m);
  });
});
